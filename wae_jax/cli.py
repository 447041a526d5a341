"""The layer every command line shares: a user's mistake is one line, exit status 2.

    from wae_jax import cli
    raise cli.UserError("--workdir is empty; pass the run's directory, e.g. --workdir=/tmp/run.")

    if __name__ == "__main__":
      cli.run_absl(main)              # absl programs: wae_jax.main, evaluate, sample
      sys.exit(cli.run(main))         # argparse programs (launch.*), with cli.ArgumentParser

An input or environment error - a `UserError`, an unparsable flag or config
file, or an OSError that says the file system refused (permission denied,
read-only, full) - prints `error: <one sentence>` on stderr and exits with
status 2, without a traceback. Any other exception is a programming error and
traces back as usual. `--debug` (anywhere on the command line) or
WAE_JAX_DEBUG=1 prints the traceback of user errors too.

This module imports neither JAX nor TensorFlow, so the checks that need
neither fail in a fraction of a second.
"""

import argparse
import contextlib
import difflib
import errno
import logging
import os
import re
import sys
import traceback
from typing import Any, Callable, Iterator, NoReturn, Optional, Sequence

from wae_jax import per_member

USER_ERROR_EXIT_STATUS = 2
INTERRUPTED_EXIT_STATUS = 130  # the shell's status for SIGINT
DEBUG_FLAG = "--debug"
DEBUG_ENV = "WAE_JAX_DEBUG"

# OSErrors that describe the user's file system, not a bug.
_ENVIRONMENT_ERRNOS = {
    errno.EACCES: "permission denied; choose a location you can write to or fix its permissions",
    errno.EPERM: "operation not permitted; choose a location you can write to",
    errno.EROFS: "the file system is read-only; choose a writable location",
    errno.ENOSPC: "the disk is full; free space or choose another location",
    errno.EDQUOT: "the disk quota is exhausted; free space or choose another location",
}


class UserError(ValueError):
  """An input or environment error: its message is the one line the user sees.

  The message names the flag, config field or file that is wrong and says
  what to do. A ValueError, so callers that catch ValueError keep working.
  """


def environment_reason(error: BaseException) -> Optional[str]:
  """What to tell the user about an OSError of their file system, else None."""
  return _ENVIRONMENT_ERRNOS.get(getattr(error, "errno", None))


@contextlib.contextmanager
def reporting_write_errors(path: str, step: Optional[int] = None) -> Iterator[None]:
  """Turns a file-system refusal (full disk, quota, read-only, permissions) while
  writing `path` into one UserError naming the path (and the training step)."""
  try:
    yield
  except OSError as error:
    reason = environment_reason(error)
    if reason is None:
      raise
    at = f" at step {step}" if step is not None else ""
    raise UserError(f"writing {error.filename or path}{at} failed: {reason}; then run the "
                    "same command to resume from the last complete checkpoint.") from error


def one_line(text: str) -> str:
  """`text` with its lines joined: stderr gets exactly one line per error."""
  return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def user_message(error: BaseException) -> Optional[str]:
  """The one-line message of an input or environment error, else None (a bug)."""
  if isinstance(error, UserError):
    return one_line(error)
  if isinstance(error, OSError) and error.errno in _ENVIRONMENT_ERRNOS:
    where = error.filename if error.filename is not None else "a file"
    return f"{where}: {_ENVIRONMENT_ERRNOS[error.errno]}."
  return None


def _debug_requested(argv: Sequence[str]) -> tuple[list[str], bool]:
  """(argv without --debug, whether tracebacks of user errors are wanted)."""
  rest = [arg for arg in argv if arg != DEBUG_FLAG]
  return rest, len(rest) != len(argv) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _report(error: BaseException, debug: bool) -> Optional[int]:
  """Prints a user error and returns its exit status; None for a programming error."""
  message = user_message(error)
  if message is None:
    return None
  if debug:
    traceback.print_exception(error)
  sys.stderr.write(f"error: {message}\n")
  sys.stderr.flush()
  return USER_ERROR_EXIT_STATUS


def run(main: Callable[[list[str]], Optional[int]], argv: Optional[Sequence[str]] = None) -> int:
  """Calls main(argv) (argv without the program name); returns the exit status."""
  argv, debug = _debug_requested(sys.argv[1:] if argv is None else argv)
  try:
    return main(argv) or 0
  except KeyboardInterrupt:  # Ctrl-C is the user's choice, not a bug: no traceback.
    sys.stderr.write("interrupted; run the same command again to resume.\n")
    return INTERRUPTED_EXIT_STATUS
  except Exception as error:  # pylint: disable=broad-except
    status = _report(error, debug)
    if status is None:
      raise
    return status


class ArgumentParser(argparse.ArgumentParser):
  """argparse whose usage errors are a UserError (one line, exit 2) instead of usage text."""

  def error(self, message: str) -> NoReturn:
    raise UserError(f"{message}; see python -m {self.prog.split()[-1]} --help.")


# ----------------------------------------------------------------------------
# Workdirs.
# ----------------------------------------------------------------------------


def check_workdir_writable(path: str, flag: str = "--workdir") -> str:
  """The absolute path of a workdir a run may create or write; else UserError.

  Creates nothing: a path that does not exist yet is checked through the
  nearest folder above it that does.
  """
  if not path or not path.strip():
    raise UserError(f"{flag} is empty; pass the run's directory, e.g. {flag}=/tmp/wae_run.")
  path = os.path.abspath(os.path.expanduser(path))
  existing = path
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "" if existing == path else f" (its parent {existing} is a file)"
    raise UserError(f"{flag}={path} is not a directory{where}; pass a directory, new or the "
                    "workdir of an earlier run.")
  if not os.access(existing, os.W_OK | os.X_OK):
    reason = "is on a read-only file system" if _is_read_only(existing) else "is not writable"
    where = path if existing == path else f"{path}: {existing}"
    raise UserError(f"{flag}={where} {reason}; choose a directory you can write to.")
  return path


def check_run_workdir(path: str, required_file: str, flag: str = "--workdir") -> str:
  """The absolute path of an existing run's workdir holding `required_file`; else UserError."""
  if not path or not path.strip():
    raise UserError(f"{flag} is empty; pass the workdir of a training run.")
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(path):
    what = "is a file" if os.path.exists(path) else "does not exist"
    raise UserError(f"{flag}={path} {what}; pass the workdir of a training run "
                    "(python -m wae_jax.main --workdir=...).")
  if not os.path.isfile(os.path.join(path, required_file)):
    raise UserError(f"{flag}={path} has no {required_file}, so it is not the workdir of a "
                    "training run; pass the --workdir you trained with.")
  return path


def _is_read_only(path: str) -> bool:
  try:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
  except OSError:
    return False


# ----------------------------------------------------------------------------
# absl programs and ml_collections config flags.
# ----------------------------------------------------------------------------


def run_absl(main: Callable[[list[str]], Any]) -> NoReturn:
  """absl's app.run(main) with flag, config and user errors as one line, exit 2.

  Also quiets the library logs (see quiet_library_logs).
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  argv, debug = _debug_requested(sys.argv)
  quiet_library_logs()

  def main_without_usage_text(args):
    if len(args) > 1:
      raise UserError(f"unexpected arguments {' '.join(args[1:])}; flags take the form "
                      "--name=value.")
    return main(args)

  try:
    app.run(main_without_usage_text, argv=argv, flags_parser=parse_flags)
  except KeyboardInterrupt:  # Ctrl-C before a program installed its own handling.
    sys.stderr.write("interrupted; run the same command again to resume.\n")
    sys.exit(INTERRUPTED_EXIT_STATUS)
  except Exception as error:  # pylint: disable=broad-except
    status = _report(error, debug)
    if status is None:
      raise
    sys.exit(status)
  sys.exit(0)  # app.run exits itself; this only satisfies NoReturn.


def parse_flags(argv: list[str]) -> list[str]:
  """absl's FLAGS(argv), with every failure turned into a one-line UserError.

  Parsing runs the --config file and applies its --config.<field> overrides,
  so a missing or broken config file, an unknown field and an unparsable
  value all surface here.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  _make_config_packages_importable(argv)
  try:
    rest = flags.FLAGS(argv)
    for flag in _config_flags():
      if flag.value is not None:
        flag.value.keys()  # ml_collections defers a config file's load error to first use.
    return rest
  except flags.Error as error:
    for flag in _config_flags():
      if flag.present and flag.value is None:
        raise UserError(f"--{flag.name}={_flag_argument(argv, flag.name)}: get_config() "
                        "returned None; make it return the ConfigDict.") from error
    if isinstance(error, flags.UnrecognizedFlagError):
      message = _unknown_field_message(argv)
      if message is not None:
        raise UserError(message) from error
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    user_error = f"{UserError.__name__}: "
    if lines and user_error in lines[-1]:  # get_config refused its argument or a value.
      message = lines[-1].split(user_error, 1)[1]
      for flag in _config_flags():
        if _flag_argument(argv, flag.name) is not None:
          message = f"--{flag.name}={_flag_argument(argv, flag.name)}: {message}"
          break
      raise UserError(message) from error
    if len(lines) > 1:  # A config file whose get_config raised: its traceback follows.
      raise UserError(f"{lines[0].rstrip(':')} {lines[-1]}; fix that config file.") from error
    raise UserError(f"{lines[0] if lines else error}; see --helpshort.") from error
  except SyntaxError as error:
    raise UserError(
        f"--config file {error.filename} has a syntax error on line {error.lineno} "
        f"({error.msg}); fix it.") from error
  except OSError as error:
    raise UserError(_config_file_message(argv, error)) from error
  except (AttributeError, KeyError, TypeError) as error:
    if isinstance(error, AttributeError) and "get_config" in str(error):
      path = next((_flag_argument(argv, flag.name) for flag in _config_flags()
                   if _flag_argument(argv, flag.name)), "the --config file")
      raise UserError(f"--config file {path.split(':', 1)[0]} defines no get_config(); a "
                      "config file must define get_config(arg=None) returning a "
                      "ConfigDict (see configs/default.py).") from error
    message = _unknown_field_message(argv)
    if message is None:
      raise
    raise UserError(message) from error


def _make_config_packages_importable(argv: Sequence[str]) -> None:
  """Puts the folder above a config file's package on sys.path.

  The experiment files import their shared pieces as `configs.<x>`; with this,
  `--config=/path/to/wae-jax/configs/x.py` works from any directory.
  """
  for arg in argv:
    if not arg.startswith("--") or "=" not in arg:
      continue
    path = arg.split("=", 1)[1].split(":", 1)[0]
    if not path.endswith(".py"):
      continue
    package = os.path.dirname(os.path.abspath(path))
    if os.path.isfile(os.path.join(package, "__init__.py")):
      root = os.path.dirname(package)
      if root not in sys.path:
        sys.path.insert(0, root)


def _config_flags() -> list:
  """The ml_collections config flags (--config and any other DEFINE_config_file)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  # is_config_flag is meant for library users, but not re-exported by the package.
  from ml_collections.config_flags import config_flags  # pylint: disable=g-import-not-at-top
  return [flags.FLAGS[name] for name in flags.FLAGS
          if config_flags.is_config_flag(flags.FLAGS[name])]


def _flag_argument(argv: Sequence[str], name: str) -> Optional[str]:
  """The value given to --name on the command line (the last one), else None."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg[len(name) + 3:]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def config_override_fields(argv: Sequence[str], name: str = "config") -> set:
  """The dotted fields that --<name>.<field>=... flags in argv set."""
  prefix = f"--{name}."
  found = set()
  for arg in argv:
    if arg.startswith(prefix):
      found.add(arg[len(prefix):].split("=", 1)[0])
  return found


def _config_file_message(argv: Sequence[str], error: OSError) -> str:
  """The sentence for a config file that could not be read."""
  for flag in _config_flags():
    path = _flag_argument(argv, flag.name)
    if path is None:
      continue
    path = path.split(":", 1)[0]
    if not path:
      return f"--{flag.name} is empty; pass a config file, e.g. --{flag.name}=configs/default.py."
    if not os.path.isfile(path):
      what = "is a directory" if os.path.isdir(path) else "does not exist"
      return (f"--{flag.name}: config file {path!r} {what}; pass an existing file, "
              f"e.g. --{flag.name}=configs/default.py.")
  detail = one_line(error).replace("Configuration is not available because of an earlier "
                                   "failure to load: ", "")
  return f"the config file could not be loaded ({detail}); check --config."


def _unknown_field_message(argv: Sequence[str]) -> Optional[str]:
  """The sentence for --config.<path>=... naming a field the config does not have."""
  for flag in _config_flags():
    path = _flag_argument(argv, flag.name)
    if path is None:
      continue
    config = flag.parser.parse(path)  # Runs the config file again: absl kept no value.
    prefix = f"--{flag.name}."
    for arg in argv:
      if not arg.startswith(prefix):
        continue
      field = arg[len(prefix):].split("=", 1)[0]
      shared = per_member.shared_field_message(config, prefix, field)
      if shared is not None:
        return shared
      node, walked = config, []
      for part in field.split("."):
        if not hasattr(node, "keys"):
          return (f"{prefix}{field}: config.{'.'.join(walked)} is a single value, not a group "
                  f"of fields; set it with {prefix}{'.'.join(walked)}=<value>.")
        keys = list(node.keys())
        if part not in keys:
          close = difflib.get_close_matches(part, keys, n=3)
          hint = (f"did you mean {' or '.join(prefix + '.'.join(walked + [k]) for k in close)}?"
                  if close else "check the spelling against the config file.")
          return f"{prefix}{field}: the config has no field {part!r}; {hint}"
        node, walked = node[part], walked + [part]
  return None


# ----------------------------------------------------------------------------
# Quiet logs.
# ----------------------------------------------------------------------------


# A full disk or quota (errno 28 / 122) as orbax and tensorstore word it.
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|os_error_code='(28|122)'")


class _LibraryNoise(logging.Filter):
  """Drops log records that tell a user nothing they can act on.

  - orbax's INFO lines (a dozen per save) and its warnings that a manager
    opened for reading is read-only;
  - jax's "Unable to initialize backend 'tpu'" when libtpu is installed on a
    machine without a TPU (jax then uses the CPU, as intended);
  - a full disk logged from any thread, with its traceback: orbax's own
    records, and asyncio's "Task exception was never retrieved" when one of
    orbax's background writes fails first. The trainer reports it in one line
    (wae_jax.checkpoint).
  """

  def filter(self, record: logging.LogRecord) -> bool:
    path = record.pathname.replace(os.sep, "/")
    if record.levelno < logging.WARNING:
      if "/orbax/" in path:
        return False
      if path.endswith("/xla_bridge.py"):
        return not record.getMessage().startswith("Unable to initialize backend")
      return True
    message = record.getMessage()
    error = record.exc_info[1] if record.exc_info else None
    if _DISK_FULL.search(message if error is None else f"{message} {error}"):
      return False
    if "/orbax/" in path:
      # The trainer saves metrics only with evaluations, by design.
      return ("read_only=True" not in message and "is read only" not in message
              and "did not provide metrics" not in message)
    return True


def quiet_library_logs() -> None:
  """Installs the _LibraryNoise filter on absl's log handler (idempotent)."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryNoise) for f in handler.filters):
    handler.addFilter(_LibraryNoise())
