"""WAE-GAN: with the encoder frozen the adversary learns to tell prior samples
from codes; both updates happen in one step with their own optimizers."""

import jax
import numpy as np

from wae_jax import losses
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


@lib.jit
def _step_references(state, images):
  """What the first step should compute, from the losses and a hand-made
  gradient: (adversary loss, encoder's adversarial loss, adversary grads)."""
  codes = wae_gan.METHOD.encode(state, images)  # MLP: no BatchNorm, eval == train
  prior_samples = priors.get_prior(state.config).sample(
      jax.random.fold_in(state.rng, 0), *codes.shape)
  apply = lambda z: state.extras.adversary.apply(
      {"params": state.extras.adversary_params}, z)
  grads = jax.grad(lambda p: wae_gan.adversary_loss_fn(
      p, state, codes, prior_samples)[0])(state.extras.adversary_params)
  return (losses.adversary_loss(apply(prior_samples), apply(codes)),
          losses.encoder_adversarial_loss(apply(codes)), grads)


def test_step_metrics_match_the_losses():
  # The config of test_methods' wae_gan training test: one compile for both.
  config, method, state, step = lib.shared_setup("wae_gan", lambda_reg=0.1)
  batch = lib.digits_batch(config.batch_size)
  new_state, metrics = step(state, batch)
  adversary_loss, adversarial, grads = _step_references(state, batch["image"])
  np.testing.assert_allclose(metrics["adversary_loss"], adversary_loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["regularizer"], adversarial, rtol=1e-5)
  np.testing.assert_allclose(
      metrics["loss"], metrics["reconstruction"] + 0.1 * metrics["regularizer"],
      rtol=1e-6)
  # The adversary moved by its own Adam: the first step is -lr * sign(grad).
  for g, old, new in zip(jax.tree.leaves(grads),
                         jax.tree.leaves(state.extras.adversary_params),
                         jax.tree.leaves(new_state.extras.adversary_params)):
    expected = np.asarray(old) - config.adversary.learning_rate * np.sign(g)
    mask = np.abs(np.asarray(g)) > 1e-4  # Adam's eps blurs tiny gradients
    np.testing.assert_allclose(np.asarray(new)[mask], expected[mask], rtol=1e-4,
                               atol=1e-6)
