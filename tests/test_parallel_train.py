"""The trainer's data-parallel path on the 8 fake CPU devices of conftest.py.

test_train.py runs `train_and_evaluate` end to end, killed and resumed, in
this same 8-device setup (its child process inherits XLA_FLAGS); here the
pieces it is built from are checked explicitly and cheaply: the trainer's
mesh spans every device, its state is replicated on each, its host batches
are split over them, and its steps equal the single-device steps on the same
global batches. A batch size that does not divide by the devices is refused
before any compute, from Python and from the CLI.
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from wae_jax import methods
from wae_jax import parallel
from wae_jax import train

import methods_testlib as lib
from test_train import tiny_config

NUM_DEVICES = 8
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_on_every_device(tree, mesh):
  for leaf in jax.tree.leaves(tree):
    assert leaf.sharding.is_fully_replicated
    assert leaf.sharding.device_set == set(mesh.devices.flat)


@pytest.mark.slow
def test_trainer_steps_span_every_device_and_match_one_device():
  assert jax.device_count() == NUM_DEVICES
  mesh = parallel.make_mesh()  # what train_and_evaluate uses
  assert mesh.devices.size == NUM_DEVICES
  config, source = train.prepare_config(tiny_config("wae_mmd"), mesh.devices.size)
  method = methods.get(config.method)
  state = train.initial_state(method, config, source)
  host_batches = [next(iter(source.train_batches(start_step=s))) for s in range(2)]
  assert host_batches[0]["image"].shape[0] == config.batch_size == 2 * NUM_DEVICES

  # The reference first: the trainer's step donates the replicated state.
  single_step = lib.jit_step(method)
  single_state, single_metrics = state, []
  for batch in host_batches:
    single_state, metrics = single_step(single_state, batch)
    single_metrics.append(metrics)
  single_state = lib.copy_tree(single_state)

  step, put_batch, put_state = train.make_train_step(method, mesh)
  multi_state = put_state(state)
  _assert_on_every_device(multi_state, mesh)
  sharded = put_batch(host_batches[0])
  shards = sharded["image"].addressable_shards
  assert len(shards) == NUM_DEVICES
  assert {shard.data.shape[0] for shard in shards} == {2}
  # The trainer's step as the loop calls it (it binds the run's hyper-parameter
  # values, and the training split when that lives on the device).
  for batch, expected_metrics in zip(host_batches, single_metrics):
    multi_state, metrics = step(multi_state, put_batch(batch))
    _assert_on_every_device((multi_state, metrics), mesh)
    for name, value in expected_metrics.items():
      np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-6,
                                 err_msg=name)
  assert int(multi_state.step) == 2
  for field in ("params", "opt_state"):
    for x, y in zip(jax.tree.leaves(getattr(single_state, field)),
                    jax.tree.leaves(getattr(multi_state, field))):
      # As in test_parallel: sums split over devices round differently.
      scale = float(np.max(np.abs(x))) if x.size else 0.0
      np.testing.assert_allclose(np.asarray(y), x, rtol=1e-5,
                                 atol=1e-5 * scale + 1e-7, err_msg=field)


def test_indivisible_batch_is_refused_before_any_compute(tmp_path):
  config = tiny_config("wae_mmd").copy_and_resolve_references()
  config.batch_size = 12
  workdir = tmp_path / "python"
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()

  # From the CLI: the same sentence ends stderr, nothing is written.
  workdir = tmp_path / "cli"
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.main", "--config=configs/default.py",
       f"--workdir={workdir}", "--config.batch_size=12"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines() == [
      "error: config.batch_size=12 is not divisible by the 8 devices; use a multiple of 8."]
  assert not workdir.exists()
