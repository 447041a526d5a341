"""Training data that stays on the devices: placed once, gathered inside the step.

A small training split (MNIST, Fashion-MNIST, CIFAR-10, the digits, gmm2d) fits
in device memory many times over, yet the host pipeline gathers every batch
in numpy and copies it to the devices each step. With
`config.data_on_device` the trainer instead places the split on every device
once (`place`) and sends only each step's indices (`ArraySource.
train_index_batches`: the same epoch permutations and process slices as
`train_batches`); the compiled step gathers its batch from them (`gather`),
so a run sees the same batches, bit for bit, either way.

The split is replicated, not sharded: an epoch's permutation sends any
example to any device, so a sharded split would need a collective per step to
fetch rows held elsewhere; a replicated one needs none. Each device then holds
the whole split, which is what `fits` budgets.

  config.data_on_device        auto | true | false
  config.data_on_device_share  auto places the split when its bytes are at
                               most this share of one device's memory
"""

import dataclasses
import os
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from wae_jax.data.source import UINT8_TO_FLOAT32, ArraySource

CHOICES = ("auto", "true", "false")
DEFAULT_SHARE = 0.25


@dataclasses.dataclass(frozen=True)
class DeviceData:
  """The training split on every device of a mesh.

  arrays: {'image': (N, H, W, C) uint8 or float32, 'label': (N,) int32 (labelled
  data only), 'to_float32': (256,) float32, uint8 images only}, each
  replicated over the mesh: the `resident` argument of
  `parallel.make_parallel_step(..., gather_batch=gather)`.
  """
  arrays: dict
  nbytes: int


def split_bytes(source: ArraySource) -> int:
  """Bytes one device holds for the training split (images and labels as placed)."""
  images, labels = source.train_split()
  size = int(np.prod(images.shape)) * np.dtype(images.dtype).itemsize
  return size + (4 * len(labels) if labels is not None else 0)


def device_memory_bytes(device: jax.Device) -> int:
  """The memory one device may use: its allocator's limit on a GPU or TPU; on
  a CPU the host's memory shared by its local devices."""
  stats = device.memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return host // max(1, len(jax.local_devices(backend=device.platform)))


def fits(source: ArraySource, mesh: Mesh, share: float) -> bool:
  """Whether the split takes at most `share` of the smallest local device's memory."""
  budget = min(device_memory_bytes(d) for d in mesh.local_devices)
  return split_bytes(source) <= share * budget


def wanted(config: ml_collections.ConfigDict, source: ArraySource, mesh: Mesh) -> bool:
  """config.data_on_device: 'true', 'false', or 'auto' = when the split `fits`
  in config.data_on_device_share of a device."""
  choice = config.get("data_on_device", "false")
  if choice == "auto":
    return fits(source, mesh, float(config.get("data_on_device_share", DEFAULT_SHARE)))
  return choice == "true"


def _replicated(mesh: Mesh, value: np.ndarray) -> jax.Array:
  """A host array on every device of the mesh; each process fills its own devices."""
  return jax.make_array_from_callback(value.shape, NamedSharding(mesh, P()),
                                      lambda index: value[index])


def place(source: ArraySource, mesh: Mesh) -> DeviceData:
  """Copies the training split to every device of the mesh (once per run).

  Every process passes the same split (each loads the whole dataset), as
  `parallel.replicate` requires.
  """
  images, labels = source.train_split()
  images = np.asarray(images)  # reads a memory-mapped cache once
  arrays = {"image": _replicated(mesh, images)}
  if images.dtype == np.uint8:
    arrays["to_float32"] = _replicated(mesh, UINT8_TO_FLOAT32)
  elif images.dtype != np.float32:
    raise ValueError(f"{source.name}: images of dtype {images.dtype} cannot be placed on the "
                     "devices; the data sources hold uint8 or float32.")
  if labels is not None:
    arrays["label"] = _replicated(mesh, np.asarray(labels, np.int32))
  return DeviceData(arrays=arrays, nbytes=split_bytes(source))


def place_if_wanted(config: ml_collections.ConfigDict, source: ArraySource,
                    mesh: Mesh) -> Optional[DeviceData]:
  """`place` when `wanted`, else None."""
  return place(source, mesh) if wanted(config, source, mesh) else None


def gather(resident: dict, inputs: dict) -> dict:
  """One step's batch from the placed split (inside the compiled step).

  Args:
    resident: DeviceData.arrays.
    inputs: {'index': int32 (b,)}, this device's rows of the step.

  Returns:
    {'image': float32 (b, H, W, C) in [0, 1], 'label': int32 (b,)}: what
    ArraySource.train_batches yields for the same indices, bit for bit
    (uint8 pixels go through the same table).
  """
  index = inputs["index"]
  images = jnp.take(resident["image"], index, axis=0, mode="clip")
  if "to_float32" in resident:
    images = jnp.take(resident["to_float32"], images.astype(jnp.int32), axis=0, mode="clip")
  batch = {"image": images}
  if "label" in resident:
    batch["label"] = jnp.take(resident["label"], index, axis=0, mode="clip")
  return batch


def train_inputs(source: ArraySource, device_data: Optional[DeviceData], start_step: int,
                 steps_per_item: int) -> Iterator[dict]:
  """What the trainer feeds its step from `start_step`: index batches when
  the split is on the devices, else the host batches."""
  if device_data is None:
    return source.train_batches(start_step, steps_per_item)
  return source.train_index_batches(start_step, steps_per_item)
