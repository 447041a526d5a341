"""Statistical and limiting properties of wae_jax.losses, dtypes and transforms.

References here are independent of the implementation: unbiasedness of the
MMD U-statistic, exact 1-D optimal transport, scipy's optimal assignment, a
Monte-Carlo estimate of the smoothed Cramér-Wold distance, and finite
gradients for bfloat16 inputs.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from wae_jax import losses


def _normal(seed, shape, scale=1.0, shift=0.0):
  return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


# --------------------------------------------------------------------- MMD


_NUM_DRAWS = 2000
# Independent (16, 4) sample pairs from N(0, I), one pair per draw. numpy
# sampling keeps the compiled programs small.
_DRAWS_Q = _normal(0, (_NUM_DRAWS, 16, 4))
_DRAWS_P = _normal(1, (_NUM_DRAWS, 16, 4))


@functools.partial(jax.jit, static_argnames=("kernel",))
def _mmd_over_draws(z_q, z_p, kernel, bandwidth=None):
  """(R, n, d), (R, m, d) -> (R,) MMD of each draw, vmapped."""
  return jax.vmap(lambda q, p: losses.mmd_penalty(q, p, kernel=kernel, bandwidth=bandwidth))(
      z_q, z_p)


@pytest.mark.parametrize("kernel,bandwidth", [("imq", None), ("rbf", 2.0)])
def test_mmd_is_unbiased_and_grows_with_shift(kernel, bandwidth):
  values = np.asarray(_mmd_over_draws(_DRAWS_Q, _DRAWS_P, kernel, bandwidth), np.float64)
  standard_error = values.std(ddof=1) / math.sqrt(values.size)
  assert abs(values.mean()) < 3.0 * standard_error
  # Same-distribution draws are often negative: the estimator is not clipped.
  assert (values < 0).mean() > 0.2
  small = np.asarray(_mmd_over_draws(_DRAWS_Q + 0.5, _DRAWS_P, kernel, bandwidth)).mean()
  large = np.asarray(_mmd_over_draws(_DRAWS_Q + 1.0, _DRAWS_P, kernel, bandwidth)).mean()
  assert small > 10.0 * standard_error
  assert large > 2.0 * small


def test_mmd_rbf_heuristic_grows_with_shift():
  near = np.asarray(_mmd_over_draws(_DRAWS_Q[:200], _DRAWS_P[:200], "rbf")).mean()
  far = np.asarray(_mmd_over_draws(_DRAWS_Q[:200] + 1.0, _DRAWS_P[:200], "rbf")).mean()
  assert far > near + 0.1


def test_mmd_base_scale_is_passed_in_scales():
  z_q, z_p = _normal(2, (10, 3), shift=0.5), _normal(3, (10, 3))
  scales = np.asarray(losses.DEFAULT_IMQ_SCALES)
  # C = 2 d prior_var s: doubling the base scale equals doubling prior_var.
  scaled, wider_prior = jax.jit(lambda q, p: (
      losses.mmd_penalty(q, p, scales=2.0 * scales),
      losses.mmd_penalty(q, p, prior_var=2.0)))(z_q, z_p)
  np.testing.assert_allclose(scaled, wider_prior, rtol=1e-6)


# ------------------------------------------------------------------ sliced


def test_sliced_wasserstein_in_1d_is_exact_w2():
  x, y = _normal(10, (50, 1)), _normal(11, (50, 1), 2.0, 1.0)
  exact = np.mean((np.sort(x[:, 0]).astype(np.float64) - np.sort(y[:, 0])) ** 2)
  sw = jax.jit(functools.partial(losses.sliced_wasserstein, num_projections=5))
  # In 1-D every unit direction is +1 or -1 and W2 is invariant to the sign.
  for seed in range(3):
    np.testing.assert_allclose(sw(x, y, jax.random.PRNGKey(seed)), exact, rtol=1e-5)


def test_sliced_wasserstein_1d_unequal_sizes_is_exact_w2():
  # Exact W2^2 between 2 and 3 atoms, by the quantile-function integral:
  # x = {0, 1}: F^-1 = 0 on (0, 1/2], 1 on (1/2, 1];
  # y = {0, 3, 6}: G^-1 = 0, 3, 6 on thirds.
  # Pieces (0,1/3]: 0, (1/3,1/2]: 9 * 1/6, (1/2,2/3]: 4 * 1/6, (2/3,1]: 25 * 1/3.
  want = 9.0 / 6 + 4.0 / 6 + 25.0 / 3
  x = np.array([[1.0], [0.0]], np.float32)
  y = np.array([[6.0], [0.0], [3.0]], np.float32)
  np.testing.assert_allclose(losses.sliced_wasserstein(x, y, jax.random.PRNGKey(0), 3), want,
                             rtol=1e-6)


def test_sliced_wasserstein_vmaps_over_keys_and_vanishes_on_equal_samples():
  x, y = _normal(12, (32, 4)), _normal(13, (32, 4), shift=1.0)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  per_key_fn = jax.jit(jax.vmap(lambda a, b, k: losses.sliced_wasserstein(a, b, k, 8),
                                in_axes=(None, None, 0)))
  per_key = per_key_fn(x, y, keys)
  assert per_key.shape == (4,) and len(set(np.asarray(per_key).tolist())) == 4
  assert float(jnp.max(per_key_fn(x, x[::-1], keys))) < 1e-10


# ---------------------------------------------------------------- sinkhorn


def test_sinkhorn_small_epsilon_approaches_assignment_cost_and_gradient():
  x, y = _normal(20, (7, 2)), _normal(21, (7, 2), shift=1.0)
  cost = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
  rows, cols = optimize.linear_sum_assignment(cost)
  exact = cost[rows, cols].mean()
  divergence_and_grad = jax.jit(jax.value_and_grad(losses.sinkhorn_divergence),
                                static_argnames="num_iters")
  value, grad = divergence_and_grad(x, y, 0.01, num_iters=1000)
  coarse, _ = divergence_and_grad(x, y, 0.3, num_iters=1000)
  assert abs(value - exact) < 1e-3 * exact
  assert abs(coarse - exact) > 10 * abs(value - exact)
  # The gradient of the assignment cost (1/n) sum_i ||x_i - y_sigma(i)||^2.
  exact_grad = np.zeros_like(cost[:, :2])
  exact_grad[rows] = 2.0 * (x[rows] - y[cols]) / len(x)
  np.testing.assert_allclose(grad, exact_grad, atol=2e-3)


def test_sinkhorn_is_zero_on_identical_samples_and_positive_otherwise():
  x = _normal(22, (9, 3))
  divergence = jax.jit(lambda a, b: losses.sinkhorn_divergence(a, b, 0.1, 50))
  np.testing.assert_allclose(divergence(x, x), 0.0, atol=1e-6)
  assert divergence(x, x + 0.5) > 0.1


# ------------------------------------------------------------- Cramér-Wold


def _gaussian_pdf(t, var):
  return np.exp(-t * t / (2.0 * var)) / np.sqrt(2.0 * np.pi * var)


def _smoothed_l2_per_direction(projections, gamma):
  """||(v^T Z) * N(0, gamma) - N(0, 1 + gamma)||^2 for each column of (n, L) projections.

  With int N(t; a, s) N(t; b, r) dt = N(a - b; 0, s + r).
  """
  diffs = projections[:, None, :] - projections[None, :, :]
  within = _gaussian_pdf(diffs, 2.0 * gamma).mean(axis=(0, 1))
  cross = _gaussian_pdf(projections, 1.0 + 2.0 * gamma).mean(axis=0)
  return within + _gaussian_pdf(0.0, 2.0 + 2.0 * gamma) - 2.0 * cross


def test_cramer_wold_agrees_with_monte_carlo_over_directions():
  rng = np.random.default_rng(30)
  n, dim = 32, 64
  z = (0.5 * rng.normal(size=(n, dim))).astype(np.float32)
  gamma = (4.0 / (3.0 * n)) ** 0.4
  directions = rng.normal(size=(8_000, dim))
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  projections = z.astype(np.float64) @ directions.T                  # (n, L)

  # The Gaussian-product shortcut equals brute-force integration on a grid.
  grid = np.linspace(-12.0, 12.0, 24_001)
  for column in range(2):
    smoothed = _gaussian_pdf(grid[:, None] - projections[None, :, column], gamma).mean(axis=1)
    brute = np.trapezoid((smoothed - _gaussian_pdf(grid, 1.0 + gamma)) ** 2, grid)
    np.testing.assert_allclose(
        _smoothed_l2_per_direction(projections[:, column:column + 1], gamma)[0], brute, rtol=1e-6)

  per_direction = np.concatenate([
      _smoothed_l2_per_direction(projections[:, i:i + 2000], gamma) for i in range(0, 8_000, 2000)])
  monte_carlo = per_direction.mean()
  standard_error = per_direction.std(ddof=1) / math.sqrt(per_direction.size)
  closed_form = float(losses.cramer_wold_normality(z))
  # Tolerance: ~5 standard errors (~1.5%) plus the phi_D approximation
  # (~0.5% here, at D = 64); a missing diagonal (~10%) or a gamma off by 2x
  # (~50%) would fail.
  assert standard_error < 0.005 * monte_carlo
  np.testing.assert_allclose(closed_form, monte_carlo, rtol=0.03)


def test_cramer_wold_is_small_for_normal_samples_and_vmaps():
  normal = _normal(31, (3, 256, 8))
  shifted = normal + 1.0
  batched = jax.jit(jax.vmap(losses.cramer_wold_normality))
  near, far = np.asarray(batched(normal)), np.asarray(batched(shifted))
  np.testing.assert_allclose(near[1], losses.cramer_wold_normality(normal[1]), rtol=1e-6)
  assert np.all(far > 5 * near)


# --------------------------------------------- dtypes and gradients, all losses


def _cases():
  """(name, loss function of float arrays, float32 inputs) for every loss."""
  z8 = _normal(40, (8, 4))
  unit = lambda seed, shape: _normal(seed, shape) / np.linalg.norm(
      _normal(seed, shape), axis=-1, keepdims=True)
  images = np.random.default_rng(41).uniform(size=(3, 4, 4, 1)).astype(np.float32)
  key = jax.random.PRNGKey(0)
  return [
      ("mmd_imq", losses.mmd_penalty, (z8, _normal(42, (8, 4)))),
      ("mmd_rbf", functools.partial(losses.mmd_penalty, kernel="rbf"), (z8, _normal(42, (8, 4)))),
      ("moca", lambda q, k, queue: losses.moca_loss(q, k, queue, 0.1),
       (unit(43, (4, 8)), unit(44, (4, 8)), unit(45, (16, 8)))),
      ("entropy", lambda z, keys: losses.contrastive_entropy(z, keys, 0.1),
       (unit(46, (4, 8)), unit(47, (16, 8)))),
      ("adversary", losses.adversary_loss, (_normal(48, (6,)), _normal(49, (6,)))),
      ("encoder_adversarial", losses.encoder_adversarial_loss, (_normal(50, (6,)),)),
      ("log_density_sum", lambda z: jnp.sum(losses.gaussian_log_density(z, 2.0)), (z8,)),
      ("kl", losses.gaussian_kl, (z8, _normal(51, (8, 4), 0.5))),
      ("bernoulli", losses.bernoulli_nll, (_normal(52, images.shape), images)),
      ("gaussian_nll", lambda m, x: losses.gaussian_nll(m, x, 0.5), (_normal(53, images.shape), images)),
      ("squared_error", losses.squared_error, (_normal(54, images.shape), images)),
      ("sliced", lambda x, y: losses.sliced_wasserstein(x, y, key, 8), (z8, _normal(55, (6, 4)))),
      ("sinkhorn", lambda x, y: losses.sinkhorn_divergence(x, y, 0.5, 10), (z8, _normal(56, (8, 4)))),
      ("cramer_wold", losses.cramer_wold_normality, (z8,)),
  ]


@pytest.mark.slow
@pytest.mark.parametrize("name,loss,args", _cases(), ids=[c[0] for c in _cases()])
def test_bfloat16_inputs_give_float32_and_finite_gradients(name, loss, args):
  del name
  bf16_args = tuple(jnp.asarray(a, jnp.bfloat16) for a in args)
  rounded = tuple(a.astype(jnp.float32) for a in bf16_args)
  # One compilation: bf16 value and gradient, and the value on the bf16-rounded
  # values fed as float32.
  (value, grad), value_f32 = jax.jit(
      lambda bf, f32: (jax.value_and_grad(loss)(*bf), loss(*f32)))(bf16_args, rounded)
  assert value.shape == () and value.dtype == jnp.float32
  assert grad.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(grad.astype(jnp.float32))))
  # Computed in float32: identical to the float32 computation.
  np.testing.assert_allclose(value, value_f32, rtol=1e-6)


def test_gaussian_log_density_bfloat16_gives_float32_vector():
  out = losses.gaussian_log_density(jnp.ones((5, 3), jnp.bfloat16), 1.0)
  assert out.shape == (5,) and out.dtype == jnp.float32


def test_cosine_momentum_is_float32_under_jit_with_traced_step():
  momentum = jax.jit(losses.cosine_momentum)(jnp.int32(25), 100, 0.9)
  assert momentum.dtype == jnp.float32
  np.testing.assert_allclose(momentum, 1 - 0.1 * (math.cos(math.pi / 4) + 1) / 2, rtol=1e-6)
