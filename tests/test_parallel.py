"""Data parallelism: a step on 8 (fake CPU) devices equals the single-device
step on the same global batch, for every method, with synced batch norm.

What is compared is what data parallelism can change, in a form whose
rounding is bounded:
- The optimizers are plain SGD here (`sgd_optimizers`). Sharding changes only
  how the gradient is summed (8 partial sums, then a mean over devices); the
  optimizer is the same elementwise code on both sides. Adam divides each
  entry by its own RMS, so an entry whose true gradient is 0 (a bias whose
  shift the next BatchNorm removes, a shift-invariant prior) moves by about
  the learning rate in the direction of its rounding noise: its new value is
  not a continuous function of the gradient, and no tolerance on it is both
  safe and meaningful. Under SGD a state moves by lr * gradient, so gradients
  that agree to float32 summation error give states that agree to it too.
- The test networks' BatchNorm computes the variance in two passes
  (mean((x - mean)^2)): the one-pass E[x^2] - E[x]^2 loses log10(mean^2 / var)
  digits, which turned the different summation order of 8 devices into
  1e-4 relative errors of a whole unit's gradient on some CPUs.
The bound: float32 sums of n terms differ by at most ~n * 2^-24 of the sum of
their magnitudes; with n <= 64 (batch 16, widths <= 32, the latent gathers)
that is below 1e-5 of a leaf's largest entry, the tolerance used.
"""

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest

from wae_jax import methods
from wae_jax import models
from wae_jax import optim
from wae_jax import parallel
from wae_jax.models.layers import LatentHead, decoder_output
from wae_jax.state import Networks

import methods_testlib as lib

NUM_DEVICES = 8
BATCH = 16  # global: 2 examples per device


class BatchNormMLPEncoder(nn.Module):
  """A tiny MLP with BatchNorm, so the test covers synced batch statistics."""

  latent_dim: int
  hidden_sizes: Sequence[int] = (16,)
  encoder: str = "deterministic"
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden_sizes:
      # A bias before BatchNorm has a true gradient of 0: kept, so the test
      # shows the comparison holds for such parameters.
      h = nn.Dense(width)(h)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_fast_variance=False,
                       axis_name=self.axis_name)(h)
      h = nn.relu(h)
    return LatentHead(self.latent_dim, self.encoder)(h)


class BatchNormMLPDecoder(nn.Module):
  image_shape: Tuple[int, int, int]
  hidden_sizes: Sequence[int] = (16,)
  output: str = "sigmoid"
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z, train: bool = False):
    h = z
    for width in self.hidden_sizes:
      # A bias before BatchNorm has a true gradient of 0: kept, so the test
      # shows the comparison holds for such parameters.
      h = nn.Dense(width)(h)
      h = nn.BatchNorm(use_running_average=not train, momentum=0.9, use_fast_variance=False,
                       axis_name=self.axis_name)(h)
      h = nn.relu(h)
    h = nn.Dense(int(np.prod(self.image_shape)))(h)
    return decoder_output(h.reshape((z.shape[0],) + tuple(self.image_shape)),
                          self.output)


@pytest.fixture
def sgd_optimizers(monkeypatch):
  """Every optimizer a method builds is SGD with the configured schedule."""
  monkeypatch.setattr(optim, "make_optimizer",
                      lambda config: optax.sgd(optim.learning_rate_schedule(config)))
  monkeypatch.setattr(optim, "make_adversary_optimizer", lambda config: optax.sgd(
      optim.learning_rate_schedule(config, float(config.adversary.learning_rate))))


@pytest.fixture
def batch_norm_networks(monkeypatch):
  def build_with_batch_norm(config, image_shape):
    return Networks(
        encoder=BatchNormMLPEncoder(config.latent_dim, encoder=config.model.encoder),
        decoder=BatchNormMLPDecoder(tuple(image_shape),
                                    output=config.model.decoder_output))

  monkeypatch.setattr(models, "build_networks", build_with_batch_norm)


# Options that make a method's step exercise more of the data-parallel code.
EXERCISE = {"wae_mmd": {"encoder_input_noise": 0.1}}  # per-example noise sliced per device


def _config(name):
  return lib.tiny_config(name, batch_size=BATCH, **EXERCISE.get(name, {}))


def _compare(single, multi):
  fields = ("step", "params", "batch_stats", "opt_state", "extras")
  for field in fields:
    a, b = getattr(single, field), getattr(multi, field)
    assert jax.tree.structure(a) == jax.tree.structure(b), field
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      x, y = np.asarray(x), np.asarray(y)
      # Sums split over devices round differently: allow 1e-5 of the leaf's
      # scale where single entries cancel (see the module docstring).
      scale = float(np.max(np.abs(x))) if x.size else 0.0
      np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * scale + 1e-7,
                                 err_msg=field)


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.names())
def test_eight_devices_match_one(name, batch_norm_networks, sgd_optimizers):
  assert jax.device_count() >= NUM_DEVICES
  config = _config(name)
  method, state = lib.init_state(config)
  assert state.batch_stats["encoder"]  # BatchNorm is exercised
  mesh = parallel.make_mesh(jax.devices()[:NUM_DEVICES])
  multi_state = parallel.replicate(state, mesh)
  # The trainer's parallel step, compiled with the tests' fast options.
  parallel_step = parallel.make_parallel_step(method.train_step, mesh).lower(
      multi_state, parallel.shard_batch(lib.digits_batch(BATCH), mesh)
  ).compile(lib.COMPILER_OPTIONS)
  single_step = lib.jit_step(method)
  single_state = state
  for t in range(5):
    batch = lib.digits_batch(BATCH, offset=BATCH * t)
    single_state, single_metrics = single_step(single_state, batch)
    multi_state, multi_metrics = parallel_step(
        multi_state, parallel.shard_batch(batch, mesh))
    if t in (0, 4):  # after one and after five steps
      _compare(single_state, multi_state)
      for key, value in single_metrics.items():
        np.testing.assert_allclose(multi_metrics[key], value, rtol=1e-5,
                                   atol=1e-6, err_msg=key)
  assert multi_state.params["decoder"]["Dense_0"]["kernel"].sharding.is_fully_replicated


def test_batch_must_divide_by_devices():
  mesh = parallel.make_mesh(jax.devices()[:NUM_DEVICES])
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    parallel.check_batch_size(12, mesh)
  parallel.check_batch_size(16, mesh)
  with pytest.raises(ValueError, match="multiple of this host's 8 devices"):
    parallel.shard_batch({"image": np.zeros((12, 8, 8, 1), np.float32)}, mesh)
  _, method, state, _ = lib.shared_setup("wae_mmd")
  step = parallel.make_parallel_step(method.train_step, mesh)
  # A batch placed on one device: the step refuses it before any compute.
  with pytest.raises(ValueError, match="multiple of the number of devices"):
    step(parallel.replicate(state, mesh), lib.digits_batch(12))


def test_mesh_and_sharding():
  mesh = parallel.make_mesh()
  assert mesh.axis_names == ("data",)
  assert mesh.devices.size == jax.device_count()
  batch = parallel.shard_batch(lib.digits_batch(BATCH), mesh)
  assert batch["image"].shape == (BATCH, 8, 8, 1)
  assert len(batch["image"].addressable_shards) == jax.device_count()
  np.testing.assert_array_equal(batch["image"], lib.digits_batch(BATCH)["image"])
  assert parallel.is_chief()
  assert not parallel.initialize_distributed()  # env var unset: single host
