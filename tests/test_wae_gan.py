"""WAE-GAN: with the encoder frozen the adversary learns to tell prior samples
from codes; a step updates the encoder-decoder, then the adversary on the
updated encoder's codes, each with its own optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wae_jax import priors
from wae_jax.methods import wae_gan

import methods_testlib as lib


@lib.jit
def _adversary_logits(state, images, key):
  """D(prior samples drawn from key), D(E(images)) (eval-mode codes)."""
  codes = wae_gan.METHOD.encode(state, images)
  prior_samples = priors.get_prior(state.config).sample(key, *codes.shape)
  apply = lambda z: state.extras.adversary.apply(
      {"params": state.extras.adversary_params}, z)
  return apply(prior_samples), apply(codes)


def _accuracy(state, images, key):
  """Adversary accuracy on fresh prior samples vs the codes, by hand."""
  d_prior, d_encoded = map(np.asarray, _adversary_logits(state, images, key))
  return 0.5 * (np.mean(d_prior > 0) + np.mean(d_encoded < 0))


def test_adversary_learns_when_encoder_is_frozen():
  config = lib.tiny_config("wae_gan", **{"optimizer.learning_rate": 0.0,
                                         "adversary.learning_rate": 3e-3,
                                         "adversary_log_prior": False})
  method, state = lib.init_state(config)
  images = lib.digits_batch(200, offset=300)["image"]
  eval_key = jax.random.PRNGKey(123)
  accuracy_before = _accuracy(state, images, eval_key)
  encoder_before = lib.copy_tree(state.params)
  step = lib.jit_step(method)
  history = []
  for t in range(40):
    state, metrics = step(state, lib.digits_batch(config.batch_size,
                                                  offset=(32 * t) % 1500))
    history.append(float(metrics["adversary_accuracy"]))
  accuracy_after = _accuracy(state, images, eval_key)
  assert accuracy_after > accuracy_before + 0.1, (accuracy_before, accuracy_after)
  assert accuracy_after > 0.8
  assert np.mean(history[-5:]) > np.mean(history[:5])
  for a, b in zip(jax.tree.leaves(encoder_before), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)  # lr 0: the encoder-decoder is frozen


def _hand_step(state, images, sequential=True):
  """One WAE-GAN step written out by hand for the tiny MLP (no batch norm, no
  noise, deterministic encoder): the encoder-decoder's Adam step against the
  current adversary, then the adversary's Adam step on lambda * its loss,
  on the codes of the UPDATED encoder (sequential) or of the old one."""
  config, nets = state.config, state.networks
  enc = lambda p, x: nets.encoder.apply({"params": p}, x)[0]
  dec = lambda p, z: nets.decoder.apply({"params": p}, z)
  extras = state.extras
  adv = lambda p, z: extras.adversary.apply({"params": p}, z)
  _, adversary_key = jax.random.split(jax.random.fold_in(state.rng, state.step))
  _, prior_key = jax.random.split(adversary_key)

  def autoencoder_loss(params):
    codes = enc(params["encoder"], images)
    reconstruction = jnp.mean(jnp.sum(jnp.square(dec(params["decoder"], codes) - images),
                                      axis=(1, 2, 3)))
    adversarial = jnp.mean(jax.nn.softplus(-adv(extras.adversary_params, codes)))
    return reconstruction + config.lambda_reg * adversarial

  grads = jax.grad(autoencoder_loss)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  codes = enc((params if sequential else state.params)["encoder"], images)
  prior_samples = priors.get_prior(config).sample(prior_key, *codes.shape)

  def adversary_loss(p):
    return config.lambda_reg * (jnp.mean(jax.nn.softplus(-adv(p, prior_samples)))
                                + jnp.mean(jax.nn.softplus(adv(p, codes))))

  adv_grads = jax.grad(adversary_loss)(extras.adversary_params)
  adv_updates, adv_opt_state = extras.adversary_tx.update(
      adv_grads, extras.adversary_opt_state, extras.adversary_params)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                       extras=extras.replace(
                           adversary_params=optax.apply_updates(extras.adversary_params,
                                                                adv_updates),
                           adversary_opt_state=adv_opt_state))


_hand_two_steps = lib.jit(lambda state, images, sequential: _hand_step(
    _hand_step(state, images, sequential), images, sequential), static_argnums=2)


@pytest.mark.slow
def test_two_steps_update_the_autoencoder_then_the_adversary():
  # The config of test_methods' wae_gan training test: one compile for both.
  config, method, state, step = lib.shared_setup("wae_gan", lambda_reg=0.1)
  batch = lib.digits_batch(config.batch_size)
  after_one, metrics = step(state, batch)
  after_two, _ = step(after_one, batch)
  expected = _hand_two_steps(state, batch["image"], True)
  simultaneous = _hand_two_steps(state, batch["image"], False)
  for got, want in zip(jax.tree.leaves((after_two.params, after_two.extras.adversary_params)),
                       jax.tree.leaves((expected.params, expected.extras.adversary_params))):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)
  # The order matters: adversary updates on the old codes end elsewhere.
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree.leaves(after_two.extras.adversary_params),
      jax.tree.leaves(simultaneous.extras.adversary_params))) > 1e-5
  np.testing.assert_allclose(
      metrics["loss"], metrics["reconstruction"] + 0.1 * metrics["regularizer"],
      rtol=1e-6)
