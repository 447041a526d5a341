"""The paper-fidelity options: the reconstruction scale, Gaussian encoders for
the WAEs, the sigma-VAE, WAE-GAN's update order, pretraining, and the switch
that builds networks without batch norm; each against a hand computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax import checkpoint
from wae_jax import losses
from wae_jax import methods
from wae_jax import models
from wae_jax import priors
from wae_jax import train
from wae_jax.methods.shared import autoencoder
from wae_jax import optim
from wae_jax.methods.shared import pretraining

import methods_testlib as lib
import test_configs
import test_train as train_tests


def test_reconstruction_cost_is_scaled_sum_of_squares():
  config = lib.tiny_config("wae_mmd", reconstruction_scale=0.05)
  rng = np.random.default_rng(0)
  x, y = rng.uniform(size=(2, 3, 8, 8, 1)).astype(np.float32)
  expected = 0.05 * np.mean(np.sum(np.square(x - y), axis=(1, 2, 3)))
  np.testing.assert_allclose(autoencoder.reconstruction_cost(config, x, y), expected, rtol=1e-6)


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


def _forward(state, images):
  """Encoder mean and logvar, and the decoder, of a tiny MLP state (numpy)."""
  nets = state.networks
  mean, logvar = nets.encoder.apply({"params": state.params["encoder"]}, images)
  decode = lambda z: np.asarray(nets.decoder.apply({"params": state.params["decoder"]}, z))
  return np.asarray(mean, np.float64), np.asarray(logvar, np.float64), decode


def _imq_mmd(x, y, scales):
  """The WAE code's IMQ MMD (wae.py:287-309), in numpy float64."""
  n = len(x)
  sq = lambda a, b: np.sum((a[:, None] - b[None]) ** 2, axis=-1)
  total = 0.0
  for c in scales:
    off_diagonal = 1.0 - np.eye(n)
    same = (c / (c + sq(x, x)) + c / (c + sq(y, y))) * off_diagonal
    total += same.sum() / (n * n - n) - 2.0 * np.sum(c / (c + sq(x, y))) / (n * n)
  return total


def test_gaussian_encoder_wae_loss_matches_hand_computation_for_two_steps():
  config, _, state, step = lib.shared_setup(
      "wae_mmd", **{"model.encoder": "gaussian", "encoder_logvar_l1": 0.3,
                    "reconstruction_scale": 0.05, "prior_var": 2.0})
  images = lib.digits_batch(config.batch_size)["image"]
  for _ in range(2):
    key = jax.random.fold_in(state.rng, state.step)
    _, prior_key, _, latent_key = jax.random.split(key, 4)
    mean, logvar, decode = _forward(state, images)
    eps = np.asarray(jax.random.normal(latent_key, mean.shape), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    prior = np.asarray(jax.random.normal(prior_key, z.shape), np.float64) * np.sqrt(2.0)
    reconstruction = 0.05 * np.mean(np.sum((decode(z.astype(np.float32)) - images) ** 2,
                                           axis=(1, 2, 3)))
    c_base = 2.0 * config.latent_dim * 2.0
    mmd = _imq_mmd(z, prior, [c_base * s for s in config.mmd.scales])
    l1 = 0.3 * np.mean(np.sum(np.abs(logvar), axis=1))
    new_state, metrics = step(state, {"image": images})
    np.testing.assert_allclose(metrics["reconstruction"], reconstruction, rtol=1e-4)
    np.testing.assert_allclose(metrics["regularizer"], mmd, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(metrics["logvar_l1"], l1, rtol=1e-5)
    np.testing.assert_allclose(metrics["loss"], reconstruction + config.lambda_reg * mmd + l1,
                               rtol=1e-4)
    state = new_state


def test_sigma_vae_loss_matches_hand_computation_for_two_steps():
  sigma2_g, sigma2_p, beta = 0.3, 2.0, 0.5
  config, _, state, step = lib.shared_setup(
      "vae", **{"vae.likelihood": "gaussian", "vae.gaussian_var": sigma2_g,
                "model.decoder_output": "sigmoid", "prior_var": sigma2_p,
                "vae.beta": beta})
  images = lib.digits_batch(config.batch_size)["image"]
  num_pixels = np.prod(images.shape[1:])
  for _ in range(2):
    key = jax.random.fold_in(state.rng, state.step)
    mean, logvar, decode = _forward(state, images)
    eps = np.asarray(jax.random.normal(key, mean.shape), np.float64)
    z = mean + np.exp(0.5 * logvar) * eps
    squared = np.sum((decode(z.astype(np.float32)) - images) ** 2, axis=(1, 2, 3))
    nll = np.mean(0.5 * squared / sigma2_g) + 0.5 * num_pixels * np.log(2 * np.pi * sigma2_g)
    kl = np.mean(0.5 * np.sum((np.exp(logvar) + mean ** 2) / sigma2_p - 1.0 - logvar
                              + np.log(sigma2_p), axis=1))
    new_state, metrics = step(state, {"image": images})
    np.testing.assert_allclose(metrics["reconstruction"], nll, rtol=1e-4)
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(metrics["loss"], nll + beta * kl, rtol=1e-4)
    state = new_state


def test_pretrain_step_fits_moments_with_its_own_adam_and_moves_only_the_encoder():
  config = lib.tiny_config("wae_mmd", **{"pretrain.enabled": True})
  _, state = lib.init_state(config)
  images = lib.digits()[:64]
  optimizer = pretraining.make_optimizer(state.config)
  carry = (state, optimizer.init(state.params["encoder"]), jnp.zeros((), jnp.int32))
  (new_state, _, t), metrics = lib.jit(pretraining.pretrain_step)(carry, {"image": images})
  # Step 0's prior samples: the 3rd of 3 keys split from the stream's key 0.
  stream = jax.random.fold_in(state.rng, pretraining.KEY_STREAM)
  prior_key = jax.random.split(jax.random.fold_in(stream, 0), 3)[2]
  prior = np.asarray(priors.get_prior(config).sample(prior_key, 64, config.latent_dim))
  codes = np.asarray(state.networks.encoder.apply(
      {"params": state.params["encoder"]}, images)[0])
  cov = lambda x: np.cov(x, rowvar=False, ddof=1)
  expected = (np.mean((codes.mean(0) - prior.mean(0)) ** 2)
              + np.mean((cov(codes) - cov(prior)) ** 2))
  np.testing.assert_allclose(metrics["pretrain_loss"], expected, rtol=1e-4)
  assert int(t) == 1 and int(new_state.step) == 0
  # The main Adam is untouched; the decoder too.
  for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(new_state.opt_state)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(state.params["decoder"]),
                  jax.tree.leaves(new_state.params["decoder"])):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(state.params["encoder"]), jax.tree.leaves(new_state.params["encoder"])))


@pytest.mark.slow
def test_pretraining_stops_early_and_a_resumed_run_never_pretrains_again(tmp_path, monkeypatch):
  config = train_tests.tiny_config("wae_mmd", num_train_steps=2)
  with config.unlocked():
    config.pretrain.enabled = True
    config.pretrain.sample_size = 256
    config.prior_var = 0.05   # about the spread of the untrained encoder's codes
  calls = []
  real = pretraining.pretrain_encoder

  def recording(*args, **kwargs):
    state, history = real(*args, **kwargs)
    calls.append(history)
    return state, history

  monkeypatch.setattr(pretraining, "pretrain_encoder", recording)
  train.train_and_evaluate(config, str(tmp_path))
  (history,) = calls
  assert len(history) <= 20 and history[-1] < 0.1
  assert all(loss >= 0.1 for loss in history[:-1])  # it stopped at the first good step
  with config.unlocked():
    config.num_train_steps = 4
    config.eval_every_steps = 4
  train.train_and_evaluate(config, str(tmp_path))
  assert len(calls) == 1
  restored = checkpoint.restore_state(str(tmp_path), step=4)
  assert pretraining.steps_taken(restored) == len(history)


PAPER_IMAGE_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1), "digits": (8, 8, 1),
                      "gmm2d": (1, 1, 2), "celeb_a": (64, 64, 3), "cifar10": (32, 32, 3),
                      "celeb_a_hq": (256, 256, 3)}


@pytest.mark.slow
@pytest.mark.parametrize("name", test_configs.PAPER_CONFIGS)
def test_paper_config_at_runlocal_takes_two_real_steps(name):
  config = test_configs.load(name, "runlocal")
  with config.unlocked():
    config.steps_per_epoch = 3  # the trainer fills it from the dataset
  method = methods.get(config.method)
  shape = PAPER_IMAGE_SHAPES[config.dataset]
  images = np.random.default_rng(0).uniform(size=(config.batch_size,) + shape)
  batch = {"image": images.astype(np.float32)}
  state = lib.jit(lambda rng: method.init(config, rng, batch))(jax.random.PRNGKey(0))
  step = lib.jit(method.train_step)
  new_state, first = step(state, batch)
  new_state, second = step(new_state, batch)
  assert int(new_state.step) == 2
  for metrics in (first, second):
    assert all(np.isfinite(float(v)) for v in metrics.values()), metrics
  assert float(second["loss"]) != float(first["loss"])


def _param_shapes(config, image_shape):
  """eval_shape'd encoder and decoder variables of a config's networks."""
  nets = models.build_networks(config, image_shape)
  key = jax.random.PRNGKey(0)
  encoder = jax.eval_shape(lambda: nets.encoder.init(
      key, jnp.zeros((1,) + image_shape), train=False))
  decoder = jax.eval_shape(lambda: nets.decoder.init(
      key, jnp.zeros((1, config.latent_dim)), train=False))
  return encoder, decoder


def _count(variables):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def test_batch_norm_switch_removes_every_statistic():
  for network, shape in (("dcgan", (28, 28, 1)), ("resnet18", (32, 32, 3))):
    config = lib.tiny_config("wae_mmd", **{"model.network": network,
                                           "model.width_multiplier": 1 / 16})
    with_bn = _param_shapes(config, shape)
    config.model.batch_norm = False
    without = _param_shapes(config, shape)
    for on, off in zip(with_bn, without):
      assert "batch_stats" in on and "batch_stats" not in off
      # Only the norms' scale and bias go: 2 per normalised channel.
      statistics = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(on["batch_stats"]))
      assert _count(on) - _count(off) == statistics


def test_moca_networks_as_the_appendix_describes():
  config = test_configs.load("celeba_moca_a2")
  decoders = []
  for shape in ((32, 32, 3), (64, 64, 3)):
    encoder, decoder = _param_shapes(config, shape)
    assert 23.5e6 < _count(encoder) + _count(decoder) < 24.5e6  # App. A2: about 24M
    decoders.append(_count(decoder))
  # Both start from 4x4; at 64 px one more x2 block at 64 channels: a 3x3 conv,
  # a 3x3 transposed conv, a 2x2 transposed shortcut and three norms.
  assert decoders[1] - decoders[0] == 2 * 9 * 64 * 64 + 4 * 64 * 64 + 3 * 2 * 64
  hq = test_configs.load("celebahq_moca")
  encoder, _ = _param_shapes(hq, (256, 256, 3))
  # The 4x4x512 map is flattened into the latent layer.
  assert encoder["params"]["LatentHead_0"]["mean"]["kernel"].shape == (4 * 4 * 512, 128)


def _a1_closed_form(latent, image_shape, dense_batch_norm=True):
  """Parameters (weights, biases, norm scales and offsets) of the WAE paper's
  conv net as A1 builds it, counted layer by layer from its description."""
  height, width, channels = image_shape
  celeba = height > 32
  kernel = 5 if celeba else 4
  encoder_channels = (channels, 128, 256, 512, 1024)
  count = 0
  for c_in, c_out in zip(encoder_channels[:-1], encoder_channels[1:]):
    count += kernel * kernel * c_in * c_out + c_out + 2 * c_out  # conv + its norm
  count += (height // 16) * (width // 16) * 1024 * latent + latent  # latent layer
  decoder_channels = (1024, 512, 256, 128) if celeba else (1024, 512, 256)
  start = (height // 2 ** (len(decoder_channels) - 1)) * (width // 2 ** (len(decoder_channels) - 1))
  count += latent * start * 1024 + start * 1024 + (2 * 1024 if dense_batch_norm else 0)
  for c_in, c_out in zip(decoder_channels[:-1], decoder_channels[1:]):
    count += kernel * kernel * c_in * c_out + c_out + 2 * c_out
  return count + kernel * kernel * decoder_channels[-1] * channels + channels


def test_moca_a1_parameter_count_against_the_appendix():
  """moca.txt, appendix A: A1 is the WAE paper's net with "batch norm in every
  layer" and latent 128 on CelebA, "around 38 million parameters". Counted
  with jax.eval_shape (no arrays): 45.0M. The gap is the latent size: A1's two
  dense layers (features -> 128 and 128 -> 8x8x1024) hold 10.6M; at the WAE
  paper's latent 64 the same net has 39.7M (configs/paper_settings.md)."""
  for name, shape, paper in (("celeba_moca_a1", (64, 64, 3), 38e6),
                             ("cifar10_moca_a1", (32, 32, 3), None)):
    config = test_configs.load(name)
    assert config.latent_dim == 128 and config.model.dense_batch_norm
    encoder, decoder = _param_shapes(config, shape)
    count = _count(encoder) + _count(decoder)
    assert count == _a1_closed_form(128, shape), name
    # Every conv, transposed conv and the decoder's dense layer is normalised.
    assert "BatchNorm_dense" in decoder["params"]
    print(f"{name}: {count / 1e6:.2f}M parameters (latent 128)"
          + (f"; the paper: about {paper / 1e6:.0f}M; at latent 64: "
             f"{_a1_closed_form(64, shape) / 1e6:.2f}M" if paper else ""))
  celeba = _a1_closed_form(128, (64, 64, 3))
  assert 44.9e6 < celeba < 45.1e6
  # Latent 128 instead of 64 adds 64 weights per unit of both dense layers
  # (4*4*1024 encoder features, 8*8*1024 decoder units) and 64 latent biases.
  assert celeba - _a1_closed_form(64, (64, 64, 3)) == 64 * (4 * 4 * 1024 + 8 * 8 * 1024 + 1)


def test_eq6_loss_is_alignment_plus_entropy():
  rng = np.random.default_rng(1)
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
  q, k, queue = (unit(rng.normal(size=shape)) for shape in ((6, 5), (6, 5), (40, 5)))
  tau = 0.2
  logits = q @ queue.T / tau
  entropy = np.mean(np.log(np.mean(np.exp(logits), axis=1)))
  expected = entropy - np.mean(np.sum(q * k, axis=1)) / tau
  np.testing.assert_allclose(losses.moca_alignment_entropy_loss(q, k, queue, tau), expected,
                             rtol=1e-5)


def test_moca_schedules_halve_as_the_appendix_says():
  for name, epochs, hand in (
      ("cifar10_moca_a1", 40, {0: 1e-3, 39: 1e-3}),
      ("cifar10_moca_a2", 100, {59: 1e-3, 60: 5e-4, 99: 5e-4}),
      ("celeba_moca_a2", 200, {59: 1e-3, 60: 5e-4, 120: 2.5e-4, 199: 1.25e-4}),
      ("celebahq_moca", 1000, {39: 2e-3, 40: 1e-3, 399: 2e-3 / 2 ** 9,
                               400: 2e-3 / 2 ** 10, 999: 2e-3 / 2 ** 10})):
    config = test_configs.load(name)
    with config.unlocked():
      config.steps_per_epoch = 10
    assert config.num_train_steps // (config.num_train_steps // epochs) == epochs
    schedule = optim.learning_rate_schedule(config)
    for epoch, lr in hand.items():
      assert float(schedule(10 * epoch)) == pytest.approx(lr, rel=1e-6), (name, epoch)


def test_gated_layer_gradients_are_normalised_per_tensor_as_adamnormgrad():
  """h and g are separate tensors, each divided by its own gradient norm.

  The SWAE code's gated dense layer is two nn.Linear (utils/nn.py:55-71) and
  AdamNormGrad replaces each parameter tensor's gradient by
  grad / (||grad||_2 + 1e-7) (utils/optimizer.py:53). Hand case: loss
  sum(c * h(x) * sigmoid(g(x))), whose gradients have a closed form.
  """
  from wae_jax.models import gated  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(3)
  x, c = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
  params = {name: {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=(3,))}
            for name in ("h", "g")}
  layer = gated.GatedDense(3)
  loss = lambda p: jnp.sum(c * layer.apply({"params": p}, jnp.asarray(x, jnp.float32)))
  grads = jax.grad(loss)(jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
  transform = optim.normalize_gradients()
  normalised, _ = transform.update(grads, transform.init(grads))

  h = x @ params["h"]["kernel"] + params["h"]["bias"]
  gate = 1 / (1 + np.exp(-(x @ params["g"]["kernel"] + params["g"]["bias"])))
  d_h, d_g = c * gate, c * h * gate * (1 - gate)
  hand = {"h": {"kernel": x.T @ d_h, "bias": d_h.sum(0)},
          "g": {"kernel": x.T @ d_g, "bias": d_g.sum(0)}}
  for name in ("h", "g"):
    for leaf in ("kernel", "bias"):
      grad = hand[name][leaf]
      norm = np.linalg.norm(grad)
      # float32 forward/backward of a 4x3 layer: a few ulps relative.
      np.testing.assert_allclose(normalised[name][leaf], grad / (norm + 1e-7), rtol=1e-5,
                                 atol=1e-6, err_msg=f"{name}.{leaf}")
      assert float(jnp.linalg.norm(normalised[name][leaf])) == pytest.approx(
          norm / (norm + 1e-7), rel=1e-5)
  # A fused (h, g) tensor would share one norm: the pieces would not each be unit.
  joint = np.hypot(np.linalg.norm(hand["h"]["kernel"]), np.linalg.norm(hand["g"]["kernel"]))
  assert np.linalg.norm(hand["h"]["kernel"]) / joint < 0.99
