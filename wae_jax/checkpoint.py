"""Checkpoints of a run: its config (config.json) and its TrainState (orbax),
and the trainer's lock of the workdir (file names: wae_jax/run_files.py).

A checkpoint holds the pytree leaves of the TrainState as a nested dict
(`flax.serialization.to_state_dict`), so the queue, the key encoder, the
adversary and the optimizer states are all saved. The static part of the state
(modules, optimizers) is never saved: restore rebuilds it by tracing the
method's `init` on the saved config (`jax.eval_shape`, no compute) and fills the
leaves in.

Orbax writes each step into `<step>.orbax-checkpoint-tmp-<time>` and renames it
to `<step>` only when every file is written, so a run killed while saving
leaves a temporary folder that is never listed, never restored and is deleted
the next time a manager opens the folder.

Every checkpoint is verified twice. When written: its state must be finite,
and the SHA-256 of its leaves (with the config and the trainer's partial log
window) goes into the checkpoint's own metadata. When read for a resume: the
files must restore, hold the leaves the config builds, hash to that digest and
be finite; a checkpoint that fails is moved aside to `<step>.corrupt` and the
next older one is tried (tensorstore does not checksum array data, so flipped
bytes would otherwise restore silently).
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import logging as logging_lib
import re
import socket
import sys
from typing import Any, Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization
from flax import traverse_util
from jax.experimental import multihost_utils

from wae_jax import cli
from wae_jax.run_files import (CHECKPOINT_DIR, CONFIG_FILE, CORRUPT_SUFFIX, LOCK_FILE,
                               write_json_atomic)
from wae_jax.state import TrainState

# Keys of a checkpoint's custom metadata.
DIGEST_KEY = "state_sha256"
# The SHA-256 binding the state's digest to the step and the recorded config and
# image shape, so that a checkpoint copied in under another step number, or one
# whose recorded config was edited, fails verification. Older checkpoints lack it.
BOUND_DIGEST_KEY = "checkpoint_sha256"
CONFIG_KEY = "config"
IMAGE_SHAPE_KEY = "image_shape"

# Fields a user may change between a run and its resumption: they change how
# long the run is or what it writes, never the shape of the saved state.
RESUMABLE_CHANGES = (
    "num_train_steps",
    "log_every_steps",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "eval_every_steps",
    "num_eval_images",
    "data_dir",
    "steps_per_call",
)


class WorkdirBusyError(cli.UserError):
  """Another trainer holds the workdir's lock."""


class DamagedCheckpointError(cli.UserError):
  """A checkpoint's files do not give back the finite state that was saved."""


class IncompatibleCheckpointError(cli.UserError):
  """An intact checkpoint of a different state (another config or library version)."""


class NonFiniteStateError(FloatingPointError):
  """The state to save holds NaN or Inf; `leaves` names them."""

  def __init__(self, step: int, leaves: Sequence[str]):
    self.step, self.leaves = step, list(leaves)
    super().__init__(f"the state of step {step} holds NaN or Inf in {', '.join(self.leaves)}")


# ----------------------------------------------------------------------------
# The workdir lock
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def workdir_lock(workdir: str, enabled: bool = True) -> Iterator[None]:
  """Holds an exclusive flock on <workdir>/trainer.lock, or raises WorkdirBusyError.

  The OS drops the lock when its process dies, so a killed trainer never
  leaves a stale lock. Multi-host runs lock on the chief only (`enabled`):
  flock on a shared filesystem may span hosts.
  """
  if not enabled:
    yield
    return
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise
      holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
      raise WorkdirBusyError(
          f"Another trainer ({holder}) is running in {workdir}; wait for it to "
          "finish, or stop it, or use another --workdir.") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode("utf-8"))
    yield
  finally:
    os.close(fd)  # Releases the lock.


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """A plain JSON-able dict of a (possibly frozen) config; tuples become lists."""
  return json.loads(ml_collections.ConfigDict(config).to_json_best_effort())


def _lists_to_tuples(tree: Any) -> Any:
  if isinstance(tree, dict):
    return {k: _lists_to_tuples(v) for k, v in tree.items()}
  if isinstance(tree, list):
    return tuple(_lists_to_tuples(v) for v in tree)
  return tree


def save_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes <workdir>/config.json atomically."""
  os.makedirs(workdir, exist_ok=True)
  write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_to_dict(config))


class DamagedConfigError(cli.UserError):
  """config.json exists but is not a JSON object."""


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads <workdir>/config.json back into a ConfigDict (lists as tuples)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} does not exist: {workdir!r} is not a wae_jax workdir "
        "(train into it first with python -m wae_jax.main).")
  try:
    with open(path, encoding="utf-8") as f:
      saved = json.loads(f.read())
  except (UnicodeDecodeError, json.JSONDecodeError) as e:  # Not UTF-8, or not JSON.
    saved = e
  if not isinstance(saved, dict):
    raise DamagedConfigError(
        f"{path} is damaged (not a JSON object); rerun the trainer with the run's "
        "config to rewrite it from the checkpoints, or restore the file.")
  return ml_collections.ConfigDict(_lists_to_tuples(saved))


def _flatten(tree: dict) -> dict:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  return traverse_util.flatten_dict(tree, sep=".")


def config_differences(saved: dict, current: dict) -> list[str]:
  """Dotted names of fields that differ between two config dicts.

  A field the saved config lacks and the current one holds at its schema
  default is no difference: the schema grew since the run started (a new
  method's fields, a newly declared evaluator field).
  """
  from wae_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  saved_flat, current_flat = _flatten(saved), _flatten(current)
  defaults = _flatten(config_to_dict(config_lib.base_config()))
  names = sorted(set(saved_flat) | set(current_flat))
  return [n for n in names
          if saved_flat.get(n, "<absent>") != current_flat.get(n, "<absent>")
          and not (n not in saved_flat and n in defaults
                   and current_flat[n] == defaults[n])]


def _resumable_changes(saved: dict, config: ml_collections.ConfigDict, workdir: str) -> list[str]:
  """The fields of `config` that differ from `saved`; ValueError if one may not."""
  current = config_to_dict(config)
  changed = config_differences(saved, current)
  blocking = [n for n in changed if n not in RESUMABLE_CHANGES]
  if blocking:
    saved_flat, current_flat = _flatten(saved), _flatten(current)
    details = ", ".join(
        f"{n} (saved {saved_flat.get(n, '<absent>')!r}, now {current_flat.get(n, '<absent>')!r})"
        for n in blocking)
    raise cli.UserError(
        f"The config differs from the one {workdir!r} was started with in "
        f"{details}; restore those values to resume, or use a new --workdir.")
  return changed


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """Raises ValueError if `config` cannot resume the run saved in `workdir`.

  Returns:
    The changed fields that are allowed (in RESUMABLE_CHANGES), for logging.
  """
  return _resumable_changes(config_to_dict(load_config(workdir)), config, workdir)


# ----------------------------------------------------------------------------
# The state as a checkpointable dict.
# ----------------------------------------------------------------------------


def _is_prng_key(x: Any) -> bool:
  return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def state_to_checkpoint(state: TrainState) -> dict:
  """The TrainState's leaves as a nested dict; unused (None) fields dropped.

  Typed PRNG keys are stored as their raw uint32 key data.
  """
  tree = serialization.to_state_dict(state)
  tree = {k: v for k, v in tree.items() if v is not None}
  return jax.tree.map(
      lambda x: jax.random.key_data(x) if _is_prng_key(x) else x, tree)


def _abstract_checkpoint(abstract_state: TrainState, sharding) -> dict:
  """ShapeDtypeStructs matching `state_to_checkpoint` of a state like this one."""
  def to_struct(x):
    if _is_prng_key(x):
      x = jax.eval_shape(jax.random.key_data, x)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
  tree = serialization.to_state_dict(abstract_state)
  tree = {k: v for k, v in tree.items() if v is not None}
  return jax.tree.map(to_struct, tree)


def checkpoint_to_state(abstract_state: TrainState, tree: dict) -> TrainState:
  """Inverse of `state_to_checkpoint`, with `abstract_state` giving the static part."""
  template = serialization.to_state_dict(abstract_state)
  full = {k: tree.get(k) for k in template}
  state = serialization.from_state_dict(abstract_state, full)
  # The key's implementation is part of its dtype (jax has no public accessor
  # for it on a ShapeDtypeStruct).
  return jax.tree.map(
      lambda like, x: jax.random.wrap_key_data(x, impl=like.dtype._impl)  # pylint: disable=protected-access
      if _is_prng_key(like) else x,
      abstract_state, state)


def example_batch(image_shape: Sequence[int], batch_size: int) -> dict:
  """A zero batch of the run's shapes, for tracing `method.init`."""
  return {
      "image": np.zeros((batch_size, *image_shape), np.float32),
      "label": np.zeros((batch_size,), np.int32),
  }


def abstract_state(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> TrainState:
  """The TrainState `method.init` would build for `config`, traced without compute."""
  from wae_jax import methods  # Imported here: methods import the models and losses.
  method = methods.get(config.method)
  batch = example_batch(image_shape, config.batch_size)
  return jax.eval_shape(
      lambda: method.init(config, jax.random.PRNGKey(config.seed), batch))


# ----------------------------------------------------------------------------
# Saving and verified restoring.
# ----------------------------------------------------------------------------


def _leaf_name(path) -> str:
  return "/".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


def state_digest(tree: dict) -> str:
  """SHA-256 of a checkpoint tree: each leaf's name, dtype, shape and bytes, in tree order."""
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(f"{_leaf_name(path)}|{array.dtype.str}|{array.shape}|".encode("utf-8"))
    digest.update(array.tobytes())
  return digest.hexdigest()


def non_finite_leaves(tree: dict) -> list[str]:
  """Names of the floating-point leaves of `tree` that hold a NaN or Inf."""
  return [_leaf_name(path) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
          if jnp.issubdtype(np.asarray(leaf).dtype, jnp.inexact)
          and not np.all(np.isfinite(np.asarray(leaf)))]


def bound_digest(state_sha256: str, step: int, custom: dict) -> str:
  """The SHA-256 of (state digest, step, recorded config, recorded image shape)."""
  record = {"state": state_sha256, "step": int(step), "config": custom.get(CONFIG_KEY),
            "image_shape": custom.get(IMAGE_SHAPE_KEY)}
  return hashlib.sha256(json.dumps(record, sort_keys=True).encode("utf-8")).hexdigest()


def verified_digest(state: TrainState, step: int) -> str:
  """The digest `save` records for `state`.

  Raises:
    NonFiniteStateError: a leaf holds NaN or Inf.
  """
  host_tree = jax.device_get(state_to_checkpoint(state))
  bad = non_finite_leaves(host_tree)
  if bad:
    raise NonFiniteStateError(step, bad)
  return state_digest(host_tree)


def save(manager: ocp.CheckpointManager, state: TrainState, step: int,
         metrics: Optional[dict] = None, image_shape: Optional[Sequence[int]] = None,
         config: Optional[ml_collections.ConfigDict] = None, digest: Optional[str] = None,
         extra_metadata: Optional[dict] = None) -> None:
  """Saves `state` as checkpoint `step` (asynchronously; see wait_until_finished).

  The checkpoint's custom metadata records the digest of its leaves
  (`verified_digest(state, step)`, computed here when not given), and
  `image_shape`, `config` and `extra_metadata` (JSON-able) when given.

  Raises:
    NonFiniteStateError: a leaf holds NaN or Inf; nothing is saved.
  """
  tree = state_to_checkpoint(state)
  custom = {DIGEST_KEY: digest if digest is not None else verified_digest(state, step)}
  if image_shape is not None:
    custom[IMAGE_SHAPE_KEY] = list(image_shape)
  if config is not None:
    custom[CONFIG_KEY] = config_to_dict(config)
  custom.update(extra_metadata or {})
  # A snapshot: orbax writes the metadata later, when the asynchronous save ends.
  custom = json.loads(json.dumps(custom))
  custom[BOUND_DIGEST_KEY] = bound_digest(custom[DIGEST_KEY], step, custom)
  manager.save(
      step, args=ocp.args.StandardSave(tree),
      metrics={k: float(v) for k, v in metrics.items()} if metrics else None,
      force=True, custom_metadata=custom)


def _first_line(error: Exception, limit: int = 200) -> str:
  text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  return text if len(text) <= limit else text[:limit] + " ..."


def _damaged(manager: ocp.CheckpointManager, step: int, reason: str) -> DamagedCheckpointError:
  return DamagedCheckpointError(f"Checkpoint {step} in {manager.directory} is damaged: {reason}")


# How tensorstore / orbax report a full disk or quota (errno 28 / 122) inside their errors.
_DISK_FULL_PATTERN = re.compile(r"No space left on device|Disk quota exceeded|"
                                r"os_error_code='(28|122)'")
_STEP_FOLDER_PATTERN = re.compile(r"(/[^\"']*?/(\d+))\.orbax-checkpoint-tmp")


def _is_disk_full(error: BaseException) -> bool:
  if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
    return True
  return bool(_DISK_FULL_PATTERN.search(str(error)))


@contextlib.contextmanager
def reporting_write_errors(manager: ocp.CheckpointManager) -> Iterator[None]:
  """Around saving and waiting for checkpoints: a full disk becomes one
  cli.UserError naming the checkpoint folder and step (cli's log filter drops
  the tracebacks orbax's threads log). The previous complete checkpoint stays intact."""
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    if not _is_disk_full(error):
      raise
    match = _STEP_FOLDER_PATTERN.search(str(error))
    where = (f"checkpoint {match.group(2)} to {match.group(1)}" if match
             else f"a checkpoint to {manager.directory}")
    raise cli.UserError(
        f"writing {where} failed: the disk is full; free space or choose another --workdir, "
        "then run the same command to resume from the last complete checkpoint, "
        "which is kept.") from None


class _OrbaxSilenced(logging_lib.Filter):
  def filter(self, record: logging_lib.LogRecord) -> bool:
    return "/orbax/" not in record.pathname.replace(os.sep, "/")


def _is_closed_loop_callback(unraisable) -> bool:
  return (isinstance(unraisable.exc_value, RuntimeError)
          and str(unraisable.exc_value) == "Event loop is closed")


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
  """Keeps a damaged checkpoint to our one warning line.

  While reading, orbax's own log lines about the damage are dropped; and a
  failed tensorstore read leaves callbacks into orbax's closed event loop
  that would each print a traceback later, so those are dropped for good
  (the hook passes every other unraisable exception on).
  """
  if not getattr(sys.unraisablehook, "_drops_closed_loop_callbacks", False):
    previous = sys.unraisablehook

    def hook(unraisable):
      if not _is_closed_loop_callback(unraisable):
        previous(unraisable)

    hook._drops_closed_loop_callbacks = True  # pylint: disable=protected-access
    sys.unraisablehook = hook
  silenced = _OrbaxSilenced()
  logger = logging_lib.getLogger("absl")
  logger.addFilter(silenced)
  try:
    yield
  finally:
    logger.removeFilter(silenced)


def custom_metadata(manager: ocp.CheckpointManager, step: int) -> dict:
  """The custom metadata of checkpoint `step`, which must hold its digest.

  Raises:
    DamagedCheckpointError: unreadable, or without a digest (every checkpoint
      `save` writes has one).
  """
  try:
    custom = dict(manager.metadata(step).custom_metadata or {})
  except Exception as e:  # pylint: disable=broad-except  # Any failure to read is damage.
    raise _damaged(manager, step, f"it cannot be read ({_first_line(e)})") from None
  if DIGEST_KEY not in custom:
    raise _damaged(manager, step, "_CHECKPOINT_METADATA with the digest of its state is "
                   "missing or unreadable")
  return custom


def _check_leaves(manager: ocp.CheckpointManager, step: int, target: dict) -> None:
  """Raises unless checkpoint `step` lists exactly the leaves (shape, dtype) of `target`."""
  try:
    saved = manager.item_metadata(step)
    saved = {_leaf_name(path): (tuple(meta.shape), np.dtype(meta.dtype))
             for path, meta in jax.tree_util.tree_flatten_with_path(saved)[0]}
  except Exception as e:  # pylint: disable=broad-except
    raise _damaged(manager, step, f"its array metadata cannot be read ({_first_line(e)})") from None
  if not saved:
    raise _damaged(manager, step, "its array metadata (_METADATA) is missing")
  wanted = {_leaf_name(path): (tuple(x.shape), np.dtype(x.dtype))
            for path, x in jax.tree_util.tree_flatten_with_path(target)[0]}
  if saved != wanted:
    differing = sorted(n for n in set(saved) | set(wanted) if saved.get(n) != wanted.get(n))
    raise IncompatibleCheckpointError(
        f"Checkpoint {step} in {manager.directory} holds a different state than this "
        f"config and wae_jax version build (leaves {', '.join(differing[:5])}"
        f"{' ...' if len(differing) > 5 else ''}); resume it with the version that wrote it, "
        "or use a new --workdir.")


def restore_verified(manager: ocp.CheckpointManager, config: ml_collections.ConfigDict,
                     step: int, image_shape: Optional[Sequence[int]] = None,
                     sharding: Optional[jax.sharding.Sharding] = None
                     ) -> tuple[TrainState, dict]:
  """Restores checkpoint `step` and proves it is the finite state that was saved.

  Returns:
    (the TrainState `method.init` builds for `config`, filled with the saved
     leaves; the checkpoint's custom metadata).

  Raises:
    DamagedCheckpointError: unreadable files or metadata, leaves that differ
      from the recorded digest, or NaN/Inf values.
    IncompatibleCheckpointError: an intact checkpoint of another state.
    ValueError: the config recorded in the checkpoint may not resume as `config`.
  """
  with _quiet_failed_reads():
    return _restore_verified(manager, config, step, image_shape, sharding)


def _restore_verified(manager, config, step, image_shape, sharding):
  custom = custom_metadata(manager, step)
  if CONFIG_KEY in custom:
    _resumable_changes(custom[CONFIG_KEY], config, os.path.dirname(str(manager.directory)))
  if image_shape is None:
    image_shape = custom.get(IMAGE_SHAPE_KEY)
    if image_shape is None:
      raise ValueError(f"Checkpoint {step} in {manager.directory} does not record the image "
                       "shape; pass image_shape= to restore it.")
  abstract = abstract_state(config, image_shape)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = _abstract_checkpoint(abstract, sharding)
  _check_leaves(manager, step, target)
  try:
    tree = manager.restore(step, args=ocp.args.StandardRestore(target))
  except Exception as e:  # pylint: disable=broad-except  # orbax / tensorstore read errors.
    raise _damaged(manager, step, f"its files do not restore ({_first_line(e)})") from None
  host_tree = jax.device_get(tree)
  if state_digest(host_tree) != custom[DIGEST_KEY]:
    raise _damaged(manager, step, "its arrays differ from the digest recorded when it was saved")
  if BOUND_DIGEST_KEY in custom and bound_digest(custom[DIGEST_KEY], step,
                                                 custom) != custom[BOUND_DIGEST_KEY]:
    raise _damaged(manager, step, "its step number or recorded config differ from those it was "
                   "saved with (copied in from elsewhere, or edited)")
  bad = non_finite_leaves(host_tree)
  if bad:
    raise _damaged(manager, step, f"it holds NaN or Inf in {', '.join(bad[:5])}")
  return checkpoint_to_state(abstract, tree), custom


def _in_every_process(flag: bool) -> bool:
  """Whether `flag` holds on every process (all of them compute this together)."""
  if jax.process_count() == 1:
    return flag
  return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


def _sync_processes(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def move_aside(directory: str, step: int) -> str:
  """Renames checkpoint folder `step` to `<step>.corrupt` (or .corrupt-2, ...); returns the new path."""
  source = os.path.join(str(directory), str(step))
  target, number = source + CORRUPT_SUFFIX, 1
  while os.path.exists(target):
    number += 1
    target = f"{source}{CORRUPT_SUFFIX}-{number}"
  os.rename(source, target)
  return target


def restore_newest_good(manager: ocp.CheckpointManager, config: ml_collections.ConfigDict,
                        image_shape: Sequence[int], sharding: jax.sharding.Sharding,
                        is_chief: bool = True) -> tuple[Optional[int], Optional[TrainState], dict]:
  """The newest checkpoint that verifies; each newer damaged one is moved aside.

  Every damaged checkpoint is renamed to `<step>.corrupt` (by the chief) with
  a one-line warning, and the next older one is tried.

  Returns:
    (step, state, custom metadata), or (None, None, {}) when no checkpoint is left.
  """
  for step in sorted(manager.all_steps(), reverse=True):
    reason = None
    try:
      state, custom = restore_verified(manager, config, step, image_shape, sharding)
    except DamagedCheckpointError as e:
      reason = str(e)
    if _in_every_process(reason is None):
      return step, state, custom
    if is_chief:
      moved = move_aside(manager.directory, step)
      logging.warning("%s; moved it to %s and trying an older one.",
                      reason or f"Checkpoint {step} is damaged on another process", moved)
    _sync_processes(f"wae_jax_moved_aside_{step}")
    with _quiet_failed_reads():
      manager.reload()
  return None, None, {}


def _unreadable_step_folders(directory: str) -> dict[int, str]:
  """step -> reason, for step entries that would stop a CheckpointManager from opening."""
  found = {}
  for name in os.listdir(directory) if os.path.isdir(directory) else ():
    path = os.path.join(directory, name)
    if not name.isdigit():
      continue
    if not os.path.isdir(path):
      found[int(name)] = "it is a file, not a folder"
      continue
    metrics = os.path.join(path, "metrics", "metrics")
    try:
      if os.path.exists(metrics):
        with open(metrics, encoding="utf-8") as f:
          json.load(f)
    except (OSError, ValueError) as e:
      found[int(name)] = f"its metrics file cannot be read ({_first_line(e)})"
  return found


# ----------------------------------------------------------------------------
# The manager.
# ----------------------------------------------------------------------------


def make_manager(workdir: str, config: ml_collections.ConfigDict,
                 read_only: bool = False, is_chief: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager on <workdir>/checkpoints.

  Keeps the last `config.keep_checkpoints` steps plus the one with the lowest
  `config.best_metric` among the steps saved with metrics. The trainer decides
  when to save (every `checkpoint_every_steps`, at evaluations and at the end)
  and calls `save(..., force=True)`.

  A step folder the manager could not open (a file, unreadable metrics) is
  moved aside with a warning, or, read-only, raises DamagedCheckpointError.
  """
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  for step, reason in sorted(_unreadable_step_folders(directory).items()):
    message = f"Checkpoint {step} in {directory} is damaged: {reason}"
    if read_only:
      raise DamagedCheckpointError(message)
    if is_chief:
      logging.warning("%s; moved it to %s.", message, move_aside(directory, step))
  if not read_only:
    _sync_processes("wae_jax_checkpoints_listed")
  best_metric = config.best_metric

  def metric_value(metrics: dict) -> float:
    return float(metrics[best_metric])

  keep = max(int(config.keep_checkpoints), 1)
  preservation = ocp.checkpoint_managers.AnyPreservationPolicy([
      ocp.checkpoint_managers.LatestN(n=keep),
      # reverse=True sorts descending, so the kept tail holds the lowest value.
      ocp.checkpoint_managers.BestN(
          get_metric_fn=metric_value, reverse=True, n=1,
          keep_checkpoints_without_metrics=False),
  ])
  options = ocp.CheckpointManagerOptions(
      best_fn=metric_value,  # Makes the manager store metrics and answer best_step().
      best_mode="min",
      preservation_policy=preservation,
      cleanup_tmp_directories=not read_only,
      read_only=read_only,
      create=not read_only,
      enable_async_checkpointing=True,
  )
  with _quiet_failed_reads():  # It reads every step's metadata.
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def all_steps(workdir: str) -> list[int]:
  """The complete checkpoint steps in <workdir>/checkpoints, ascending."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    return []
  manager = ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def restore_state(workdir: str, config: Optional[ml_collections.ConfigDict] = None,
                  step: Optional[int] = None, image_shape: Optional[Sequence[int]] = None,
                  sharding: Optional[jax.sharding.Sharding] = None) -> TrainState:
  """The verified TrainState of checkpoint `step` (the latest complete one when None).

  Args:
    workdir: a run's workdir.
    config: the run's config; read from <workdir>/config.json when None.
    step: which checkpoint; the latest complete one when None.
    image_shape: (H, W, C) of the data; read from the checkpoint when None.
    sharding: where the arrays go (default: the first local device); pass a
      replicated NamedSharding to restore onto a mesh.

  Raises:
    DamagedCheckpointError: the checkpoint is damaged (see restore_verified).
  """
  if config is None:
    config = load_config(workdir)
  manager = make_manager(workdir, config, read_only=True)
  try:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(
          f"No complete checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}; "
          "train first with python -m wae_jax.main.")
    if step is None:
      step = max(steps)
    elif step not in steps:
      raise ValueError(f"No checkpoint for step {step} in {workdir!r}; it has steps {sorted(steps)}.")
    try:
      return restore_verified(manager, config, step, image_shape, sharding)[0]
    except DamagedCheckpointError as e:
      raise DamagedCheckpointError(
          f"{e}; choose another of its checkpoints {sorted(steps)}.") from None
  finally:
    manager.close()
