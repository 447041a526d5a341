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
import os
from typing import Any, Iterable, Optional

RUN_COMPLETE_FILE = "run_complete.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"

# Inception FID, then the offline classifier's feature distance
# fd_<dataset>_classifier, then the image SWD.
METRIC_PREFERENCE = ("fid_inception", "fd_*_classifier", "swd_image_avg")


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to `path` through a temporary file and `os.replace`, so a
  reader never sees half a file."""
  tmp_path = f"{path}.tmp-{os.getpid()}"
  with open(tmp_path, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp_path, path)


def write_run_complete(workdir: str, step: int, best_step: int, best_metrics: dict) -> dict:
  """Marks the run finished; returns the summary written."""
  summary = {"step": int(step), "best_step": int(best_step),
             "best_metrics": dict(best_metrics)}
  write_json_atomic(os.path.join(workdir, RUN_COMPLETE_FILE), summary)
  return summary


def read_run_complete(workdir: str) -> Optional[dict]:
  """<workdir>/run_complete.json, or None for a run that has not finished."""
  try:
    with open(os.path.join(workdir, RUN_COMPLETE_FILE), encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def is_complete(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, RUN_COMPLETE_FILE))


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
