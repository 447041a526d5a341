"""Data parallelism over every device of every host, with one code path.

A 1-D mesh with axis 'data' spans all devices. The state is replicated, the
global batch is sharded along its leading axis, and a method's
`train_step(state, batch, axis_name='data')` runs as the per-device program of
`jax.shard_map` under `jax.jit` (what `jax.pmap` is built from now), with the
state donated. Inside, the methods all-gather codes and keys so estimators and
the MoCA queue see the global batch, sync batch norm and average gradients (see
wae_jax/methods/common.py), so one step on N devices equals one step on one
device with the same global batch.

Multi-host: call `initialize_distributed()` first; each process feeds its own
host-local slice of the global batch to `shard_batch`, and only `is_chief()`
writes logs and images.
"""

import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax import cli

DATA_AXIS = "data"
DISTRIBUTED_ENV = "WAE_JAX_DISTRIBUTED"


def initialize_distributed(force: bool = False) -> bool:
  """Starts multi-host JAX when `force` or env WAE_JAX_DISTRIBUTED=1.

  Returns whether jax.distributed.initialize() was called (see
  wae_jax/multihost.py for the environment it reads, on Cloud TPU VMs and on
  one machine).
  """
  if force or os.environ.get(DISTRIBUTED_ENV, "") == "1":
    from wae_jax import multihost  # pylint: disable=g-import-not-at-top
    multihost.initialize()
    return True
  return False


def is_chief() -> bool:
  """True on process 0, the one that writes logs, metrics and images."""
  return jax.process_index() == 0


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh with axis 'data' over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("make_mesh needs at least one device.")
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_size(global_batch_size: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch splits evenly over the mesh."""
  num_devices = mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % num_devices != 0:
    raise cli.UserError(
        f"The global batch size {global_batch_size} must be a positive "
        f"multiple of the number of devices ({num_devices}); change "
        "config.batch_size or the devices used.")


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Puts every array leaf of `tree` on all devices of the mesh (replicated).

  Multi-host: every process must pass the same values (e.g. a state built
  from the same seed or restored from the same checkpoint).
  """
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(host_local_batch: Dict[str, np.ndarray],
                mesh: Mesh) -> Dict[str, jax.Array]:
  """Host-local numpy arrays (b, ...) -> global jax.Arrays (b * processes, ...)
  sharded along axis 0 over the mesh's 'data' axis."""
  sharding = NamedSharding(mesh, P(DATA_AXIS))
  local_devices = len(mesh.local_devices)
  out = {}
  for name, value in host_local_batch.items():
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] % local_devices != 0:
      raise ValueError(
          f"The host-local batch {name!r} of shape {value.shape} must have a "
          f"leading size that is a multiple of this host's {local_devices} "
          "devices; change config.batch_size.")
    out[name] = jax.make_array_from_process_local_data(sharding, value)
  return out


def make_parallel_step(train_step: Callable, mesh: Mesh,
                       donate_state: bool = True
                       ) -> Callable[[Any, Dict[str, jax.Array]], Tuple[Any, Dict]]:
  """Jitted fn(state, sharded_batch) -> (state, metrics) over the mesh.

  `train_step(state, batch, axis_name)` runs per device under shard_map with
  the default check_vma=True, which common.average_grads relies on. The state
  and the metrics are replicated; the state is donated.
  """

  def per_device(state, batch):
    return train_step(state, batch, axis_name=DATA_AXIS)

  sharded_step = jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)),
      out_specs=(P(), P()))

  def step(state, batch):
    for value in jax.tree.leaves(batch):
      check_batch_size(value.shape[0], mesh)
    return sharded_step(state, batch)

  return jax.jit(step, donate_argnums=(0,) if donate_state else ())
