"""The layout of a workdir (every file name in it is spelled here) and the
run files other programs read.

No JAX here: the launcher (launch/) imports this module to read what the
trainer and the evaluator write.

  config.json           the full config of the run (checkpoint.save_config)
  trainer.lock          flock-ed by the trainer running in the workdir
  checkpoints/<step>/   one orbax checkpoint per saved step (checkpoint.py);
    <step>.corrupt/     a damaged one the trainer moved aside
  images/               PNG grids of each evaluation and `wae_jax.sample`'s exports
  metrics.jsonl         one line {"step", <name>: value} per logged step (metrics_io)
  eval.jsonl            one line {"step", "metrics": {...}} per evaluation
  events.out.tfevents.* the same scalars and the grids for TensorBoard
  run_complete.json     {"step", "best_step", "best_metrics"}: the trainer's last act
  (any JSON file)       written whole or not at all (`write_json_atomic`)
"""

import json
import logging
import os
from typing import Any, Optional

CONFIG_FILE = "config.json"
LOCK_FILE = "trainer.lock"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_SUFFIX = ".corrupt"
IMAGE_DIR = "images"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
RUN_COMPLETE_FILE = "run_complete.json"


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
