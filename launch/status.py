"""Counts of a sweep's pending, running, finished and failed runs, with an ETA.

  python -m launch.status --root=<dir> [--json]

finished: the trainer wrote run_complete.json. running: some process holds
the run's lock. failed: the launcher gave up on it (and it is not running).
pending: everything else, including runs interrupted by a killed launcher.
The ETA assumes the runs still to do take the mean wall time of the finished
ones and run as many at a time as are running now (at least one).
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Optional, Sequence

from launch import runs
from launch import sweep
from wae_jax import cli

STATES = ("pending", "running", "finished", "failed")


@dataclasses.dataclass
class SweepStatus:
  total: int
  counts: dict[str, int]
  states: dict[int, str]
  mean_run_seconds: Optional[float]
  eta_seconds: Optional[float]


def run_state(workdir: str) -> str:
  """One of STATES for the run in workdir."""
  if runs.is_finished(workdir):
    return "finished"
  if runs.is_locked(workdir):
    return "running"
  status = runs.read_json(os.path.join(workdir, runs.STATUS_FILE)) or {}
  if status.get("state") == "failed":
    return "failed"
  return "pending"


def sweep_status(root: str) -> SweepStatus:
  """The state of every run in <root>/manifest.jsonl, counts and ETA."""
  manifest = sweep.read_manifest(root)
  if not manifest:
    raise cli.UserError(f"{root} has no {sweep.MANIFEST_FILE}; launch the sweep there first "
                     "(python -m launch.sweep --root=...).")
  states = {e["index"]: run_state(e["workdir"]) for e in manifest}
  counts = {state: 0 for state in STATES}
  for state in states.values():
    counts[state] += 1
  durations = []
  for entry in manifest:
    if states[entry["index"]] != "finished":
      continue
    status = runs.read_json(os.path.join(entry["workdir"], runs.STATUS_FILE)) or {}
    if "first_started" in status and "ended" in status:
      durations.append(status["ended"] - status["first_started"])
  mean = sum(durations) / len(durations) if durations else None
  eta = None
  remaining = counts["pending"] + counts["running"]
  if mean is not None:
    eta = 0.0 if remaining == 0 else (
        # A running run is on average half done.
        (counts["pending"] + 0.5 * counts["running"]) * mean / max(counts["running"], 1))
  return SweepStatus(len(manifest), counts, states, mean, eta)


def _format_seconds(seconds: Optional[float]) -> str:
  if seconds is None:
    return "unknown (no run finished yet)"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s"


def format_status(status: SweepStatus) -> str:
  lines = [f"{status.total} runs"]
  for state in STATES:
    lines.append(f"  {state:<9} {status.counts[state]}")
  failed = sorted(i for i, s in status.states.items() if s == "failed")
  if failed:
    lines.append(f"  failed runs: {failed} (see <root>/runs/<i>/launch_log.txt)")
  lines.append(f"mean run time: {_format_seconds(status.mean_run_seconds)}")
  lines.append(f"ETA: {_format_seconds(status.eta_seconds)}")
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (2: a bad input, one line on stderr)."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  parser = cli.ArgumentParser(prog="python -m launch.status", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", required=True)
  parser.add_argument("--json", action="store_true", help="print one JSON object")
  args = parser.parse_args(argv)
  root = os.path.abspath(args.root)
  if not os.path.isdir(root):
    what = "is a file" if os.path.exists(root) else "does not exist"
    raise cli.UserError(f"--root={root} {what}; pass the directory of a sweep "
                        "(python -m launch.sweep --root=...).")
  status = sweep_status(root)
  if args.json:
    print(json.dumps({"total": status.total, **status.counts,
                      "mean_run_seconds": status.mean_run_seconds,
                      "eta_seconds": status.eta_seconds, "time": time.time()}))
  else:
    print(format_status(status))
  return 0


if __name__ == "__main__":
  sys.exit(main())
