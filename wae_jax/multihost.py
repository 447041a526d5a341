"""One run over several processes (hosts): joining the job, and leaving it
cleanly when a peer dies.

Every process of a multi-host run executes the same command with
WAE_JAX_DISTRIBUTED=1; `initialize()` then calls `jax.distributed.initialize`,
which reads where the job is from the environment:

  JAX_COORDINATOR_ADDRESS  host:port of process 0, which runs the coordinator
                           (read by JAX itself)
  JAX_NUM_PROCESSES        how many processes the run spans
  JAX_PROCESS_ID           this process, in [0, JAX_NUM_PROCESSES)
  WAE_JAX_PEER_TIMEOUT     seconds without a heartbeat after which a peer counts
                           as dead (default 60)

On a Cloud TPU VM none of the JAX_* variables is needed: JAX reads them from
the TPU metadata. On one machine `python -m wae_jax.multiprocess` sets them
(and JAX_NUM_CPU_DEVICES, JAX's own count of fake CPU devices per process);
cross-process collectives on CPU then go through gloo, JAX's default
jax_cpu_collectives_implementation.

A dead peer leaves the others blocked inside a collective. A watchdog thread
publishes a counter in the coordinator's key-value store and watches the
peers' counters; when one stops for WAE_JAX_PEER_TIMEOUT seconds it prints one
line and ends this process with EXIT_PEER_LOST, long before JAX's own
heartbeat check (set to twice that) would abort it with a C++ stack trace. A
process that ends normally marks itself done, so slower peers never take its
silence for a crash. (When process 0 itself dies, JAX aborts the others at
once with its "another task died" message: the coordinator is gone.)
"""

import os
import sys
import threading
import time
from typing import Optional

from wae_jax import cli

ENABLE_ENV = "WAE_JAX_DISTRIBUTED"  # parallel.DISTRIBUTED_ENV; here without importing JAX.
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
PEER_TIMEOUT_ENV = "WAE_JAX_PEER_TIMEOUT"
DEFAULT_PEER_TIMEOUT = 60.0
EXIT_PEER_LOST = 75  # EX_TEMPFAIL: start again to resume.
_KEY_PREFIX = "wae_jax/alive/"
_DONE = "done"

_watchdog: Optional["PeerWatchdog"] = None


def _int_env(name: str) -> Optional[int]:
  value = os.environ.get(name, "")
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    raise cli.UserError(f"{name}={value!r} is not an integer; set it to a whole number.") from None


def peer_timeout() -> float:
  """WAE_JAX_PEER_TIMEOUT in seconds (default 60)."""
  value = os.environ.get(PEER_TIMEOUT_ENV, "")
  try:
    seconds = float(value) if value else DEFAULT_PEER_TIMEOUT
  except ValueError:
    seconds = -1.0
  if not seconds > 0:
    raise cli.UserError(f"{PEER_TIMEOUT_ENV}={value!r} must be a positive number of seconds.")
  return seconds


def initialize() -> None:
  """Joins the multi-process job described by the environment and starts the watchdog.

  JAX_NUM_PROCESSES and JAX_PROCESS_ID, when set, are passed on; when unset,
  JAX detects them (Cloud TPU, SLURM, Open MPI).
  """
  global _watchdog
  import jax  # pylint: disable=g-import-not-at-top  # Here: the launcher imports this module.
  timeout = peer_timeout()
  try:
    jax.distributed.initialize(
        num_processes=_int_env(NUM_PROCESSES_ENV),
        process_id=_int_env(PROCESS_ID_ENV),
        # JAX's own check aborts with a stack trace: let the watchdog speak first.
        heartbeat_timeout_seconds=int(2 * timeout) + 10)
  except ValueError as error:  # No cluster detected and no address given.
    raise cli.UserError(
        f"{ENABLE_ENV}=1 but JAX found no multi-process job to join ({error}); on one "
        "machine start the processes with python -m wae_jax.multiprocess, elsewhere set "
        f"JAX_COORDINATOR_ADDRESS, {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV}.") from error
  if jax.process_count() > 1:
    _watchdog = PeerWatchdog(timeout)
    _watchdog.start()


def finish() -> None:
  """Tells the peers this process ended normally and stops the watchdog."""
  global _watchdog
  if _watchdog is not None:
    _watchdog.stop()
    _watchdog = None


def wait_if_a_peer_died(error: BaseException) -> None:
  """Called with the error a step raised; returns (to re-raise it) unless a peer died.

  A collective whose peer process died may fail at once (gloo: "Connection
  closed by peer") instead of blocking: the error names a socket, not the
  cause, and JAX's shutdown would then abort this process with a C++ stack
  trace. So after a runtime error this waits up to the peer timeout for the
  watchdog, which exits with its one line (EXIT_PEER_LOST) when a peer has
  gone silent; when every peer is still alive the error was this process's own.
  """
  import jax  # pylint: disable=g-import-not-at-top
  watchdog = _watchdog
  if watchdog is None or not isinstance(error, jax.errors.JaxRuntimeError):
    return
  watchdog.wait(watchdog.timeout + 3 * watchdog.interval)


def _client():
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  # The runtime client has no public accessor; its key-value store is what
  # orbax's multi-host barriers use too.
  return distributed.global_state.client


class PeerWatchdog:
  """A daemon thread: heartbeats through the coordinator, exits when a peer stops."""

  def __init__(self, timeout: float):
    import jax  # pylint: disable=g-import-not-at-top
    self.timeout = timeout
    self.interval = max(min(timeout / 10, 2.0), 0.1)
    self.process_id = jax.process_index()
    self.num_processes = jax.process_count()
    self._client = _client()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True, name="wae_jax-watchdog")

  def start(self) -> None:
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    self._thread.join(timeout=10 * self.interval)
    self._client.key_value_set(f"{_KEY_PREFIX}{self.process_id}", _DONE, allow_overwrite=True)

  def wait(self, seconds: float) -> None:
    """Sleeps while the watchdog runs (it may end the process meanwhile)."""
    self._thread.join(timeout=seconds)

  def _lost(self, what: str) -> None:
    print(f"wae_jax: {what}; stopping process {self.process_id} too. Start all "
          f"{self.num_processes} processes again with the same command to resume "
          "from the latest complete checkpoint.", file=sys.stderr, flush=True)
    os._exit(EXIT_PEER_LOST)  # pylint: disable=protected-access

  def _read(self, peer: int) -> Optional[str]:
    """The peer's last heartbeat, or None before its first."""
    try:
      return self._client.key_value_try_get(f"{_KEY_PREFIX}{peer}")
    except Exception as error:  # pylint: disable=broad-except
      if "NOT_FOUND" in str(error):
        return None
      raise

  def _run(self) -> None:
    peers = [p for p in range(self.num_processes) if p != self.process_id]
    last_value = {p: None for p in peers}
    last_change = {p: time.monotonic() for p in peers}
    beat = 0
    while not self._stop.wait(self.interval):
      if not threading.main_thread().is_alive():
        # Exiting without finish() (an exception): fall silent, so the peers stop
        # instead of waiting in a collective while JAX's shutdown waits for them.
        return
      try:
        self._client.key_value_set(f"{_KEY_PREFIX}{self.process_id}", str(beat),
                                   allow_overwrite=True)
        values = {p: self._read(p) for p in peers if last_value[p] != _DONE}
      except Exception as error:  # pylint: disable=broad-except
        if self._stop.is_set():
          return
        self._lost(f"lost the coordinator (process 0): {str(error).splitlines()[0]}")
      beat += 1
      now = time.monotonic()
      for peer, value in values.items():
        if value != last_value[peer]:
          last_value[peer], last_change[peer] = value, now
      for peer in peers:
        if last_value[peer] != _DONE and now - last_change[peer] > self.timeout:
          self._lost(f"process {peer} of {self.num_processes} sent no heartbeat for "
                     f"{self.timeout:g} s (killed, crashed or cut off)")
