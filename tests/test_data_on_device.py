"""The training split on the devices (wae_jax/data/on_device.py).

The batches gathered inside the compiled step must be the host pipeline's,
bit for bit, on 1 and on the 8 fake devices of conftest.py, for uint8 images
(the digits) and float32 vectors (gmm2d); a run must end with the same state
either way, and a run killed while reading on the host must resume on the
devices to the state of an uninterrupted run.
"""

import os

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from wae_jax import checkpoint
from wae_jax import data
from wae_jax import metrics_io
from wae_jax import parallel
from wae_jax import train
from wae_jax.data import on_device

import test_train
from test_data_offline import write_idx
from test_train import tiny_config
from wae_jax.data import offline


@pytest.fixture(scope="module")
def mnist_idx_dir(tmp_path_factory):
  """Random 28x28 uint8 MNIST-format files: 200 train and 20 test images."""
  folder = tmp_path_factory.mktemp("mnist_idx")
  rng = np.random.default_rng(7)
  for split, size in (("train", 200), ("test", 20)):
    write_idx(str(folder / offline.MNIST_IDX_FILES[f"{split}_images"]),
              rng.integers(0, 256, (size, 28, 28), dtype=np.uint8), 0x08)
    write_idx(str(folder / offline.MNIST_IDX_FILES[f"{split}_labels"]),
              rng.integers(0, 10, size, dtype=np.uint8), 0x08)
  return str(folder)


def _source(dataset: str, data_dir: str = "", batch_size: int = 16, seed: int = 3):
  config = tiny_config()
  with config.unlocked():
    config.dataset = dataset
    config.data_dir = data_dir
    config.image_size = 28 if dataset == "mnist_idx" else 8
    config.seed = seed
    config.batch_size = batch_size
    config.synthetic_num_points = 200
  return data.build(config)


def _gather_on(mesh, device_data, steps_per_call):
  """The per-device gather under the trainer's sharding, returned sharded."""
  axis = parallel.batch_axis(steps_per_call)
  spec = P(*(None,) * axis, parallel.DATA_AXIS)

  def per_device(inputs, resident):
    if steps_per_call == 1:
      return on_device.gather(resident, inputs)
    return jax.lax.map(lambda one: on_device.gather(resident, one), inputs)

  gathered = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(spec, P()), out_specs=spec))
  return lambda inputs: gathered(parallel.shard_batch(inputs, mesh, axis), device_data.arrays)


@pytest.mark.parametrize("dataset", ["mnist_idx", "digits", "gmm2d"])  # uint8, float32 images, vectors
@pytest.mark.parametrize("num_devices", [1, 8])
@pytest.mark.parametrize("steps_per_call", [1, 3])
def test_gathered_batches_are_the_host_batches(dataset, num_devices, steps_per_call,
                                               mnist_idx_dir):
  source = _source(dataset, mnist_idx_dir if dataset == "mnist_idx" else "")
  assert source.train_split()[0].dtype == (np.uint8 if dataset == "mnist_idx" else np.float32)
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  device_data = on_device.place(source, mesh)
  for leaf in jax.tree.leaves(device_data.arrays):
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == num_devices
  gather = _gather_on(mesh, device_data, steps_per_call)
  # Across the end of the first epoch, so the next epoch's permutation is read too.
  start = 2 * source.steps_per_epoch - 2
  hosts = source.train_batches(start, steps_per_call)
  indices = source.train_index_batches(start, steps_per_call)
  for _ in range(2):
    expected, got = next(hosts), gather(next(indices))
    assert set(got) == set(expected) == ({"image", "label"})
    for name in expected:
      got_value = np.asarray(got[name])
      assert got_value.dtype == expected[name].dtype
      np.testing.assert_array_equal(got_value, expected[name], err_msg=name)


def test_pixels_are_their_grey_level_over_255():
  """The shared uint8 table against float64 division (the conversion's own reference)."""
  levels = np.arange(256)
  table = data.source.UINT8_TO_FLOAT32
  np.testing.assert_allclose(table, levels / 255.0, rtol=np.finfo(np.float32).eps / 2, atol=0)
  assert table[0] == 0.0 and table[255] == 1.0


def test_auto_places_the_split_when_it_fits_the_share():
  source = _source("digits")
  mesh = parallel.make_mesh()
  images, labels = source.train_split()
  assert on_device.split_bytes(source) == 4 * images.size + 4 * len(labels)  # float32, int32
  budget = on_device.device_memory_bytes(mesh.devices.flat[0])
  assert budget > 0
  config = tiny_config()
  with config.unlocked():
    for choice, share, expected in (("auto", 0.25, True), ("auto", 1e-12, False),
                                    ("true", 1e-12, True), ("false", 1.0, False)):
      config.data_on_device, config.data_on_device_share = choice, share
      assert on_device.wanted(config, source, mesh) is expected, (choice, share)


def _run(config, workdir):
  train.train_and_evaluate(config, workdir)
  losses = [r["loss"] for r in metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))]
  return jax.tree.leaves(checkpoint.state_to_checkpoint(checkpoint.restore_state(workdir))), losses


@pytest.mark.slow
@pytest.mark.parametrize("num_devices", [1, 8])
def test_run_on_device_equals_run_on_host(num_devices, tmp_path, monkeypatch):
  """Same final state and logged losses, bitwise, with 2 steps per call."""
  make_mesh = parallel.make_mesh
  monkeypatch.setattr(parallel, "make_mesh", lambda: make_mesh(jax.devices()[:num_devices]))
  placed = []
  monkeypatch.setattr(on_device, "place", lambda *a, p=on_device.place: placed.append(1) or p(*a))
  runs = {}
  for choice in ("false", "true"):
    config = tiny_config("wae_mmd", num_train_steps=6)
    with config.unlocked():
      config.data_on_device = choice
    runs[choice] = _run(config, str(tmp_path / choice))
  assert placed == [1]  # Only the "true" run placed the split.
  (host_state, host_losses), (device_state, device_losses) = runs["false"], runs["true"]
  assert len(host_losses) == 3 and device_losses == host_losses
  for host, device in zip(host_state, device_state):
    np.testing.assert_array_equal(np.asarray(device), np.asarray(host))


def host_moca_config():
  """test_train.moca_config, read on the host (the child run killed below)."""
  config = test_train.moca_config()
  config.data_on_device = "false"
  return config


@pytest.mark.slow
def test_run_killed_on_host_resumes_on_device_to_the_same_state(tmp_path):
  """SIGKILL a host-fed run after its first checkpoint, resume it with the
  split on the devices: the state of an uninterrupted on-device run, bitwise."""
  config = test_train.moca_config()
  config.data_on_device = "true"
  reference_state, reference_losses = _run(config, str(tmp_path / "uninterrupted"))
  workdir = str(tmp_path / "killed")
  test_train.kill_after_first_checkpoint(workdir, "test_data_on_device", "host_moca_config")
  killed_at = checkpoint.all_steps(workdir)
  assert killed_at and max(killed_at) < test_train.MOCA_STEPS
  resumed_state, resumed_losses = _run(config, workdir)
  assert resumed_losses == reference_losses
  for expected, got in zip(reference_state, resumed_state):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
