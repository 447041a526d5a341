"""The stride-1 rewrites equal flax's stride-2 Conv / ConvTranspose, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax.models import conv_layers


def _random_variables(rng, kernel_shape, dtype):
  return {"params": {"kernel": jnp.asarray(rng.normal(size=kernel_shape), dtype),
                     "bias": jnp.asarray(rng.normal(size=kernel_shape[-1:]), dtype)}}


def _outputs_and_grads(module, variables, x, cotangent):
  """y and the gradients of <y, cotangent> w.r.t. kernel, bias and x."""
  def scalar(v, x):
    return jnp.sum(module.apply(v, x) * cotangent)
  grad_v, grad_x = jax.grad(scalar, argnums=(0, 1))(variables, x)
  return [module.apply(variables, x), grad_v["params"]["kernel"], grad_v["params"]["bias"],
          grad_x]


def _compare(ours, flax_layer, kernel_shape, x_shape, out_shape_fn, dtype, rng):
  """Ours vs flax with identical weights: float64 to 1e-12, float32 to 1e-6 (relative)."""
  variables = _random_variables(rng, kernel_shape, dtype)
  x = jnp.asarray(rng.normal(size=x_shape), dtype)
  y_shape = out_shape_fn(x_shape)
  cotangent = jnp.asarray(rng.normal(size=y_shape), dtype)
  both = jax.jit(lambda v, x, c: (_outputs_and_grads(ours, v, x, c),
                                  _outputs_and_grads(flax_layer, v, x, c)))
  with jax.default_matmul_precision("highest"):  # GPUs default to tf32 for float32 dots
    got, expected = both(variables, x, cotangent)
  assert got[0].shape == y_shape == expected[0].shape
  for g, e in zip(got, expected):
    assert g.dtype == e.dtype == dtype
    scale = float(jnp.max(jnp.abs(e)))
    err = float(jnp.max(jnp.abs(g - e)))
    assert err <= (1e-12 if dtype == jnp.float64 else 1e-6) * max(scale, 1.0), (err, scale)


# Kernels 4 and 5: the dcgan decoders; 3 and 2: the resnet decoders. Odd and
# non-square sizes exercise the padding bookkeeping.
TRANSPOSE_CASES = [(4, (2, 7, 5, 3)), (5, (2, 6, 6, 3)), (3, (2, 4, 3, 3)), (2, (1, 3, 4, 2))]
CONV_CASES = [(4, (2, 7, 7, 3)), (5, (2, 9, 6, 3)), (3, (2, 8, 8, 3)), (1, (1, 8, 7, 2))]


@pytest.mark.slow
@pytest.mark.parametrize("kernel_size,x_shape", TRANSPOSE_CASES)
def test_phase_conv_transpose_equals_flax(kernel_size, x_shape):
  rng = np.random.default_rng(kernel_size)
  out_features = 4
  kernel_shape = (kernel_size, kernel_size, x_shape[-1], out_features)
  flax_layer = nn.ConvTranspose(out_features, (kernel_size, kernel_size), strides=(2, 2),
                                padding="SAME")
  out_shape_fn = lambda s: (s[0], 2 * s[1], 2 * s[2], out_features)
  ours = conv_layers.ConvTranspose2x(out_features, kernel_size, phase=True)
  for dtype in ("float64", "float32"):
    with jax.enable_x64(dtype == "float64"):
      _compare(ours, flax_layer, kernel_shape, x_shape, out_shape_fn, jnp.dtype(dtype), rng)


@pytest.mark.slow
@pytest.mark.parametrize("kernel_size,x_shape", CONV_CASES)
def test_space_to_depth_conv_equals_flax(kernel_size, x_shape):
  rng = np.random.default_rng(10 + kernel_size)
  out_features = 5
  kernel_shape = (kernel_size, kernel_size, x_shape[-1], out_features)
  flax_layer = nn.Conv(out_features, (kernel_size, kernel_size), strides=(2, 2), padding="SAME")
  out_shape_fn = lambda s: (s[0], -(-s[1] // 2), -(-s[2] // 2), out_features)
  ours = conv_layers.Conv2x(out_features, kernel_size, space_to_depth=True)
  for dtype in ("float64", "float32"):
    with jax.enable_x64(dtype == "float64"):
      _compare(ours, flax_layer, kernel_shape, x_shape, out_shape_fn, jnp.dtype(dtype), rng)


# (kernel, out features, x shape): even kernels pad less in front than behind;
# every case has kh * kw * O <= C, where the decoders use the rewrite, and the
# last three 2 * kh * kw * O <= C, where its forward pass is a matrix product.
SAME_CASES = [(4, 1, (2, 7, 5, 16)), (3, 2, (2, 6, 6, 18)), (5, 1, (1, 5, 8, 25)),
              (2, 3, (2, 4, 3, 12)), (4, 1, (2, 7, 5, 32)), (3, 2, (1, 6, 7, 40)),
              (2, 3, (2, 3, 4, 24))]


@pytest.mark.slow
@pytest.mark.parametrize("kernel_size,out_features,x_shape", SAME_CASES)
def test_matmul_conv_equals_flax(kernel_size, out_features, x_shape):
  rng = np.random.default_rng(20 + kernel_size)
  kernel_shape = (kernel_size, kernel_size, x_shape[-1], out_features)
  assert conv_layers.matmul_pays(kernel_shape)
  flax_layer = nn.Conv(out_features, (kernel_size, kernel_size), padding="SAME")
  out_shape_fn = lambda s: s[:3] + (out_features,)
  ours = conv_layers.ConvSame(out_features, kernel_size, by_matmul=True)
  for dtype in ("float64", "float32"):
    with jax.enable_x64(dtype == "float64"):
      _compare(ours, flax_layer, kernel_shape, x_shape, out_shape_fn, jnp.dtype(dtype), rng)


def test_matmul_only_where_it_pays():
  assert conv_layers.matmul_pays((4, 4, 32, 1))      # WAE MNIST decoder, 1/8 width
  assert not conv_layers.matmul_pays((5, 5, 16, 3))  # CelebA decoder, 1/8 width
  # 32 channels: 4 * 4 * 1 (rewrite, forward a matrix product), 4 * 4 * 2
  # (rewrite, XLA's forward conv), 4 * 4 * 3 (XLA's conv and its autodiff).
  for features, uses_rewrite, forward_matmul in ((1, True, True), (2, True, False),
                                                 (3, False, False)):
    layer = conv_layers.ConvSame(features, 4, by_matmul=True)
    x = jnp.zeros((1, 6, 6, 32))
    jaxpr = str(jax.make_jaxpr(layer.apply)(layer.init(jax.random.PRNGKey(0), x), x))
    assert ("custom_vjp_call" in jaxpr) == uses_rewrite
    assert ("conv_general_dilated" not in jaxpr) == forward_matmul


@pytest.mark.slow
@pytest.mark.parametrize("replicated_params", [True, False])
def test_custom_backward_under_shard_map(replicated_params):
  """The custom backward passes inside shard_map on 4 fake devices (batch
  sharded) give the single-device flax gradients, with the kernels entering
  replicated (JAX sums their gradients over devices) or cast to per-device
  and averaged as the trainer does."""
  from jax.sharding import Mesh, PartitionSpec as P
  rng = np.random.default_rng(3)
  mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))
  ours = (conv_layers.Conv2x(5, 4, space_to_depth=True),
          conv_layers.ConvTranspose2x(4, 4, phase=True),
          conv_layers.ConvSame(1, 2, by_matmul=True))
  theirs = (nn.Conv(5, (4, 4), strides=(2, 2), padding="SAME"),
            nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding="SAME"),
            nn.Conv(1, (2, 2), padding="SAME"))
  assert conv_layers.matmul_pays((2, 2, 4, 1))
  with jax.enable_x64(True):
    variables = [_random_variables(rng, (4, 4, 3, 5), jnp.float64),
                 _random_variables(rng, (4, 4, 5, 4), jnp.float64),
                 _random_variables(rng, (2, 2, 4, 1), jnp.float64)]
    x = jnp.asarray(rng.normal(size=(8, 6, 6, 3)), jnp.float64)
    cotangent = jnp.asarray(rng.normal(size=(8, 6, 6, 1)), jnp.float64)

    def loss(layers, variables, x, cotangent):
      h = layers[0].apply(variables[0], x)
      h = layers[1].apply(variables[1], h)
      return jnp.sum(layers[2].apply(variables[2], h) * cotangent)

    def per_device(variables, x, cotangent):
      if not replicated_params:
        variables = jax.lax.pcast(variables, "data", to="varying")
      grads = jax.grad(loss, argnums=(1, 2))(ours, variables, x, cotangent)
      if replicated_params:
        return grads
      return jax.lax.psum(grads[0], "data"), grads[1]

    sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                    out_specs=(P(), P("data"))))
    got = sharded(variables, x, cotangent)
    expected = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)(
        theirs, variables, x, cotangent)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
      np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=0,
                                 atol=1e-12 * max(1.0, float(jnp.max(jnp.abs(e)))))


def test_plain_mode_is_the_flax_layer():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 5, 5, 3)), jnp.float32)
  for ours, theirs, shape in [
      (conv_layers.ConvTranspose2x(4, 4, phase=False),
       nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding="SAME"), (4, 4, 3, 4)),
      (conv_layers.Conv2x(4, 5, space_to_depth=False),
       nn.Conv(4, (5, 5), strides=(2, 2), padding="SAME"), (5, 5, 3, 4))]:
    variables = _random_variables(rng, shape, jnp.float32)
    np.testing.assert_array_equal(ours.apply(variables, x), theirs.apply(variables, x))


def test_transposed_conv_matches_numpy_scatter():
  # Independent of lax: a stride-2 transposed conv scatters x[m] * V[t] to
  # full-output position 2m + t. Flax (transpose_kernel=False) uses the
  # spatially flipped kernel V = W[::-1, ::-1], and 'SAME' keeps the 2H outputs
  # from k - 1 - ceil(k / 2) on.
  rng = np.random.default_rng(0)
  for k in (4, 5):
    x = rng.normal(size=(1, 3, 4, 2))
    w = rng.normal(size=(k, k, 2, 3))
    flipped = w[::-1, ::-1]
    full = np.zeros((1, 2 * 3 + k, 2 * 4 + k, 3))
    for m in range(3):
      for n in range(4):
        full[0, 2 * m:2 * m + k, 2 * n:2 * n + k] += np.einsum("c,ijco->ijo", x[0, m, n],
                                                               flipped)
    start = k - 1 - -(-k // 2)
    expected = full[:, start:start + 6, start:start + 8]
    got = conv_layers.conv_transpose_phase(jnp.asarray(x, jnp.float32),
                                           jnp.asarray(w, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_params_have_flax_layout():
  x = jnp.zeros((1, 4, 4, 3))
  for ours, theirs in [
      (conv_layers.ConvTranspose2x(6, 4, phase=True),
       nn.ConvTranspose(6, (4, 4), strides=(2, 2), padding="SAME")),
      (conv_layers.Conv2x(6, 5, space_to_depth=True),
       nn.Conv(6, (5, 5), strides=(2, 2), padding="SAME")),
      (conv_layers.ConvSame(1, 3, by_matmul=True), nn.Conv(1, (3, 3), padding="SAME"))]:
    key = jax.random.PRNGKey(0)
    p_ours, p_theirs = jax.jit(ours.init)(key, x), jax.jit(theirs.init)(key, x)
    assert jax.tree.structure(p_ours) == jax.tree.structure(p_theirs)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_theirs)):
      np.testing.assert_array_equal(a, b)  # same shapes, names and initialisers


def test_upsample_choice():
  assert conv_layers.use_stride1_rewrite("phase")
  assert not conv_layers.use_stride1_rewrite("transpose")
  assert conv_layers.use_stride1_rewrite("auto") == (jax.default_backend() == "cpu")
  with pytest.raises(ValueError, match="config.model.upsample"):
    conv_layers.use_stride1_rewrite("pixelshuffle")
