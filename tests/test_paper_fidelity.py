"""The paper-fidelity options: the reconstruction scale, Gaussian encoders for
the WAEs, the sigma-VAE, WAE-GAN's update order, pretraining, and the switch
that builds networks without batch norm; each against a hand computation."""

import jax
import numpy as np
import pytest

from wae_jax.methods import common

import methods_testlib as lib


def test_reconstruction_cost_is_scaled_sum_of_squares():
  config = lib.tiny_config("wae_mmd", reconstruction_scale=0.05)
  rng = np.random.default_rng(0)
  x, y = rng.uniform(size=(2, 3, 8, 8, 1)).astype(np.float32)
  expected = 0.05 * np.mean(np.sum(np.square(x - y), axis=(1, 2, 3)))
  np.testing.assert_allclose(common.reconstruction_cost(config, x, y), expected, rtol=1e-6)


@pytest.mark.parametrize("name", ["wae_mmd", "wae_gan", "vae", "moca"])
def test_reconstruction_scale_zero_trains_the_regularizer_alone(name):
  config, _, state, step = lib.shared_setup(name, reconstruction_scale=0.0)
  new_state, metrics = step(state, lib.digits_batch(config.batch_size))
  assert float(metrics["reconstruction"]) == 0.0
  # Only the reconstruction term reaches the decoder: a zero gradient leaves
  # Adam's update at exactly zero.
  for old, new in zip(jax.tree.leaves(state.params["decoder"]),
                      jax.tree.leaves(new_state.params["decoder"])):
    np.testing.assert_array_equal(old, new)
  changed = [not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(state.params["encoder"]), jax.tree.leaves(new_state.params["encoder"]))]
  assert any(changed)
