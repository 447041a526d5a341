"""MoCA: the queue, its pointer and the key encoder's EMA against hand
computations; with lambda = 0 the gradient is a plain autoencoder's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import losses
from wae_jax import priors
from wae_jax.methods import moca

import methods_testlib as lib

BATCH = 8
QUEUE = 24
NUM_STEPS = 5


def _unit(z):
  z = np.asarray(z, np.float64)
  return z / np.linalg.norm(z, axis=-1, keepdims=True)


def _apply_train(module, params, batch_stats, x):
  """Training-mode forward straight through Flax (independent of the method)."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
    out, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    return out
  return module.apply(variables, x, train=True)


@functools.lru_cache(maxsize=None)
def _jitted_apply_train(module):
  """_apply_train of `module`, jitted once (the module is static)."""
  return lib.jit(functools.partial(_apply_train, module))


def _cosine_momentum(step, total, base):
  return 1.0 - (1.0 - base) * (np.cos(np.pi * min(step, total) / total) + 1.0) / 2.0


@pytest.mark.slow
def test_queue_pointer_and_key_encoder_ema():
  config = lib.tiny_config("moca", batch_size=BATCH, **{
      "moca.queue_size": QUEUE, "moca.momentum_base": 0.5, "num_train_steps": 8})
  method, state = lib.init_state(config)
  initial_queue = np.asarray(state.extras.queue)
  np.testing.assert_allclose(np.linalg.norm(initial_queue, axis=1), 1.0, rtol=1e-5)
  step = lib.jit_step(method)
  key_params = lib.copy_tree(state.params["encoder"])
  np.testing.assert_array_equal(
      jax.tree.leaves(key_params)[0], jax.tree.leaves(state.extras.key_encoder_params)[0])
  written = {}
  for t in range(NUM_STEPS):
    query_params = lib.copy_tree(state.params["encoder"])
    m = _cosine_momentum(t, 8, 0.5)
    key_params = jax.tree.map(lambda k, q: m * k + (1 - m) * q, key_params,
                              query_params)
    batch = lib.digits_batch(BATCH, offset=BATCH * t)  # distinct keys per step
    (codes, _) = _jitted_apply_train(state.networks.encoder)(
        key_params, {}, batch["image"])
    written[t] = _unit(codes)
    state, metrics = step(state, batch)
    np.testing.assert_allclose(metrics["momentum"], m, rtol=1e-6)
    for got, want in zip(jax.tree.leaves(state.extras.key_encoder_params),
                         jax.tree.leaves(key_params)):
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  assert int(state.extras.queue_ptr) == (NUM_STEPS * BATCH) % QUEUE
  expected_queue = initial_queue.copy()
  for t in range(NUM_STEPS):  # later writes overwrite earlier ones
    start = (t * BATCH) % QUEUE
    expected_queue[start:start + BATCH] = written[t]
  np.testing.assert_allclose(state.extras.queue, expected_queue, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_zero_lambda_gradient_is_a_plain_autoencoders():
  config = lib.tiny_config("moca", batch_size=BATCH, lambda_reg=0.0)
  _, state = lib.init_state(config)
  images = jnp.asarray(lib.digits_batch(BATCH)["image"])
  keys = jax.random.normal(jax.random.PRNGKey(3), (BATCH, config.latent_dim))
  grads, _ = lib.jit(jax.grad(moca.loss_fn, has_aux=True))(
      state.params, state, images, priors.to_unit_sphere(keys))

  def autoencoder_loss(params):
    codes, _ = state.networks.encoder.apply(
        {"params": params["encoder"]}, images, train=True)
    codes = codes / jnp.linalg.norm(codes, axis=-1, keepdims=True)
    rec = state.networks.decoder.apply({"params": params["decoder"]}, codes,
                                       train=True)
    return jnp.mean(jnp.sum((rec - images) ** 2, axis=(1, 2, 3)))

  expected = lib.jit(jax.grad(autoencoder_loss))(state.params)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)

  # And lambda > 0 adds the contrastive term.
  config, _, state, _ = lib.shared_setup("moca", batch_size=BATCH)
  assert config.lambda_reg > 0
  loss, (metrics, _, queries) = lib.jit(moca.loss_fn)(
      state.params, state, images, priors.to_unit_sphere(keys))
  np.testing.assert_allclose(
      metrics["regularizer"],
      lib.jit(losses.moca_loss, static_argnums=3)(
          queries, priors.to_unit_sphere(keys), state.extras.queue,
          config.moca.temperature),
      rtol=1e-6)
  np.testing.assert_allclose(
      loss, metrics["reconstruction"] + config.lambda_reg * metrics["regularizer"],
      rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)


def test_queue_size_must_divide_by_global_batch():
  config = lib.tiny_config("moca", batch_size=BATCH, **{"moca.queue_size": 20})
  with pytest.raises(ValueError, match="multiple of the global batch"):
    lib.init_state(config)


def test_generation_uses_the_sphere():
  config, method, state, _ = lib.shared_setup("moca", batch_size=BATCH)
  inference = lib.inference(method)
  images = lib.digits_batch(4)["image"]
  codes = inference.encode(state, images)
  np.testing.assert_allclose(np.linalg.norm(codes, axis=1), 1.0, rtol=1e-5)
  key = jax.random.PRNGKey(7)
  z = np.asarray(lib.jit(jax.random.normal, static_argnums=1)(
      key, (3, config.latent_dim)))
  np.testing.assert_allclose(inference.sample(state, key, 3),
                             inference.decode(state, _unit(z).astype(np.float32)),
                             atol=1e-6)
  path = inference.interpolate(state, images[:2], images[2:], 3)
  # The midpoint decodes the renormalised mean of the two codes.
  mid = _unit((np.asarray(codes[:2]) + np.asarray(codes[2:])) / 2).astype(np.float32)
  np.testing.assert_allclose(path[:, 1], inference.decode(state, mid), atol=1e-5)
