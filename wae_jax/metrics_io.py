"""Scalars and images of a run: metrics.jsonl, eval.jsonl, TensorBoard, progress.

Only the chief process writes; on other processes every method is a no-op.
On resume from step s the JSON-lines files are cut back to the lines with
step <= s, so a restarted run's logs read as one uninterrupted run.
"""

import json
import math
import os
import sys
import time
from typing import Optional

import numpy as np
from absl import logging

from wae_jax import cli
from wae_jax import run_files
from wae_jax.run_files import EVAL_FILE, METRICS_FILE


def truncate_jsonl(path: str, max_step: int) -> None:
  """Keeps only the lines of a JSON-lines file whose "step" is <= max_step.

  A last line cut short by a kill is dropped. Any other line that is not a
  record {"step": int, ...} means damage: the file is moved aside to
  <path>.corrupt with one warning and the intact lines are written anew.
  """
  if not os.path.exists(path):
    return
  with open(path, "rb") as f:
    raw_lines = f.read().split(b"\n")
  kept, damaged = [], None
  for number, raw in enumerate(raw_lines):
    cut_short = number == len(raw_lines) - 1  # No newline after it: the write was killed.
    if not raw.strip():
      continue
    try:
      record = json.loads(raw.decode("utf-8"))
      step = record["step"]
      if isinstance(step, bool) or not isinstance(step, int):
        raise TypeError
    except (UnicodeDecodeError, ValueError, TypeError, KeyError):
      if not cut_short and damaged is None:
        damaged = f"line {number + 1} is not a record with an integer step"
      continue
    if step <= max_step:
      kept.append(raw.decode("utf-8").strip())
  if damaged is not None:
    run_files.move_aside(path, damaged)
  tmp_path = f"{path}.tmp-{os.getpid()}"
  with open(tmp_path, "w", encoding="utf-8") as f:
    f.write("".join(line + "\n" for line in kept))
  os.replace(tmp_path, path)


def read_jsonl(path: str) -> list[dict]:
  """All records of a JSON-lines file ([] when it does not exist)."""
  if not os.path.exists(path):
    return []
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _to_float(value) -> float:
  return float(np.asarray(value))


def _summary_writer_class():
  """tensorboardX's SummaryWriter, imported without torch.

  tensorboardX imports torch whenever it is installed (1.3 s here), only to
  accept torch tensors; this writer is given floats and numpy arrays, so torch
  is hidden during the import unless something already loaded it.
  """
  if "torch" in sys.modules:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    return SummaryWriter
  sys.modules["torch"] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
  finally:
    del sys.modules["torch"]
  return SummaryWriter


class MetricWriter:
  """Writes scalars to <workdir>/metrics.jsonl and TensorBoard, images to TensorBoard."""

  def __init__(self, workdir: str, is_chief: bool = True, start_step: int = 0):
    self.workdir = workdir
    self.is_chief = is_chief
    self._tb = None
    self._step = start_step
    if not is_chief:
      return
    os.makedirs(workdir, exist_ok=True)
    self.metrics_path = os.path.join(workdir, METRICS_FILE)
    self.eval_path = os.path.join(workdir, EVAL_FILE)
    truncate_jsonl(self.metrics_path, start_step)
    truncate_jsonl(self.eval_path, start_step)
    self._tb = _summary_writer_class()(logdir=workdir, flush_secs=30)

  def write_scalars(self, step: int, scalars: dict) -> None:
    """One line {"step": step, name: value, ...} in metrics.jsonl and TensorBoard."""
    if not self.is_chief:
      return
    record = {"step": int(step)}
    record.update({k: _to_float(v) for k, v in scalars.items()})
    self._step = int(step)
    with cli.reporting_write_errors(self.metrics_path, step), open(
        self.metrics_path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in record.items():
      if name != "step":
        self._tb.add_scalar(name, value, step)

  def write_eval(self, step: int, metrics: dict, feature_net: Optional[dict] = None) -> None:
    """One line {"step": step, "metrics": {...}} in eval.jsonl (plus "feature_net":
    {metric: the net it was measured with} when given); scalars to TensorBoard as eval/<name>."""
    if not self.is_chief:
      return
    values = {k: _to_float(v) for k, v in metrics.items()}
    self._step = int(step)
    record = {"step": int(step), "metrics": values}
    if feature_net:
      record["feature_net"] = dict(feature_net)
    with cli.reporting_write_errors(self.eval_path, step), open(
        self.eval_path, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in values.items():
      self._tb.add_scalar(f"eval/{name}", value, step)

  def write_image(self, tag: str, image: np.ndarray, step: int) -> None:
    """A uint8 (H, W, 3) image to TensorBoard."""
    if not self.is_chief:
      return
    self._tb.add_image(tag, image, step, dataformats="HWC")

  def _event_file(self) -> str:
    return f"the TensorBoard event file in {self.workdir}"

  def flush(self) -> None:
    if self._tb is not None:
      with cli.reporting_write_errors(self._event_file(), self._step):
        self._tb.flush()

  def close(self) -> None:
    """Flushes and closes TensorBoard. A failed flush (a full disk) is left to
    the error that stopped the run: the writer's thread is stopped so neither it
    nor tensorboardX's exit hook prints a traceback."""
    if self._tb is None:
      return
    tb, self._tb = self._tb, None
    try:
      tb.close()
    except OSError as error:
      if cli.environment_reason(error) is None:
        raise
      events = tb.file_writer.event_writer
      worker = getattr(events, "_worker", None)
      if worker is not None:
        worker.stop()
      events._closed = True  # pylint: disable=protected-access  # Its exit hook would retry.


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  if hours:
    return f"{hours}h{minutes:02d}m"
  if minutes:
    return f"{minutes}m{seconds:02d}s"
  return f"{seconds}s"


class Progress:
  """Steps per second and ETA from the steps done since the first report."""

  def __init__(self, start_step: int, num_train_steps: int):
    self.num_train_steps = num_train_steps
    self._last_step = start_step
    self._last_time: Optional[float] = None

  def steps_per_second(self, step: int) -> float:
    """Rate since the previous call (the first call only starts the clock)."""
    now = time.perf_counter()
    rate = float("nan")
    if self._last_time is not None and step > self._last_step:
      rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return rate

  def exclude(self, seconds: float) -> None:
    """Leaves `seconds` (evaluation, checkpointing) out of the next rate."""
    if self._last_time is not None:
      self._last_time += seconds

  def line(self, step: int, loss: float, rate: float) -> str:
    eta = (self.num_train_steps - step) / rate if rate > 0 else float("nan")
    width = len(str(self.num_train_steps))
    rate_text = f"{rate:.1f}" if math.isfinite(rate) else "-"
    return (f"step {step:>{width}}/{self.num_train_steps} | loss {loss:.4f} | "
            f"{rate_text} steps/s | ETA {format_duration(eta)}")


def log_progress(text: str) -> None:
  logging.info("%s", text)
