"""The files of a workdir that other programs read, and how they are written.

No JAX here: the launcher (launch/) imports this module to read what the
trainer and the evaluator write.

  run_complete.json   {"step", "best_step", "best_metrics"}: the trainer's last act
  metrics.jsonl       one line {"step", <name>: value} per logged step (metrics_io)
  eval.jsonl          one line {"step", "metrics": {...}} per evaluation
  (any JSON file)     written whole or not at all (`write_json_atomic`)

`METRIC_PREFERENCE` is the one order in which a run's metrics of generated
images are preferred for picking the best checkpoint (wae_jax.evaluate) and a
sweep's plotted metric (launch.collect); lower is better.
"""

import json
import logging
import os
from typing import Any, Iterable, Optional

RUN_COMPLETE_FILE = "run_complete.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
CORRUPT_SUFFIX = ".corrupt"  # A damaged file moved aside (as checkpoint.CORRUPT_SUFFIX).

# Inception FID, then the offline classifier's feature distance
# fd_<dataset>_classifier, then the image SWD.
METRIC_PREFERENCE = ("fid_inception", "fd_*_classifier", "swd_image_avg")


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to `path` through a temporary file and `os.replace`, so a
  reader never sees half a file."""
  tmp_path = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp_path, "w", encoding="utf-8") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  finally:
    if os.path.exists(tmp_path):  # A failed write (a full disk) leaves no half file.
      os.remove(tmp_path)


def write_run_complete(workdir: str, step: int, best_step: int, best_metrics: dict) -> dict:
  """Marks the run finished; returns the summary written."""
  summary = {"step": int(step), "best_step": int(best_step),
             "best_metrics": dict(best_metrics)}
  write_json_atomic(os.path.join(workdir, RUN_COMPLETE_FILE), summary)
  return summary


def move_aside(path: str, what: str) -> str:
  """Renames a damaged file to <path>.corrupt with one warning; returns the new path."""
  aside = path + CORRUPT_SUFFIX
  os.replace(path, aside)
  logging.getLogger("wae_jax").warning("%s is damaged (%s); moved it to %s.", path, what, aside)
  return aside


def _summary(path: str) -> Optional[dict]:
  """run_complete.json's summary, None when absent; ValueError when damaged."""
  try:
    with open(path, encoding="utf-8") as f:
      summary = json.load(f)
  except FileNotFoundError:
    return None
  except UnicodeDecodeError as error:
    raise ValueError("not UTF-8 text") from error
  except json.JSONDecodeError as error:
    raise ValueError(f"not a JSON object: {error.msg} at character {error.pos}") from error
  if not (isinstance(summary, dict) and isinstance(summary.get("step"), int)):
    raise ValueError('not a JSON object with an integer "step"')
  return summary


def read_run_complete(workdir: str, move_damaged: bool = True) -> Optional[dict]:
  """<workdir>/run_complete.json, or None for a run that has not finished.

  A damaged file (not JSON, not a summary) counts as not finished; with
  move_damaged (the trainer's chief) it is moved aside to .corrupt, so the
  run finishes again and writes it anew.
  """
  path = os.path.join(workdir, RUN_COMPLETE_FILE)
  try:
    return _summary(path)
  except ValueError as error:
    if move_damaged:
      move_aside(path, str(error).splitlines()[0])
    return None


def is_complete(workdir: str) -> bool:
  """Whether the run finished (an intact run_complete.json; nothing is moved)."""
  return read_run_complete(workdir, move_damaged=False) is not None


def _matches(name: str, pattern: str) -> bool:
  if "*" not in pattern:
    return name == pattern
  prefix, suffix = pattern.split("*")
  return name.startswith(prefix) and name.endswith(suffix)


def preferred_metric(names: Iterable[str], fallback: Optional[str]) -> Optional[str]:
  """The first of METRIC_PREFERENCE among `names` (e.g. a run's best_* running
  minima never match), else `fallback`."""
  names = sorted(set(names))
  for pattern in METRIC_PREFERENCE:
    matches = [n for n in names if _matches(n, pattern)]
    if matches:
      return matches[0]
  return fallback
