"""Runs one command as an N-process JAX job on this machine, as on N hosts.

    python -m wae_jax.multiprocess --num_processes=2 --devices_per_process=4 -- \\
        python -m wae_jax.main --config=configs/default.py --workdir=/tmp/wae_2x4

starts the command N times, process i with

    WAE_JAX_DISTRIBUTED=1             python -m wae_jax.main joins the job
    JAX_COORDINATOR_ADDRESS=localhost:<free port>
    JAX_NUM_PROCESSES=N  JAX_PROCESS_ID=i
    JAX_PLATFORMS=cpu  JAX_NUM_CPU_DEVICES=<devices_per_process>

so the processes form one job of N x devices_per_process CPU devices whose
collectives cross processes through gloo: the path a Cloud TPU pod takes, where
every host runs the same command and JAX reads the same facts from the TPU
metadata. Each output line is prefixed with "[process i]". When a process
fails, the others stop on their own (wae_jax.multihost's watchdog); any still
running after --grace_seconds are killed. The exit status is that of the first
process to fail, or 0. SIGTERM and SIGINT to the launcher reach every process
(which checkpoint and stop, see wae_jax/preemption.py); if the launcher itself
dies (SIGKILL), Linux sends each process SIGTERM (a parent-death signal), so no
trainer goes on alone.
"""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Optional, Sequence

from wae_jax import cli
from wae_jax import multihost

MAX_PORT = 65535

try:
  _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
  _PRCTL = None  # Not Linux: no parent-death signal.
_PR_SET_PDEATHSIG = 1


def _end_with_launcher(launcher_pid: int):
  """A preexec_fn: the child gets SIGTERM when the launcher dies (Linux), and
  exits at once if the launcher died before that was armed."""

  def arm():
    if _PRCTL is not None:
      _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)
      if os.getppid() != launcher_pid:
        os._exit(1)  # pylint: disable=protected-access
  return arm


def free_port() -> int:
  """A TCP port nobody listens on right now."""
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def process_env(process_id: int, num_processes: int, devices_per_process: int,
                coordinator_address: str, base: Optional[dict] = None) -> dict:
  """The environment of process `process_id` of the job."""
  env = dict(os.environ if base is None else base)
  env.update({
      multihost.ENABLE_ENV: "1",
      "JAX_COORDINATOR_ADDRESS": coordinator_address,
      multihost.NUM_PROCESSES_ENV: str(num_processes),
      multihost.PROCESS_ID_ENV: str(process_id),
      "JAX_PLATFORMS": "cpu",
      "JAX_NUM_CPU_DEVICES": str(devices_per_process),
  })
  return env


def _describe(returncode: int) -> str:
  if returncode < 0:
    return f"was killed by {signal.Signals(-returncode).name}"
  return f"exited with status {returncode}"


def _forward(stream, prefix: str, out) -> None:
  for line in iter(stream.readline, ""):
    out.write(prefix + line)
    out.flush()
  stream.close()


def run(command: Sequence[str], num_processes: int, devices_per_process: int,
        port: int = 0, grace_seconds: Optional[float] = None) -> int:
  """Starts `command` as processes 0..num_processes-1 and waits for all.

  Returns:
    0 when every process succeeded, else the status of the first to fail
    (128 + signal number for a signal).
  """
  if num_processes < 1 or devices_per_process < 1:
    raise cli.UserError(f"--num_processes={num_processes} and --devices_per_process="
                        f"{devices_per_process} must both be at least 1.")
  if not 0 <= port <= MAX_PORT:
    raise cli.UserError(f"--port={port} is not a TCP port; use 1-{MAX_PORT}, or 0 for a "
                        "free one.")
  if grace_seconds is not None and not grace_seconds >= 0:
    raise cli.UserError(f"--grace_seconds={grace_seconds} must be 0 or more.")
  if not command:
    raise cli.UserError("give the command to run after --, e.g. -- python -m wae_jax.main "
                        "--config=configs/default.py --workdir=/tmp/w.")
  if grace_seconds is None:
    grace_seconds = 2 * multihost.peer_timeout() + 30  # Past JAX's own heartbeat check.
  address = f"localhost:{port or free_port()}"
  processes, threads = [], []
  for process_id in range(num_processes):
    try:
      child = subprocess.Popen(
          list(command), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          env=process_env(process_id, num_processes, devices_per_process, address),
          preexec_fn=_end_with_launcher(os.getpid()))
    except OSError as error:  # A missing or non-executable program.
      for started in processes:
        started.kill()
      raise cli.UserError(f"cannot start {command[0]!r} ({error.strerror}); give an "
                          "existing program after --, e.g. -- python -m wae_jax.main "
                          "...") from error
    print(f"[launcher] process {process_id} is pid {child.pid}", file=sys.stderr, flush=True)
    processes.append(child)
    for stream, out in ((child.stdout, sys.stdout), (child.stderr, sys.stderr)):
      thread = threading.Thread(target=_forward, args=(stream, f"[process {process_id}] ", out),
                                daemon=True)
      thread.start()
      threads.append(thread)

  def stop_all(signum, frame):  # Ctrl-C or a scheduler's SIGTERM reach every process.
    del frame
    for child in processes:
      if child.poll() is None:
        child.send_signal(signum)
  signal.signal(signal.SIGINT, stop_all)
  signal.signal(signal.SIGTERM, stop_all)

  first_failure, deadline, reported = None, None, set()
  while [child.poll() for child in processes].count(None):  # Polls every child.
    for process_id, child in enumerate(processes):
      if child.returncode in (None, 0) or process_id in reported:
        continue
      reported.add(process_id)
      note = ""
      if first_failure is None:
        first_failure = child.returncode
        deadline = time.monotonic() + grace_seconds
        note = f"; the others stop on their own or are killed in {grace_seconds:g} s"
      print(f"[launcher] process {process_id} {_describe(child.returncode)}{note}.",
            file=sys.stderr, flush=True)
    if deadline is not None and time.monotonic() > deadline:
      for process_id, child in enumerate(processes):
        if child.poll() is None:
          print(f"[launcher] killing process {process_id}, still running.",
                file=sys.stderr, flush=True)
          child.kill()
      break
    time.sleep(0.1)
  for thread in threads:
    thread.join()
  for process_id, child in enumerate(processes):
    if child.wait() != 0 and process_id not in reported:
      print(f"[launcher] process {process_id} {_describe(child.returncode)}.",
            file=sys.stderr, flush=True)
  if first_failure is None:
    first_failure = next((c.returncode for c in processes if c.returncode), 0)
  return 128 - first_failure if first_failure < 0 else first_failure


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (2: a bad input, one line on stderr)."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  argv = list(argv)
  split = argv.index("--") if "--" in argv else len(argv)
  parser = cli.ArgumentParser(
      prog="python -m wae_jax.multiprocess",
      description="Run a command as an N-process JAX job on this machine (CPU devices, "
                  "gloo collectives).",
      epilog="Example: python -m wae_jax.multiprocess --num_processes=2 "
             "--devices_per_process=4 -- python -m wae_jax.main "
             "--config=configs/default.py --workdir=/tmp/wae_2x4")
  parser.add_argument("--num_processes", type=int, default=2,
                      help="processes (simulated hosts)")
  parser.add_argument("--devices_per_process", type=int, default=4,
                      help="fake CPU devices in each process")
  parser.add_argument("--port", type=int, default=0,
                      help="coordinator port on localhost (default: a free one)")
  parser.add_argument("--grace_seconds", type=float, default=None,
                      help="after a process fails, how long the others may run before "
                           "they are killed (default: 2 x WAE_JAX_PEER_TIMEOUT + 30)")
  args = parser.parse_args(argv[:split])
  return run(argv[split + 1:], args.num_processes, args.devices_per_process,
             args.port, args.grace_seconds)


if __name__ == "__main__":
  sys.exit(main())
