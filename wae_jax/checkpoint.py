"""Checkpoints of a run: its config (config.json) and its TrainState (orbax).

Layout under a workdir:

  config.json          the full config of the run (written once at start)
  checkpoints/<step>/  one orbax checkpoint per saved step

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
"""

import json
import os
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from wae_jax import cli
from wae_jax.state import TrainState

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"

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
)


# ----------------------------------------------------------------------------
# config.json
# ----------------------------------------------------------------------------


def write_json_atomic(path: str, obj: Any) -> None:
  """Writes JSON to `path` through a temporary file and `os.replace`."""
  tmp_path = f"{path}.tmp-{os.getpid()}"
  with open(tmp_path, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp_path, path)


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


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """Reads <workdir>/config.json back into a ConfigDict (lists as tuples)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{path} does not exist: {workdir!r} is not a wae_jax workdir "
        "(train into it first with python -m wae_jax.main).")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(_lists_to_tuples(json.load(f)))


def _flatten(tree: dict, prefix: str = "") -> dict:
  flat = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, dict):
      flat.update(_flatten(value, name + "."))
    else:
      flat[name] = value
  return flat


def config_differences(saved: dict, current: dict) -> list[str]:
  """Dotted names of fields that differ between two config dicts."""
  saved_flat, current_flat = _flatten(saved), _flatten(current)
  names = sorted(set(saved_flat) | set(current_flat))
  return [n for n in names if saved_flat.get(n, "<absent>") != current_flat.get(n, "<absent>")]


def check_resumable(workdir: str, config: ml_collections.ConfigDict) -> list[str]:
  """Raises ValueError if `config` cannot resume the run saved in `workdir`.

  Returns:
    The changed fields that are allowed (in RESUMABLE_CHANGES), for logging.
  """
  saved = config_to_dict(load_config(workdir))
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
# The manager.
# ----------------------------------------------------------------------------


def make_manager(workdir: str, config: ml_collections.ConfigDict,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager on <workdir>/checkpoints.

  Keeps the last `config.keep_checkpoints` steps plus the one with the lowest
  `config.best_metric` among the steps saved with metrics. The trainer decides
  when to save (every `checkpoint_every_steps`, at evaluations and at the end)
  and calls `save(..., force=True)`.
  """
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
  directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def save(manager: ocp.CheckpointManager, state: TrainState, step: int,
         metrics: Optional[dict] = None, image_shape: Optional[Sequence[int]] = None) -> None:
  """Saves `state` as checkpoint `step` (asynchronously; see wait_until_finished)."""
  custom = {"image_shape": list(image_shape)} if image_shape is not None else None
  manager.save(
      step, args=ocp.args.StandardSave(state_to_checkpoint(state)),
      metrics={k: float(v) for k, v in metrics.items()} if metrics else None,
      force=True, custom_metadata=custom)


def _image_shape_of(manager: ocp.CheckpointManager, step: int) -> tuple:
  custom = manager.metadata(step).custom_metadata or {}
  if "image_shape" not in custom:
    raise ValueError(
        f"Checkpoint {step} in {manager.directory} does not record the image "
        "shape; pass image_shape= to restore_state.")
  return tuple(custom["image_shape"])


def restore_from_manager(manager: ocp.CheckpointManager, config: ml_collections.ConfigDict,
                         step: int, image_shape: Optional[Sequence[int]] = None,
                         sharding: Optional[jax.sharding.Sharding] = None) -> TrainState:
  """Restores checkpoint `step` into the state `method.init` builds for `config`."""
  if image_shape is None:
    image_shape = _image_shape_of(manager, step)
  abstract = abstract_state(config, image_shape)
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = _abstract_checkpoint(abstract, sharding)
  tree = manager.restore(step, args=ocp.args.StandardRestore(target))
  return checkpoint_to_state(abstract, tree)


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
  """The TrainState of checkpoint `step` (the latest complete one when None).

  Args:
    workdir: a run's workdir.
    config: the run's config; read from <workdir>/config.json when None.
    step: which checkpoint; the latest complete one when None.
    image_shape: (H, W, C) of the data; read from the checkpoint when None.
    sharding: where the arrays go (default: the first local device); pass a
      replicated NamedSharding to restore onto a mesh.
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
    return restore_from_manager(manager, config, step, image_shape, sharding)
  finally:
    manager.close()
