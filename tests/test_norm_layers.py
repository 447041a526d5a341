"""BatchNormReLU equals relu(nn.BatchNorm): values, batch statistics, gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax.models.norm_layers import BatchNormReLU


class FlaxBatchNormReLU(nn.Module):
  """The reference: what the dcgan nets computed before (layers.batch_norm + relu)."""
  use_running_average: bool
  axis_name: str = None
  dtype: object = None

  @nn.compact
  def __call__(self, x):
    return nn.relu(nn.BatchNorm(use_running_average=self.use_running_average, momentum=0.9,
                                epsilon=1e-5, axis_name=self.axis_name, dtype=self.dtype,
                                name="BatchNorm_0")(x))


def ours(use_running_average, axis_name=None, dtype=None):
  """BatchNormReLU under the same name inside a parent, as the dcgan nets use it."""
  class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
      return BatchNormReLU(use_running_average=use_running_average, momentum=0.9, epsilon=1e-5,
                           axis_name=axis_name, dtype=dtype, name="BatchNorm_0")(x)
  return Net()


def _random_variables(rng, channels, dtype):
  """Scales of both signs (so the ReLU cuts on either side) and running stats
  away from their initial values."""
  vec = lambda loc, scale: jnp.asarray(loc + scale * rng.normal(size=(channels,)), dtype)
  return {"params": {"BatchNorm_0": {"scale": vec(0.0, 1.5), "bias": vec(0.0, 0.5)}},
          "batch_stats": {"BatchNorm_0": {"mean": vec(0.0, 1.0),
                                          "var": jnp.abs(vec(1.0, 0.5)) + 0.1}}}


def _train_outputs_and_grads(module, variables, x, cotangent):
  """y, the updated batch stats, and the gradients of <y, cotangent> w.r.t. params and x."""
  def scalar(params, x):
    y, updates = module.apply({**variables, "params": params}, x, mutable=["batch_stats"])
    return jnp.sum(y * cotangent), (y, updates)
  (_, (y, updates)), (d_params, d_x) = jax.value_and_grad(scalar, argnums=(0, 1), has_aux=True)(
      variables["params"], x)
  return y, updates, d_params, d_x


def _assert_close(got, expected, dtype):
  """float64 to 1e-12, float32 to 1e-5 of each array's largest entry: the
  statistics and parameter gradients are sums over the M = 120-360 rows taken
  in another order than flax's, whose float32 results may differ by up to
  M 2^-24 (2e-5 at M = 360) of the sum of the terms' magnitudes."""
  tolerance = 1e-12 if dtype == jnp.float64 else 1e-5
  for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert g.shape == e.shape and g.dtype == e.dtype
    scale = max(float(jnp.max(jnp.abs(e))), 1.0)
    err = float(jnp.max(jnp.abs(g - e)))
    assert err <= tolerance * scale, (err, scale)


@pytest.mark.parametrize("x_shape", [(6, 5, 4, 3), (40, 7)])
def test_training_equals_flax(x_shape):
  rng = np.random.default_rng(0)
  for dtype in ("float64", "float32"):
    with jax.enable_x64(dtype == "float64"):
      variables = _random_variables(rng, x_shape[-1], dtype)
      # Channel means far from zero, as a conv's output can have.
      offset = 3.0 * rng.normal(size=x_shape[-1:])
      x = jnp.asarray(offset + rng.normal(size=x_shape), dtype)
      cotangent = jnp.asarray(rng.normal(size=x_shape), dtype)
      both = jax.jit(lambda v, x, c: (
          _train_outputs_and_grads(ours(False), v, x, c),
          _train_outputs_and_grads(FlaxBatchNormReLU(False), v, x, c)))
      got, expected = both(variables, x, cotangent)
      assert "custom_vjp_call" in str(jax.make_jaxpr(
          lambda v: ours(False).apply(v, x, mutable=["batch_stats"]))(variables))
      _assert_close(got, expected, jnp.dtype(dtype))


def test_relu_cut_and_zero_variance_channels():
  """Exact zeros before the ReLU (its derivative is 0 there, as jax's relu)
  and a constant channel (variance clipped at 0) give flax's gradients."""
  with jax.enable_x64(True):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 3))
    x[:, 1] = 2.5  # constant channel
    x = jnp.asarray(x)
    variables = _random_variables(rng, 3, "float64")
    variables["params"]["BatchNorm_0"]["bias"] = jnp.zeros(3)  # u = 0 on the constant channel
    cotangent = jnp.asarray(rng.normal(size=x.shape))
    got = _train_outputs_and_grads(ours(False), variables, x, cotangent)
    expected = _train_outputs_and_grads(FlaxBatchNormReLU(False), variables, x, cotangent)
    _assert_close(got, expected, jnp.float64)


def test_evaluation_initialisation_and_bfloat16_are_flax():
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(size=(4, 3, 3, 5)), jnp.float32)
  # Same variable tree and initial values.
  init_ours = ours(False).init(jax.random.PRNGKey(0), x)
  init_flax = FlaxBatchNormReLU(False).init(jax.random.PRNGKey(0), x)
  assert jax.tree.structure(init_ours) == jax.tree.structure(init_flax)
  for a, b in zip(jax.tree.leaves(init_ours), jax.tree.leaves(init_flax)):
    np.testing.assert_array_equal(a, b)
  variables = _random_variables(rng, 5, "float32")
  # Evaluation with the running averages: bit for bit.
  np.testing.assert_array_equal(ours(True).apply(variables, x),
                                FlaxBatchNormReLU(True).apply(variables, x))
  # bfloat16 compute runs flax's own module: bit for bit, stats included.
  x16 = x.astype(jnp.bfloat16)
  got = ours(False, dtype=jnp.bfloat16).apply(variables, x16, mutable=["batch_stats"])
  expected = FlaxBatchNormReLU(False, dtype=jnp.bfloat16).apply(variables, x16,
                                                                 mutable=["batch_stats"])
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("replicated_params", [True, False])
def test_synced_statistics_under_shard_map(replicated_params):
  """4 fake devices x 6 rows with axis_name='data' == one device with all 24:
  outputs, batch stats and gradients (params entering replicated, so JAX sums
  their gradients over devices, or cast to per-device and summed by hand)."""
  from jax.sharding import Mesh, PartitionSpec as P
  rng = np.random.default_rng(3)
  mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))
  with jax.enable_x64(True):
    variables = _random_variables(rng, 5, "float64")
    x = jnp.asarray(2.0 + rng.normal(size=(24, 2, 2, 5)))
    cotangent = jnp.asarray(rng.normal(size=x.shape))

    def per_device(variables, x, cotangent):
      params = variables["params"]
      if not replicated_params:
        params = jax.lax.pcast(params, "data", to="varying")
      y, updates, d_params, d_x = _train_outputs_and_grads(
          ours(False, axis_name="data"), {**variables, "params": params}, x, cotangent)
      if not replicated_params:
        d_params = jax.lax.psum(d_params, "data")
      return y, updates, d_params, d_x

    sharded = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P("data"), P("data")),
                                    out_specs=(P("data"), P(), P(), P("data"))))
    got = sharded(variables, x, cotangent)
    expected = jax.jit(_train_outputs_and_grads, static_argnums=0)(
        FlaxBatchNormReLU(False), variables, x, cotangent)
    _assert_close(got, expected, jnp.float64)
