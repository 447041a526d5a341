"""Stopping a run cleanly on SIGTERM (preemption) or SIGINT (Ctrl-C).

A preempted Cloud TPU VM or a cluster scheduler sends SIGTERM and kills the
process some seconds later; a user presses Ctrl-C. Either way the trainer
finishes the compiled call in flight, writes a checkpoint of that step, prints
one line and exits:

  preempted at step N; run the same command to resume      exit EXIT_PREEMPTED (143)
  interrupted at step N; run the same command to resume    exit EXIT_INTERRUPTED (130)

(128 + the signal's number, what a shell reports for a process the signal
ended, so schedulers read it as "terminated"; distinct from a user error's 2
and a lost peer's 75.) A second signal while the checkpoint is written ends
the process at once, keeping the previous checkpoint.

On several processes every process must stop after the same step, or the
checkpoint would mix steps. There JAX's preemption service decides: its
notifier (installed by jax.distributed.initialize, on by default through
`jax_enable_preemption_service`) catches SIGTERM on any process and
`multihost_utils.reached_preemption_sync_point(i)` turns True on every process
at the same call index i. SIGINT is forwarded to that path as a SIGTERM to
this process.

    with preemption.StopSignals() as stop:
      for call_index, step in enumerate(...):
        ...
        if stop.requested(call_index):
          save(step)
          raise stop.stopped(step)
"""

import os
import signal
import sys
import threading
from typing import Optional

from wae_jax import cli

EXIT_PREEMPTED = 128 + signal.SIGTERM  # 143
EXIT_INTERRUPTED = cli.INTERRUPTED_EXIT_STATUS  # 130 = 128 + SIGINT


class Stopped(Exception):
  """The run stopped on a signal after writing a checkpoint of `step`."""

  def __init__(self, step: int, signum: int):
    self.step, self.signum = int(step), signum
    self.exit_status = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_PREEMPTED
    what = "interrupted" if signum == signal.SIGINT else "preempted"
    super().__init__(f"{what} at step {self.step}; run the same command to resume")


def _multi_process() -> bool:
  import jax  # pylint: disable=g-import-not-at-top  # Loaded by then: the trainer runs.
  return jax.process_count() > 1


class StopSignals:
  """While active (a context manager), SIGTERM and SIGINT ask the run to stop.

  Handlers are installed only from the main thread (Python's rule); elsewhere
  the signals keep their previous behaviour and `requested` only reports the
  multi-process sync point.
  """

  def __init__(self):
    self.signum: Optional[int] = None
    self._previous = {}
    self._multi_process = False

  def __enter__(self) -> "StopSignals":
    self._multi_process = _multi_process()
    if threading.current_thread() is not threading.main_thread():
      return self
    # On several processes JAX's notifier owns SIGTERM: installing a Python
    # handler would replace it and break the agreement on a step.
    signals = (signal.SIGINT,) if self._multi_process else (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
      if signal.getsignal(signum) is signal.SIG_IGN:
        continue  # Ignored by whoever started us (nohup, a background job): keep it so.
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  def _handle(self, signum: int, frame) -> None:
    del frame
    if self.signum is not None:  # The second signal: the user insists.
      sys.stderr.write(f"{signal.Signals(signum).name} again; stopping now without a new "
                       "checkpoint (the last complete one is kept).\n")
      sys.stderr.flush()
      os._exit(Stopped(0, signum).exit_status)  # pylint: disable=protected-access
    self.signum = signum
    if self._multi_process:  # Let JAX's notifier tell the peers.
      os.kill(os.getpid(), signal.SIGTERM)

  def requested(self, call_index: int) -> bool:
    """Whether to stop after call `call_index` (counted from 0 by every process
    alike). Call it after every call: on several processes the answer is True
    on all of them at the same call index."""
    if self._multi_process:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return multihost_utils.reached_preemption_sync_point(call_index)
    return self.signum is not None

  def stopped(self, step: int) -> Stopped:
    """The exception that ends the run after the checkpoint of `step`."""
    return Stopped(step, self.signum if self.signum is not None else signal.SIGTERM)
