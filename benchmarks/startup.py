"""Seconds from process start to run_complete.json for the default job, cold and warm.

Runs `python -m wae_jax.main --config=configs/default.py` (WAE-MMD, MLP,
digits, 3000 steps) twice in fresh processes and fresh workdirs, sharing one
new, empty persistent compilation cache: the first run compiles and fills it,
the second loads every program from it (what a user's second run of any job
sees; the trainer keeps the cache in ~/.cache/wae_jax/jax_cache). Each run
reports where its time went:

  startup     interpreter start until this script's first line
  imports     absl, JAX, Flax, optax, orbax, the trainer's modules
  trace+lower tracing to jaxprs and lowering to StableHLO (not cached)
  compile     XLA compilation, or reading the program from the cache
  training    the train steps (from metrics.jsonl's steps_per_second)
  other       data, config checks, init, evaluations, images, checkpoints

A shared VM's speed drifts by 20% within minutes, so the second run is
repeated (--warm_runs, default 5) and the table gives each column's median.

  python benchmarks/startup.py                  # the table
  python benchmarks/startup.py --steps=500      # a shorter job
"""

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

_PROCESS_START = time.time()  # first line: the interpreter's own start-up is before it

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("startup", "imports", "trace+lower", "compile", "training", "other")


def run_single(workdir: str, steps: int, report: str, spawned_at: float) -> None:
  """Runs the trainer's main() in this process and writes the timings to `report`."""
  sys.path.insert(0, REPO_ROOT)
  # ml_collections reads the --config.* overrides from sys.argv when the flag is defined.
  sys.argv = ["wae_jax.main", "--config=configs/default.py", f"--workdir={workdir}",
              f"--config.num_train_steps={steps}"]
  import_start = time.time()
  from wae_jax import main as trainer_main  # sets the CPU XLA flags before JAX loads
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src import dispatch  # pylint: disable=g-import-not-at-top
  from absl import app  # pylint: disable=g-import-not-at-top
  from wae_jax import train  # pylint: disable=g-import-not-at-top,unused-import
  imports_s = time.time() - import_start

  totals = {"trace+lower": 0.0, "compile": 0.0, "cache_hits": 0, "cache_misses": 0}
  trace_events = (dispatch.JAXPR_TRACE_EVENT, dispatch.JAXPR_TO_MLIR_MODULE_EVENT)

  def on_duration(event, seconds, **kwargs):
    del kwargs
    if event in trace_events:
      totals["trace+lower"] += seconds
    elif event == dispatch.BACKEND_COMPILE_EVENT:
      totals["compile"] += seconds

  def on_event(event, **kwargs):
    del kwargs
    if event == "/jax/compilation_cache/cache_hits":
      totals["cache_hits"] += 1
    elif event == "/jax/compilation_cache/cache_misses":
      totals["cache_misses"] += 1

  jax.monitoring.register_event_duration_secs_listener(on_duration)
  jax.monitoring.register_event_listener(on_event)

  def write_report():
    end = time.time()
    training_s = 0.0
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      last_step = 0
      for line in f:
        row = json.loads(line)
        if row.get("steps_per_second"):
          training_s += (row["step"] - last_step) / row["steps_per_second"]
          last_step = row["step"]
    complete = os.path.getmtime(os.path.join(workdir, "run_complete.json"))
    phases = {"startup": _PROCESS_START - spawned_at, "imports": imports_s,
              "trace+lower": totals["trace+lower"], "compile": totals["compile"],
              "training": training_s}
    phases["other"] = complete - spawned_at - sum(phases.values())
    with open(report, "w") as f:
      json.dump({"to_run_complete_s": complete - spawned_at, "exit_s": end - spawned_at,
                 "phases": phases, "cache_hits": totals["cache_hits"],
                 "cache_misses": totals["cache_misses"]}, f)

  atexit.register(write_report)
  app.run(trainer_main.main)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=3000, help="the default job's 3000")
  parser.add_argument("--warm_runs", type=int, default=5,
                      help="runs with the cache filled; the table gives their medians")
  parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--workdir", help=argparse.SUPPRESS)
  parser.add_argument("--report", help=argparse.SUPPRESS)
  parser.add_argument("--spawned_at", type=float, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.single:
    run_single(args.workdir, args.steps, args.report, args.spawned_at)
    return

  root = tempfile.mkdtemp(prefix="wae_startup_")
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"))
  env.pop("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", None)
  reports = []
  try:
    for index in range(1 + args.warm_runs):
      workdir = os.path.join(root, f"run{index}")
      report = os.path.join(root, f"report{index}.json")
      spawned_at = time.time()
      subprocess.run(
          [sys.executable, os.path.abspath(__file__), "--single", f"--workdir={workdir}",
           f"--steps={args.steps}", f"--report={report}", f"--spawned_at={spawned_at}"],
          cwd=REPO_ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
      with open(report) as f:
        reports.append(json.load(f))
      print(f"run {index}: {reports[-1]['to_run_complete_s']:.1f} s", file=sys.stderr, flush=True)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  warm = reports[1:]
  rows = [("first run (empty cache)", reports[0])]
  if warm:
    rows.append((f"second run (cache filled), median of {len(warm)}", {
        "to_run_complete_s": statistics.median([r["to_run_complete_s"] for r in warm]),
        "phases": {p: statistics.median([r["phases"][p] for r in warm]) for p in PHASES},
        "cache_hits": statistics.median([r["cache_hits"] for r in warm]),
        "cache_misses": statistics.median([r["cache_misses"] for r in warm])}))

  print(f"\nDefault job (configs/default.py, {args.steps} steps), seconds from process "
        "start to run_complete.json\n")
  print("| run | total | " + " | ".join(PHASES) + " | programs from cache / compiled |")
  print("|---|---|" + "---|" * len(PHASES) + "---|")
  for name, r in rows:
    cells = " | ".join(f"{r['phases'][p]:.2f}" for p in PHASES)
    print(f"| {name} | {r['to_run_complete_s']:.2f} | {cells} | "
          f"{r['cache_hits']:g} / {r['cache_misses']:g} |")


if __name__ == "__main__":
  main()
