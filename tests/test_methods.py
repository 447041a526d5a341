"""Methods on real 8x8 digits: training lowers the loss, the state keeps its
structure, the VAE's KL matches a re-derivation, the
learning-rate schedules match hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import cli
from wae_jax import config as wae_config
from wae_jax import fields
from wae_jax import losses
from wae_jax import methods
from wae_jax import optim
from wae_jax import priors
from wae_jax.methods.shared import autoencoder
from wae_jax.methods import wae_mmd

import methods_testlib as lib

NUM_STEPS = 50
# The configs of the tests that check one step against re-derivations.
WAE_MMD_OVERRIDES = {"lambda_reg": 3.0}
VAE_OVERRIDES = {"vae.beta": 2.0}


def _train(method, state, step, batch_size, num_steps=NUM_STEPS):
  batch = lib.digits_batch(batch_size)
  structure = jax.tree.structure(state)
  history = []
  for _ in range(num_steps):
    state, metrics = step(state, batch)
    assert jax.tree.structure(state) == structure
    history.append({k: float(v) for k, v in metrics.items()})
  return method, state, history


def test_get_rejects_unknown_method():
  with pytest.raises(ValueError, match="Unknown method 'wae_xyz'"):
    methods.get("wae_xyz")
  # The shared code is no method, nor are the package's private modules.
  for name in ("shared", "autoencoder", "pretraining", "__init__"):
    assert name not in methods.names()
    with pytest.raises(ValueError, match="Unknown method"):
      methods.get(name)


def test_registry_finds_every_method_module():
  import pathlib  # pylint: disable=g-import-not-at-top
  package = pathlib.Path(methods.__file__).parent
  files = sorted(p.stem for p in package.glob("*.py") if not p.stem.startswith("_"))
  assert methods.names() == tuple(files)
  for name in files:
    method = methods.get(name)
    assert method.name == name and method.description


@pytest.mark.parametrize("name", methods.names())
def test_apply_required_gives_what_check_config_asks_for(name):
  method = methods.get(name)
  config = lib.base_config()
  config.method = name
  assert methods.apply_required(config) is config
  method.check_config(config)
  for dotted, value in method.required.items():
    assert fields.get(config, dotted) == value
  # Every field the method declares is in the schema with its default.
  base = lib.base_config()
  for field, default in method.config.items():
    value = base[field].to_dict() if hasattr(base[field], "to_dict") else base[field]
    assert value == default, field


def test_use_method_switches_and_refuses_a_contradiction():
  config = wae_config.use_method(lib.base_config(), "vae", user_fields=("vae.beta",))
  assert (config.method, config.model.encoder, config.model.decoder_output) == (
      "vae", "gaussian", "logits")
  config = lib.base_config()
  config.model.encoder = "deterministic"
  with pytest.raises(cli.UserError, match=r"--config\.method=vae needs "
                     r"config\.model\.encoder='gaussian', but --config\.model\.encoder="
                     r"'deterministic' was given"):
    wae_config.use_method(config, "vae", user_fields=("model.encoder",))
  # A value the user chose that differs from a required one but that the
  # method accepts stays: a Gaussian-likelihood VAE with pixel means.
  config = lib.base_config()
  config.vae.likelihood = "gaussian"
  wae_config.use_method(config, "vae", user_fields=("model.decoder_output", "vae.likelihood"))
  assert (config.model.decoder_output, config.model.encoder) == ("sigmoid", "gaussian")
  # A sweep's run: flat dotted overrides.
  assert methods.apply_required({"method": "vae", "vae.beta": 2.0}) == {
      "method": "vae", "vae.beta": 2.0, "model.encoder": "gaussian",
      "model.decoder_output": "logits", "prior": "gaussian"}


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.names())
def test_training_lowers_loss_keeps_structure(name):
  config, method, state, step = lib.shared_setup(name)
  method, state, history = _train(method, state, step, config.batch_size)
  assert int(state.step) == NUM_STEPS
  for metrics in history:
    assert all(np.isfinite(v) for v in metrics.values()), metrics
  expected = {"loss", "reconstruction", "regularizer", "learning_rate"}
  assert expected <= set(history[0])
  assert history[0]["learning_rate"] == pytest.approx(3e-3)
  first = np.mean([m["loss"] for m in history[:3]])
  last = np.mean([m["loss"] for m in history[-3:]])
  assert last < first, (name, first, last)
  assert history[-1]["reconstruction"] < history[0]["reconstruction"]

  images = lib.digits_batch(6)["image"]
  inference = lib.inference(method)
  codes = inference.encode(state, images)
  assert codes.shape == (6, config.latent_dim)
  reconstructions = inference.reconstruct(state, images)
  samples = inference.sample(state, jax.random.PRNGKey(1), 5)
  assert reconstructions.shape == images.shape
  assert samples.shape == (5, 8, 8, 1)
  for out in (reconstructions, samples):
    assert float(jnp.min(out)) >= 0.0 and float(jnp.max(out)) <= 1.0
  path = inference.interpolate(state, images[:3], images[3:], 4)
  assert path.shape == (3, 4, 8, 8, 1)
  # The end points are the reconstructions of a and b.
  np.testing.assert_allclose(path[:, 0], reconstructions[:3], atol=1e-5)
  np.testing.assert_allclose(path[:, -1], reconstructions[3:], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("regularizer", ["sliced", "sinkhorn", "cramer_wold"])
def test_wae_baseline_regularizers_share_the_step(regularizer):
  config = lib.tiny_config("wae_mmd", regularizer=regularizer,
                           **{"sinkhorn.num_iters": 10})
  method, state = lib.init_state(config)
  _, state, history = _train(method, state, lib.jit_step(method),
                             config.batch_size, num_steps=10)
  assert int(state.step) == 10
  assert all(np.isfinite(list(m.values())).all() for m in history)
  assert history[-1]["loss"] < history[0]["loss"]


def _prior_samples(config, state, shape):
  """The step-0 prior samples of wae_mmd: the 2nd of 4 keys split from
  fold_in(state.rng, 0)."""
  def draw(rng):
    prior_key = jax.random.split(jax.random.fold_in(rng, 0), 4)[1]
    return priors.get_prior(config).sample(prior_key, *shape)
  return np.asarray(lib.jit(draw)(state.rng))


def test_wae_mmd_regularizer_is_the_mmd_of_codes_and_prior_samples():
  config, method, state, step = lib.shared_setup(
      "wae_mmd", **WAE_MMD_OVERRIDES)
  assert config.lambda_reg == 3.0
  batch = lib.digits_batch(config.batch_size)
  _, metrics = step(state, batch)
  inference = lib.inference(method)
  # MLP: no BatchNorm, so eval mode == train mode.
  codes = inference.encode(state, batch["image"])
  prior_samples = _prior_samples(config, state, codes.shape)
  expected_mmd = lib.jit(losses.mmd_penalty)(codes, prior_samples)
  expected_rec = np.mean(np.sum(
      (np.asarray(inference.reconstruct(state, batch["image"]))
       - batch["image"]) ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(metrics["regularizer"], expected_mmd, rtol=1e-4)
  np.testing.assert_allclose(metrics["reconstruction"], expected_rec, rtol=1e-5)
  np.testing.assert_allclose(metrics["loss"], expected_rec + 3.0 * expected_mmd,
                             rtol=1e-5)


def test_encoder_input_noise_is_truncated_and_random_per_step():
  config = lib.tiny_config("wae_mmd", encoder_input_noise=0.3)
  _, state = lib.init_state(config)
  images = jnp.asarray(lib.digits_batch(config.batch_size)["image"])
  loss = lib.jit(lambda key: wae_mmd.loss_fn(state.params, state, images, key)[1][0])
  first, second = loss(jax.random.PRNGKey(0)), loss(jax.random.PRNGKey(1))
  assert np.isfinite(float(first["loss"]))
  assert float(first["reconstruction"]) != float(second["reconstruction"])
  zeros = jnp.zeros((10000, 1, 1, 1))
  noise = autoencoder.noisy_encoder_input(config, zeros, jax.random.PRNGKey(0), None)
  assert float(jnp.max(jnp.abs(noise))) <= 0.6 + 1e-6
  # A normal truncated at 2 std keeps 0.88 of the standard deviation.
  assert float(jnp.std(noise)) == pytest.approx(0.3 * 0.8796, rel=0.03)


def test_vae_kl_matches_encoder_outputs():
  config, method, state, step = lib.shared_setup("vae", **VAE_OVERRIDES)
  assert config.vae.beta == 2.0
  batch = lib.digits_batch(config.batch_size)
  _, metrics = step(state, batch)
  mean, logvar = lib.jit(lambda params, images: state.networks.encoder.apply(
      {"params": params}, images, train=True))(
          state.params["encoder"], batch["image"])
  np.testing.assert_allclose(metrics["kl"],
                             lib.jit(losses.gaussian_kl)(mean, logvar), rtol=1e-5)
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  numpy_kl = np.mean(0.5 * np.sum(np.exp(logvar) + mean ** 2 - 1 - logvar, axis=1))
  np.testing.assert_allclose(metrics["kl"], numpy_kl, rtol=1e-4)
  np.testing.assert_allclose(
      metrics["loss"], metrics["reconstruction"] + 2.0 * metrics["kl"], rtol=1e-6)


def test_vae_gaussian_likelihood_trains():
  config = lib.tiny_config("vae", **{"vae.likelihood": "gaussian",
                                     "vae.gaussian_var": 0.1,
                                     "model.decoder_output": "sigmoid"})
  method, state = lib.init_state(config)
  _, _, history = _train(method, state, lib.jit_step(method), config.batch_size,
                         num_steps=20)
  assert history[-1]["loss"] < history[0]["loss"]


def test_vae_config_errors():
  with pytest.raises(ValueError, match="decoder_output='logits'"):
    lib.init_state(lib.tiny_config("vae", **{"model.decoder_output": "sigmoid"}))
  with pytest.raises(ValueError, match="encoder='gaussian'"):
    lib.init_state(lib.tiny_config("vae", **{"model.encoder": "deterministic"}))


def test_unknown_regularizer_is_rejected():
  with pytest.raises(ValueError, match="config.regularizer"):
    lib.init_state(lib.tiny_config("wae_mmd", regularizer="energy"))


def test_learning_rate_schedules_match_hand_computation():
  config = lib.base_config()
  config.optimizer.learning_rate = 0.1
  config.steps_per_epoch = 7
  constant = optim.learning_rate_schedule(config)
  assert float(constant(12345)) == pytest.approx(0.1)

  config.optimizer.schedule = "wae_piecewise"
  piecewise = optim.learning_rate_schedule(config)
  hand = {0: 0.1, 7 * 30 - 1: 0.1, 7 * 30: 0.05, 7 * 50 - 1: 0.05,
          7 * 50: 0.01, 7 * 100 - 1: 0.01, 7 * 100: 0.001, 7 * 500: 0.001}
  for step, lr in hand.items():
    assert float(piecewise(step)) == pytest.approx(lr, rel=1e-6), step

  config.optimizer.schedule = "step"
  config.optimizer.decay_every_epochs = 3
  config.optimizer.decay_factor = 0.5
  step_decay = optim.learning_rate_schedule(config)
  for step, lr in {0: 0.1, 20: 0.1, 21: 0.05, 41: 0.05, 42: 0.025, 7 * 9: 0.0125}.items():
    assert float(step_decay(step)) == pytest.approx(lr, rel=1e-6), step
  assert float(jax.jit(step_decay)(jnp.int32(42))) == pytest.approx(0.025)

  config.steps_per_epoch = -1
  with pytest.raises(ValueError, match="steps_per_epoch > 0"):
    optim.learning_rate_schedule(config)
  config.optimizer.schedule = "cosine"
  with pytest.raises(ValueError, match="Unknown optimizer.schedule"):
    optim.learning_rate_schedule(config)


def test_optimizer_applies_the_schedule_and_betas():
  config = lib.base_config()
  config.optimizer.learning_rate = 0.1
  config.optimizer.schedule = "step"
  config.steps_per_epoch = 1
  config.optimizer.decay_every_epochs = 1
  config.optimizer.decay_factor = 0.5
  config.optimizer.b1 = 0.5
  tx = optim.make_optimizer(config)
  params = jnp.zeros(())
  opt_state = tx.init(params)
  # A constant gradient makes bias-corrected Adam steps of exactly -lr.
  for step in range(3):
    updates, opt_state = tx.update(jnp.ones(()), opt_state, params)
    np.testing.assert_allclose(updates, -0.1 * 0.5 ** step, rtol=1e-5)
