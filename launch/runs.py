"""One run of a sweep: its files, its lock, and executing it with retries.

Layout of a sweep root:

  <root>/sweep.json         what was expanded (config, config arg, seed, count)
  <root>/manifest.jsonl     one line per run: {index, overrides, workdir, command}
  <root>/runs/<index>/      the run's trainer workdir, which also holds
      launch.lock           flock-ed by the process that runs the trainer
      launch_status.json    {state, attempt, ...}: running | finished | failed
      launch_log.txt        the trainer's stdout and stderr, every attempt
      attempts.jsonl        one line per trainer start
      run_complete.json     written by the trainer as its last act

`execute_run` is the whole life of a run on whichever machine an engine puts
it; engines only decide where it executes and with which devices.
"""

import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from typing import Any, Optional

from wae_jax import cli

LOCK_FILE = "launch.lock"
STATUS_FILE = "launch_status.json"
LOG_FILE = "launch_log.txt"
ATTEMPTS_FILE = "attempts.jsonl"
COMPLETE_FILE = "run_complete.json"
LOG_TAIL_LINES = 40

# Results of execute_run.
FINISHED = "finished"          # the trainer wrote run_complete.json
ALREADY_FINISHED = "already_finished"   # it had before this launch
FAILED = "failed"              # every attempt failed
BUSY = "busy"                  # another process holds the run's lock


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """What an engine needs to execute one run.

  Attributes:
    index: the run's number in the sweep.
    workdir: absolute path of <root>/runs/<index>.
    command: the argv list of the trainer command (what the manifest shows).
    cwd: directory the command runs in (the project root).
    extra_env: environment variables added for the trainer, as (name, value)
      pairs (the sweep's shared JAX compilation cache); the command runs the
      same without them, only slower to compile.
  """
  index: int
  workdir: str
  command: tuple[str, ...]
  cwd: str
  extra_env: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class RunResult:
  index: int
  state: str
  attempts: int = 0
  log_tail: str = ""


def is_finished(workdir: str) -> bool:
  return os.path.exists(os.path.join(workdir, COMPLETE_FILE))


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON so that a reader never sees half a file (tmp + os.replace)."""
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def read_json(path: str) -> Optional[Any]:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def read_jsonl(path: str) -> list[Any]:
  """The complete JSON lines of a file ([] when absent; a torn last line is skipped)."""
  rows = []
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if line:
          try:
            rows.append(json.loads(line))
          except json.JSONDecodeError:
            pass
  except FileNotFoundError:
    pass
  return rows


def log_tail(workdir: str, num_lines: int = LOG_TAIL_LINES) -> str:
  """The last num_lines lines of the run's launch_log.txt."""
  try:
    with open(os.path.join(workdir, LOG_FILE), "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(0, f.tell() - 64 * 1024))
      text = f.read().decode("utf-8", errors="replace")
  except FileNotFoundError:
    return ""
  # Long lines (e.g. logged option dumps) are cut so the tail stays readable.
  return "\n".join(line if len(line) <= 500 else line[:500] + " [...]"
                   for line in text.splitlines()[-num_lines:])


def is_locked(workdir: str) -> bool:
  """Whether some live process holds the run's lock (i.e. it is running)."""
  path = os.path.join(workdir, LOCK_FILE)
  if not os.path.exists(path):
    return False
  with open(path, "a+") as f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return True
      raise
    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


try:
  _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except (OSError, AttributeError):
  _PRCTL = None  # not Linux: the inherited lock still prevents a concurrent rerun


def _die_with_parent() -> None:
  """In the trainer child: get SIGKILL when the worker that started it dies.

  A killed launcher then never leaves an untracked trainer behind; the lock
  (inherited, see execute_run) is released once both are gone. Without it an
  orphaned trainer keeps the lock, finishes and records its result, and a
  relaunch meanwhile reports the run busy. Resolved at import so the child
  runs no imports between fork and exec.
  """
  if _PRCTL is not None:
    _PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def die_with_parent(parent_pid: int) -> None:
  """In a worker process: get SIGKILL when `parent_pid` (the launcher) dies.

  Linux only (elsewhere a no-op). If the parent is already gone, exits now.
  """
  _die_with_parent()
  if _PRCTL is not None and os.getppid() != parent_pid:
    os._exit(1)  # The parent died before the death signal was armed.


def _write_status(workdir: str, **fields) -> None:
  path = os.path.join(workdir, STATUS_FILE)
  status = read_json(path) or {}
  status.update(fields)
  status["updated"] = time.time()
  write_json_atomic(path, status)


def execute_run(spec: RunSpec, retries: int, env: Optional[dict[str, str]] = None,
                die_with_parent: bool = False) -> RunResult:
  """Runs one sweep index to completion, retrying a failing trainer.

  Holds an exclusive flock on <workdir>/launch.lock for the whole life of the
  trainer subprocess (which inherits the locked descriptor), so the same index
  never runs twice at once; a lock left by a killed launcher is released by
  the OS with its last holder. Finished runs are skipped; an unfinished one
  restarts the same command, and the trainer resumes from its checkpoints.

  Args:
    spec: the run.
    retries: how many times to rerun a failing trainer (attempts = retries + 1);
      a trainer that exits with status 2 (a bad input, see wae_jax.cli) is not
      rerun.
    env: environment for the trainer (default: this process's).
    die_with_parent: have the kernel kill the trainer when this process dies
      (Linux PR_SET_PDEATHSIG). Only for single-threaded callers such as the
      local engine's workers: it runs Python between fork and exec.

  Returns:
    A RunResult whose state is finished, already_finished, failed or busy.
  """
  os.makedirs(spec.workdir, exist_ok=True)
  if is_finished(spec.workdir):
    return RunResult(spec.index, ALREADY_FINISHED)
  if spec.extra_env:
    env = {**(os.environ if env is None else env), **dict(spec.extra_env)}
  lock_fd = os.open(os.path.join(spec.workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return RunResult(spec.index, BUSY)
      raise
    # Another launcher may have finished it between the check and the lock.
    if is_finished(spec.workdir):
      return RunResult(spec.index, ALREADY_FINISHED)
    previous = read_jsonl(os.path.join(spec.workdir, ATTEMPTS_FILE))
    first_started = (read_json(os.path.join(spec.workdir, STATUS_FILE)) or {}).get(
        "first_started", time.time())
    max_attempts = retries + 1
    for attempt in range(1, max_attempts + 1):
      started = time.time()
      _write_status(spec.workdir, state="running", attempt=attempt,
                    max_attempts=max_attempts, host=socket.gethostname(),
                    pid=os.getpid(), started=started, first_started=first_started)
      with open(os.path.join(spec.workdir, ATTEMPTS_FILE), "a", encoding="utf-8") as f:
        f.write(json.dumps({"attempt": attempt, "launch_attempt": len(previous) + attempt,
                            "started": started, "host": socket.gethostname(),
                            "pid": os.getpid()}) + "\n")
      with open(os.path.join(spec.workdir, LOG_FILE), "ab") as log:
        log.write((f"=== attempt {attempt}/{max_attempts} on {socket.gethostname()} at "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(spec.command)}\n"
                   ).encode("utf-8"))
        log.flush()
        process = subprocess.Popen(
            list(spec.command), cwd=spec.cwd, env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            pass_fds=(lock_fd,), preexec_fn=_die_with_parent if die_with_parent else None)
        returncode = process.wait()
        log.write(f"=== attempt {attempt} exited with status {returncode}\n".encode("utf-8"))
      if returncode == 0 and is_finished(spec.workdir):
        _write_status(spec.workdir, state="finished", ended=time.time(), returncode=0)
        return RunResult(spec.index, FINISHED, attempt)
      reason = (f"exit status {returncode}" if returncode != 0
                else f"exit status 0 but no {COMPLETE_FILE}")
      _write_status(spec.workdir, state="failing", last_error=reason, ended=time.time(),
                    returncode=returncode)
      if returncode == cli.USER_ERROR_EXIT_STATUS:
        break  # A bad input or environment: the same command would fail the same way.
    tail = log_tail(spec.workdir)
    _write_status(spec.workdir, state="failed", ended=time.time(), log_tail=tail)
    return RunResult(spec.index, FAILED, attempt, tail)
  finally:
    os.close(lock_fd)  # releases the flock (the trainer, if any, has exited)
