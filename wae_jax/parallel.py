"""Data parallelism over every device of every host, with one code path.

A 1-D mesh with axis 'data' spans all devices. The state is replicated, the
global batch is sharded along its leading axis, and a method's
`train_step(state, batch, axis_name='data')` runs as the per-device program of
`jax.shard_map` under `jax.jit` (what `jax.pmap` is built from now), with the
state donated. Inside, the methods all-gather codes and keys so estimators and
the MoCA queue see the global batch, sync batch norm and average gradients with
the collectives below, so one step on N devices equals one step on one device
with the same global batch.

Data parallelism. A train step called with `axis_name` set is the per-device
program of a `jax.shard_map` (`make_parallel_step`), run with the default
`check_vma=True`. Each device sees B/N examples; estimators that compare
distributions see the global batch through `gather`, prior samples are drawn
for the global batch from the same key on every device, and per-example noise
is drawn for the global batch and sliced by `lax.axis_index`, so the step on N
devices computes the same numbers as the step on one device with the global
batch.

Gradients. The params enter the shard_map replicated, i.e. device-invariant.
Differentiating a device-varying loss with respect to an invariant input would
make JAX transpose the implicit broadcast into a psum (the gradient arrives
already summed over devices). We make that explicit and classic instead:
`per_device(params, axis_name)` casts the params to device-varying before
`jax.grad`, so each device gets the gradient of its own loss (the mean over its
local examples plus the global-batch estimator, whose gradient reaches each
device's codes through the transpose of the all-gather, summed over devices),
and `average_grads` (`lax.pmean`) then gives exactly the single-device
gradient of the global batch.

Multi-host: call `initialize_distributed()` first; each process feeds its own
host-local slice of the global batch to `shard_batch`, and only `is_chief()`
writes logs and images.
"""

import functools
import os
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
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


def batch_axis(steps_per_call: int) -> int:
  """The axis a call's batch is sharded along: 0, or 1 after the steps axis of
  a multi-step call's stacked batches (`make_parallel_step`)."""
  return 0 if steps_per_call == 1 else 1


def shard_batch(host_local_batch: Dict[str, np.ndarray],
                mesh: Mesh, batch_axis: int = 0) -> Dict[str, jax.Array]:
  """Host-local numpy arrays -> global jax.Arrays sharded over the mesh's
  'data' axis along `batch_axis` (1 for a stack of steps' batches (k, b, ...)),
  whose size grows from b to b * processes."""
  sharding = NamedSharding(mesh, P(*(None,) * batch_axis, DATA_AXIS))
  local_devices = len(mesh.local_devices)
  out = {}
  for name, value in host_local_batch.items():
    value = np.asarray(value)
    if value.ndim <= batch_axis or value.shape[batch_axis] % local_devices != 0:
      raise ValueError(
          f"The host-local batch {name!r} of shape {value.shape} must have a "
          f"batch size (axis {batch_axis}) that is a multiple of this host's "
          f"{local_devices} devices; change config.batch_size.")
    out[name] = jax.make_array_from_process_local_data(sharding, value)
  return out


def make_parallel_step(train_step: Callable, mesh: Mesh,
                       donate_state: bool = True, steps_per_call: int = 1,
                       with_hparams: bool = False, population: bool = False,
                       gather_batch: Optional[Callable[[Any, Any], Any]] = None
                       ) -> Callable[..., Tuple[Any, Dict]]:
  """Jitted fn(state, sharded_batch) -> (state, metrics) over the mesh.

  `train_step(state, batch, axis_name)` runs per device under shard_map with
  the default check_vma=True, which `average_grads` relies on. The state
  and the metrics are replicated; the state is donated.

  With steps_per_call=k > 1 one call runs k steps in a `lax.scan`: the batch
  is k steps' batches stacked, (k, B, ...) sharded along axis 1
  (`shard_batch(..., batch_axis=1)`), and each metric comes back as (k,).
  One dispatch then serves k steps: for the default MLP on a CPU the
  dispatch and host work per call were a quarter of a step's time.

  with_hparams: fn(state, hparams, batch), train_step(state, hparams, batch,
    axis_name); `hparams` (wae_jax/hparams.py's values) is replicated and
    not donated.
  population: the state, the hparams and the batch carry a leading member
    axis P (after the steps axis of a multi-step call: batches (k, P, B, ...)),
    and train_step is vmapped over it inside each device's program, so each
    member runs data parallel over the whole mesh, as it would alone
    (wae_jax/population.py says why the members are not split over devices;
    a population of one runs the solo program, unbatched). Metrics come back
    (P,) or (k, P).
  gather_batch(resident, inputs) -> batch: the function takes one more
    argument, fn(..., inputs, resident): `inputs` are sharded like a batch
    (e.g. the examples' indices) and `resident` is replicated (e.g. the
    training split, data/on_device.py); each device builds each step's batch
    from them.

  On a one-device mesh the step runs with axis_name=None, without shard_map.
  """
  if steps_per_call < 1:
    raise ValueError(f"steps_per_call must be >= 1, got {steps_per_call}.")
  axis = batch_axis(steps_per_call) + int(population)
  # One device: the step without an axis (no shard_map, no collectives), the
  # same numbers (every collective is the identity then) and 5-15% faster for
  # the default MLP on a CPU.
  axis_name = DATA_AXIS if mesh.devices.size > 1 else None

  def one_step(state, hparams, batch, resident, vmapped):
    if gather_batch is not None:
      batch = gather_batch(resident, batch)
    args = (state, hparams, batch) if with_hparams else (state, batch)
    if vmapped:
      return jax.vmap(lambda *a: train_step(*a, axis_name=axis_name))(*args)
    return train_step(*args, axis_name=axis_name)

  def steps(state, hparams, batch, resident, vmapped):
    if steps_per_call == 1:
      return one_step(state, hparams, batch, resident, vmapped)
    return lax.scan(lambda s, b: one_step(s, hparams, b, resident, vmapped), state, batch)

  def per_device(state, hparams, batch, resident):
    member_axis = batch_axis(steps_per_call)  # of the batch and of the metrics
    if not population or jax.tree.leaves(batch)[0].shape[member_axis] > 1:
      return steps(state, hparams, batch, resident, population)
    # A population of one: its step on the arrays without the member axis, the
    # solo run's program. vmap's batched dots, even of a batch of one, run
    # ~20% slower than plain ones on XLA:CPU.
    squeeze = lambda tree, axis: jax.tree.map(lambda x: jnp.squeeze(x, axis), tree)
    state, metrics = steps(squeeze(state, 0), squeeze(hparams, 0),
                           squeeze(batch, member_axis), resident, False)
    return (jax.tree.map(lambda x: jnp.expand_dims(x, 0), state),
            jax.tree.map(lambda x: jnp.expand_dims(x, member_axis), metrics))

  sharded_step = per_device if axis_name is None else jax.shard_map(
      per_device, mesh=mesh, in_specs=(P(), P(), P(*(None,) * axis, DATA_AXIS), P()),
      out_specs=(P(), P()))

  def step(state, hparams, batch, resident=None):
    for value in jax.tree.leaves(batch):
      if steps_per_call > 1 and value.shape[0] != steps_per_call:
        raise ValueError(f"A call of {steps_per_call} steps needs their batches stacked "
                         f"on a leading axis of that size, got shape {value.shape}.")
      check_batch_size(value.shape[axis], mesh)
    return sharded_step(state, hparams, batch, resident)

  donate = (0,) if donate_state else ()
  if with_hparams:
    return jax.jit(step, donate_argnums=donate)
  return jax.jit(lambda state, batch, resident=None: step(state, {}, batch, resident),
                 donate_argnums=donate)


# ----------------------------------------------------------------------------
# Collectives of the per-device step (identity when axis_name is None).

def gather(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """All-gathers a per-device (b, ...) array into the global (N*b, ...) one.

  Rows are in device order, i.e. the order of the global batch. Gradients flow
  back to each device's own rows.
  """
  if axis_name is None:
    return x
  return lax.all_gather(x, axis_name, tiled=True)


def gather_for_shared_loss(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """`gather`, for the input of a loss term every device computes alike.

  The global-batch estimators (MMD, sliced Wasserstein, the moment loss ...)
  see the gathered codes and prior samples drawn from the same key on every
  device, so they compute the same value and the same cotangent for the
  gathered codes everywhere. `gather`'s transpose sums those N equal
  cotangents over devices (a reduce-scatter, a second cross-device collective
  in every step); here each device takes its own rows and multiplies them by N
  instead, the same sum without a collective (exact for N a power of 2).
  Use it only where that holds: a cotangent that differs between devices
  would be lost.
  """
  if axis_name is None:
    return x
  return _gather_shared(x, axis_name)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _gather_shared(x: jax.Array, axis_name: str) -> jax.Array:
  return lax.all_gather(x, axis_name, tiled=True)


def _gather_shared_forward(x, axis_name):
  return _gather_shared(x, axis_name), None


def _gather_shared_backward(axis_name, _, cotangent):
  rows = cotangent.shape[0] // lax.axis_size(axis_name)
  own = lax.dynamic_slice_in_dim(cotangent, lax.axis_index(axis_name) * rows, rows, axis=0)
  return (own * lax.axis_size(axis_name),)


_gather_shared.defvjp(_gather_shared_forward, _gather_shared_backward)


def gather_invariant(x: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """Like `gather`, but typed device-invariant (for replicated state such as
  the MoCA queue); use on values that need no gradient."""
  if axis_name is None:
    return x
  return lax.all_gather(x, axis_name, tiled=True, to="invarying")


def per_device(params: Any, axis_name: Optional[str]) -> Any:
  """Casts replicated params to device-varying before differentiating them
  (see the module doc); identity without an axis."""
  if axis_name is None:
    return params
  return lax.pcast(params, axis_name, to="varying")


def _varying_axes(x: jax.Array) -> frozenset:
  """The mesh axes along which `x` may differ between devices (its type under
  shard_map's check_vma); the attribute's name moved between JAX versions."""
  aval = jax.typeof(x)
  axis_type = getattr(aval, "manual_axis_type", None)
  return axis_type.varying if axis_type is not None else frozenset(getattr(aval, "vma", ()))


def fused_pmean(tree: Any, axis_name: str) -> Any:
  """`lax.pmean` of every leaf of `tree`, as one all-reduce per dtype.

  The device-varying leaves are raveled into one vector per dtype, averaged
  in one collective and cut back (the same sums, element by element, so the
  same numbers as a pmean per leaf). XLA:CPU combines a step's all-reduces
  into one op anyway, but across processes (gloo) an op's operands cost a
  round trip each: the default job on 2 processes x 4 devices ran at 3.3
  steps/s with 17 operands and at 37 with these 2 (benchmarks/README.md).
  Device-invariant leaves (e.g. the learning rate) are their own mean and
  pass through without a collective.
  """
  leaves, treedef = jax.tree.flatten(tree)
  out = list(leaves)  # invariant leaves as they are
  varying: Dict[Any, list] = {}  # dtype -> indices of device-varying leaves
  for i, leaf in enumerate(leaves):
    if axis_name in _varying_axes(leaf):
      varying.setdefault(jnp.result_type(leaf), []).append(i)
  for index in varying.values():
    flat = lax.pmean(jnp.concatenate([jnp.ravel(leaves[i]) for i in index]), axis_name)
    ends = np.cumsum([leaves[i].size for i in index])
    starts = np.concatenate([[0], ends[:-1]])
    for i, start, end in zip(index, starts, ends):
      out[i] = flat[start:end].reshape(leaves[i].shape)
  return jax.tree.unflatten(treedef, out)


def average_grads(grads: Any, axis_name: Optional[str]) -> Any:
  """Per-device gradients of `per_device` params -> the global-batch gradient
  (one all-reduce, `fused_pmean`)."""
  if axis_name is None:
    return grads
  return fused_pmean(grads, axis_name)


def mean_metrics(metrics: dict, axis_name: Optional[str]) -> dict:
  """Metrics as float32 scalars, averaged over devices (replicated output)."""
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  if axis_name is None:
    return metrics
  return fused_pmean(metrics, axis_name)


def per_example_noise(key: jax.Array, local_shape: Tuple[int, ...],
                      axis_name: Optional[str],
                      sampler: Callable = jax.random.normal) -> jax.Array:
  """Noise for this device's examples, cut from the global batch's noise.

  sampler(key, shape) is drawn with shape (N*b, ...) from the same key on every
  device, and device i keeps rows [i*b, (i+1)*b), so each example gets the
  noise it would get in a single-device step on the global batch.
  """
  if axis_name is None:
    return sampler(key, local_shape)
  local_batch = local_shape[0]
  n = lax.axis_size(axis_name)
  noise = sampler(key, (n * local_batch,) + tuple(local_shape[1:]))
  start = lax.axis_index(axis_name) * local_batch
  return lax.dynamic_slice_in_dim(noise, start, local_batch, axis=0)
