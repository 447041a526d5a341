"""Networks: forward passes at tiny widths, full-size shapes via eval_shape, contracts."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

from configs import default
from wae_jax import models, priors


def make_config(network="mlp", latent_dim=4, width=1.0, encoder="deterministic",
                output="sigmoid", upsample="phase", method="wae_mmd", **overrides):
  config = default.base_config()
  config.model.network = network
  config.model.width_multiplier = width
  config.model.encoder = encoder
  config.model.decoder_output = output
  config.model.upsample = upsample
  config.model.hidden_sizes = (16, 8)
  config.latent_dim = latent_dim
  config.method = method
  for key, value in overrides.items():
    config[key] = value
  return config


def _numpy_fill(path, leaf, rng):
  """Random weights in flax's layout without compiling flax's initialisers (slow on CPU)."""
  name = path[-1].key
  if name == "kernel":  # lecun-normal scale, fan-in = all but the last axis
    fan_in = math.prod(leaf.shape[:-1])
    return jnp.asarray(rng.normal(size=leaf.shape) / math.sqrt(fan_in), leaf.dtype)
  if name in ("scale", "var"):
    return jnp.ones(leaf.shape, leaf.dtype)
  return jnp.asarray(0.1 * rng.normal(size=leaf.shape), leaf.dtype)  # bias, BN bias, mean


def init_variables(nets, image_shape, latent_dim, batch=2):
  """Encoder and decoder variables with flax's tree and shapes, from numpy."""
  key = jax.random.PRNGKey(0)
  x = jnp.zeros((batch,) + image_shape)
  z = jnp.zeros((batch, latent_dim))
  rng = np.random.default_rng(0)
  fill = lambda tree: jax.tree_util.tree_map_with_path(lambda p, a: _numpy_fill(p, a, rng), tree)
  enc = fill(jax.eval_shape(lambda: nets.encoder.init(key, x, train=False)))
  dec = fill(jax.eval_shape(lambda: nets.decoder.init(key, z, train=False)))
  return enc, dec


def run_both(nets, enc_vars, dec_vars, x, train):
  """Encoder then decoder; in training mode also returns the updated batch stats."""
  def f(enc_vars, dec_vars, x):
    if not train:
      mean, logvar = nets.encoder.apply(enc_vars, x, train=False)
      return mean, logvar, nets.decoder.apply(dec_vars, mean, train=False), None
    (mean, logvar), enc_upd = nets.encoder.apply(enc_vars, x, train=True,
                                                 mutable=["batch_stats"])
    images, dec_upd = nets.decoder.apply(dec_vars, mean, train=True, mutable=["batch_stats"])
    return mean, logvar, images, (enc_upd, dec_upd)
  return jax.jit(f)(enc_vars, dec_vars, x)


# (network, image shape, width multiplier, encoder type): every network at the
# sizes it takes, at tiny widths; the encoder types rotate over the cases.
TINY_CASES = [
    ("mlp", (8, 8, 1), 1.0, "gaussian"),
    ("mlp", (28, 28, 1), 1.0, "sphere"),
    ("dcgan", (8, 8, 1), 1 / 64, "deterministic"),
    ("dcgan", (28, 28, 1), 1 / 64, "gaussian"),
    ("dcgan", (32, 32, 3), 1 / 64, "sphere"),
    ("dcgan", (64, 64, 3), 1 / 64, "deterministic"),
    ("resnet18", (32, 32, 3), 1 / 32, "sphere"),
    ("resnet6", (64, 64, 3), 1 / 64, "gaussian"),  # 256x256 is checked by shape below
    ("resnet50v2", (64, 64, 3), 1 / 32, "deterministic"),
]


def test_real_init_matches_layout():
  nets = models.build_networks(make_config("mlp", 4, encoder="gaussian"), (8, 8, 1))
  real = nets.encoder.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  filled, _ = init_variables(nets, (8, 8, 1), 4)
  assert jax.tree.map(jnp.shape, real) == jax.tree.map(jnp.shape, filled)


@pytest.mark.slow
@pytest.mark.parametrize("network,image_shape,width,encoder", TINY_CASES)
def test_forward_tiny(network, image_shape, width, encoder):
  latent_dim = 4
  config = make_config(network, latent_dim, width, encoder)
  config.model.logvar_clip = (-0.5, 0.25)
  nets = models.build_networks(config, image_shape)
  enc_vars, dec_vars = init_variables(nets, image_shape, latent_dim)
  x = jax.random.uniform(jax.random.PRNGKey(3), (2,) + image_shape)
  # Evaluation mode only for the cheap nets: compiling the resnets twice is slow.
  for train in ((True, False) if network in ("mlp", "dcgan") else (True,)):
    mean, logvar, images, updates = run_both(nets, enc_vars, dec_vars, x, train)
    assert mean.shape == (2, latent_dim)
    assert images.shape == (2,) + image_shape
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(images))
    assert np.all((images >= 0) & (images <= 1))  # sigmoid output
    if encoder == "gaussian":
      assert logvar.shape == (2, latent_dim)
      assert np.all((logvar >= -0.5) & (logvar <= 0.25))
    else:
      assert logvar is None
    if encoder == "sphere":
      np.testing.assert_allclose(np.linalg.norm(mean, axis=1), 1.0, rtol=1e-5)
    if train and network != "mlp":
      # Training mode moves the running statistics (momentum 0.9) off their init.
      enc_upd, _ = updates
      moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                           enc_upd["batch_stats"], enc_vars["batch_stats"])
      assert max(jax.tree.leaves(moved)) > 0


@pytest.mark.slow
def test_logits_output_is_unbounded_pre_sigmoid():
  config = make_config("dcgan", 4, 1 / 64, output="logits")
  sig_config = make_config("dcgan", 4, 1 / 64, output="sigmoid")
  shape = (8, 8, 1)
  nets, sig_nets = models.build_networks(config, shape), models.build_networks(sig_config, shape)
  _, dec_vars = init_variables(nets, shape, 4)
  z = 10 * jax.random.normal(jax.random.PRNGKey(0), (3, 4))
  logits = sig_nets.decoder.apply(dec_vars, z)  # same params, other output layer
  np.testing.assert_allclose(jax.nn.sigmoid(nets.decoder.apply(dec_vars, z)), logits,
                             rtol=1e-6, atol=1e-7)


# The resnets' kernel-3 and kernel-2 up-convs are proved equal layer by layer
# in test_conv_layers.py; one whole network here.
@pytest.mark.slow
@pytest.mark.parametrize("network,image_shape,width", [("dcgan", (28, 28, 1), 1 / 32)])
def test_phase_and_transpose_networks_are_the_same_function(network, image_shape, width):
  phase = models.build_networks(make_config(network, 4, width, upsample="phase"), image_shape)
  plain = models.build_networks(make_config(network, 4, width, upsample="transpose"),
                                image_shape)
  enc_vars, dec_vars = init_variables(phase, image_shape, 4)
  plain_vars = init_variables(plain, image_shape, 4)
  assert jax.tree.structure((enc_vars, dec_vars)) == jax.tree.structure(plain_vars)
  x = jax.random.uniform(jax.random.PRNGKey(5), (2,) + image_shape)
  got = run_both(phase, enc_vars, dec_vars, x, train=True)
  expected = run_both(plain, enc_vars, dec_vars, x, train=True)
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_axis_name_syncs_batch_stats_under_shard_map():
  """8 devices x 2 examples with axis_name='data' == one device with all 16."""
  image_shape = (8, 8, 1)
  nets = models.build_networks(make_config("dcgan", 4, 1 / 64), image_shape)
  enc_vars, _ = init_variables(nets, image_shape, 4)
  x = jax.random.uniform(jax.random.PRNGKey(7), (16,) + image_shape)
  mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
  synced = nets.encoder.clone(axis_name="data")

  def per_device(variables, x):
    (mean, _), upd = synced.apply(variables, x, train=True, mutable=["batch_stats"])
    return mean, upd
  sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data")),
                                  out_specs=(P("data"), P())))
  mean, upd = sharded(enc_vars, x)
  (mean_ref, _), upd_ref = jax.jit(lambda v, x: nets.encoder.apply(
      v, x, train=True, mutable=["batch_stats"]))(enc_vars, x)
  np.testing.assert_allclose(mean, mean_ref, rtol=1e-4, atol=1e-5)
  for a, b in zip(jax.tree.leaves(upd), jax.tree.leaves(upd_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# Full-size networks (width 1) at the sizes the papers use them, by shape only.
FULL_SIZE_CASES = [
    ("mlp", (28, 28, 1), 8), ("dcgan", (28, 28, 1), 8), ("dcgan", (64, 64, 3), 64),
    ("mlp", (32, 32, 3), 64), ("dcgan", (32, 32, 3), 64), ("resnet18", (32, 32, 3), 128),
    ("resnet18", (64, 64, 3), 128), ("resnet50v2", (64, 64, 3), 64),
    ("resnet6", (256, 256, 3), 128),
]


@pytest.mark.slow
@pytest.mark.parametrize("network,image_shape,latent_dim", FULL_SIZE_CASES)
def test_full_size_shapes(network, image_shape, latent_dim):
  config = make_config(network, latent_dim, 1.0, "gaussian")
  config.model.hidden_sizes = (1024, 1024)
  nets = models.build_networks(config, image_shape)
  batch = 2
  x = jax.ShapeDtypeStruct((batch,) + image_shape, jnp.float32)
  z = jax.ShapeDtypeStruct((batch, latent_dim), jnp.float32)
  key = jax.random.PRNGKey(0)
  enc_vars = jax.eval_shape(lambda x: nets.encoder.init(key, x, train=False), x)
  dec_vars = jax.eval_shape(lambda z: nets.decoder.init(key, z, train=False), z)
  mean, logvar = jax.eval_shape(lambda v, x: nets.encoder.apply(v, x, train=False),
                                enc_vars, x)
  images = jax.eval_shape(lambda v, z: nets.decoder.apply(v, z, train=False), dec_vars, z)
  assert mean.shape == logvar.shape == (batch, latent_dim)
  assert images.shape == (batch,) + image_shape
  count = lambda tree: sum(math.prod(a.shape) for a in jax.tree.leaves(tree))
  enc_params, dec_params = count(enc_vars["params"]), count(dec_vars["params"])
  print(f"{network} {image_shape}: encoder {enc_params:,} params, decoder {dec_params:,}")
  assert enc_params > 0 and dec_params > 0
  if network == "dcgan" and image_shape == (28, 28, 1):
    # Hand count of the WAE paper's MNIST nets (4x4 convs; BN scale+bias).
    convs = [(1, 128), (128, 256), (256, 512), (512, 1024)]
    enc = sum(16 * i * o + o + 2 * o for i, o in convs) + 2 * (2 * 2 * 1024 * 8 + 8)
    dec = (8 * 7 * 7 * 1024 + 7 * 7 * 1024 + 16 * 1024 * 512 + 512 + 2 * 512
           + 16 * 512 * 256 + 256 + 2 * 256 + 16 * 256 * 1 + 1)
    assert (enc_params, dec_params) == (enc, dec)


@pytest.mark.parametrize("network,image_shape,match", [
    ("dcgan", (30, 30, 1), "dcgan"), ("dcgan", (40, 36, 3), "dcgan"),
    ("resnet18", (28, 28, 1), "divisible by 8"), ("resnet6", (96, 96, 3), "divisible by 64")])
def test_unsupported_image_sizes_raise(network, image_shape, match):
  with pytest.raises(ValueError, match=match):
    models.build_networks(make_config(network), image_shape)


@pytest.mark.parametrize("field,value", [("network", "vgg"), ("encoder", "flow"),
                                         ("decoder_output", "gaussian"),
                                         ("upsample", "nearest")])
def test_bad_config_values_raise(field, value):
  config = make_config()
  config.model[field] = value
  with pytest.raises(ValueError, match=f"config.model.{field}"):
    models.build_networks(config, (8, 8, 1))


def test_adversary_adds_log_prior():
  config = make_config(method="wae_gan", prior_var=2.0)
  config.adversary.hidden_sizes = (16, 16)
  config.adversary_log_prior = True
  with_prior = models.build_adversary(config)
  config.adversary_log_prior = False
  without_prior = models.build_adversary(config)
  z = jax.random.normal(jax.random.PRNGKey(0), (5, 4))
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda p, a: _numpy_fill(p, a, rng), jax.eval_shape(lambda: without_prior.init(
          jax.random.PRNGKey(1), z)))
  assert jax.tree.structure(params) == jax.tree.structure(jax.eval_shape(
      lambda: with_prior.init(jax.random.PRNGKey(1), z)))
  base, logits = without_prior.apply(params, z), with_prior.apply(params, z)
  assert logits.shape == (5,)
  np.testing.assert_allclose(logits - base, priors.GaussianPrior(2.0).log_density(z),
                             rtol=1e-5, atol=1e-5)
  config.adversary_log_prior = True
  config.prior = "sphere"
  with pytest.raises(ValueError, match="adversary_log_prior"):
    models.build_adversary(config)


def test_gated_nets_match_the_swae_code_layout():
  from wae_jax.models import gated  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.uniform(size=(2, 9, 9, 3)), jnp.float32)
  layer = gated.GatedConv(4, 3, 2)
  params = layer.init(jax.random.PRNGKey(0), x)["params"]
  # Two separate convs, as the code's two nn.Conv2d (utils/nn.py:81-82).
  assert set(params) == {"h", "g"}
  assert params["h"]["kernel"].shape == params["g"]["kernel"].shape == (3, 3, 3, 4)

  def conv(p):  # one plain conv, torch's padding 1, stride 2
    out = jax.lax.conv_general_dilated(x, p["kernel"], (2, 2), ((1, 1), (1, 1)),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return out + p["bias"]

  expected = conv(params["h"]) * jax.nn.sigmoid(conv(params["g"]))
  np.testing.assert_allclose(layer.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)
  # The code's feature sizes: 6 x 7 x 7 = 294 for 28x28, 6 x 8 x 8 = 384 for 32x32.
  for shape, features in (((28, 28, 1), 294), ((32, 32, 3), 384)):
    encoder = gated.GatedEncoder(40, encoder="gaussian", logvar_clip=(-6.0, 2.0))
    variables = jax.eval_shape(encoder.init, jax.random.PRNGKey(0), jnp.zeros((1,) + shape))
    assert variables["params"]["LatentHead_0"]["logvar"]["kernel"].shape == (features, 40)
    decoder = gated.GatedDecoder(shape)
    dvars = jax.eval_shape(decoder.init, jax.random.PRNGKey(0), jnp.zeros((1, 40)))
    assert jax.eval_shape(decoder.apply, dvars, jnp.zeros((3, 40))).shape == (3,) + shape
    assert "bias" not in dvars["params"]["Conv_0"]  # the 1x1 output conv has none
  with pytest.raises(ValueError, match="divisible by 4"):
    gated.check_gated_image_shape((30, 30, 1))
