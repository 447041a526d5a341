"""Sliced Wasserstein distance (SWAE, Kolouri et al. 2019)."""

import jax
import jax.numpy as jnp
import numpy as np

from wae_jax.losses import _util


def sample_unit_directions(key: jax.Array, num_projections: int, dim: int) -> jax.Array:
  """Directions uniform on the unit sphere S^{dim-1}: normalised Gaussians.

  Args:
    key: PRNG key.
    num_projections: L, number of directions (static).
    dim: d, the ambient dimension (static).

  Returns:
    (L, d) float32 array with unit rows.
  """
  directions = jax.random.normal(key, (num_projections, dim), jnp.float32)
  return directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)


def _quantile_grid(n: int, m: int):
  """Interval weights and quantile indices for W2 between n- and m-atom samples.

  The quantile functions of two uniform empirical measures are step functions
  with jumps at i/n and j/m. On the merged grid 0 = t_0 <= t_1 <= ... <= 1
  both are constant on each interval, so
    W2^2 = int_0^1 (F^-1(t) - G^-1(t))^2 dt = sum_k w_k (x_(a_k) - y_(b_k))^2
  exactly, with w_k = t_k - t_{k-1} and a_k, b_k the sorted-order indices at
  the interval's midpoint. Computed in numpy at trace time (sizes are static).

  Returns:
    weights (n+m,), x_index (n+m,), y_index (n+m,).
  """
  breaks = np.sort(np.concatenate([np.arange(1, n + 1) / n, np.arange(1, m + 1) / m]))
  lower = np.concatenate([[0.0], breaks[:-1]])
  weights = breaks - lower
  mid = (breaks + lower) / 2.0
  x_index = np.minimum(np.floor(mid * n).astype(np.int32), n - 1)
  y_index = np.minimum(np.floor(mid * m).astype(np.int32), m - 1)
  return weights, x_index, y_index


def sliced_wasserstein(x: jax.Array,
                       y: jax.Array,
                       key: jax.Array,
                       num_projections: int = 64) -> jax.Array:
  """Monte-Carlo sliced squared 2-Wasserstein distance between two samples.

    SW_2^2(x, y) ~= (1/L) sum_l W2^2(<theta_l, x>, <theta_l, y>)

  with theta_l uniform unit directions (`sample_unit_directions`). Each 1-D
  W2^2 between empirical measures is exact: project, sort, and
    n == m: (1/n) sum_i (x_(i) - y_(i))^2  (squared differences of sorted values);
    n != m: the integral of the squared difference of the two empirical
      quantile functions over [0, 1] (exact, on the merged grid of jumps
      i/n and j/m), which equals the equal-size formula after repeating each
      x atom m/g times and each y atom n/g times (g = gcd(n, m)).
  Returns the squared distance (no square root), like the SWAE penalty.

  Args:
    x: (n, d) first sample, e.g. codes. float32 or bfloat16 (computed in float32).
    y: (m, d) second sample, e.g. prior draws. n and m may differ.
    key: PRNG key for the directions.
    num_projections: L >= 1 (static).

  Returns:
    float32 scalar.
  """
  _util.check_rank("x", x, 2, "(n, d)")
  _util.check_rank("y", y, 2, "(m, d)")
  _util.check_same_dim("x", x, "y", y)
  if not isinstance(num_projections, (int, np.integer)) or num_projections < 1:
    raise ValueError(
        f"num_projections must be a positive int, got {num_projections!r}.")
  n, dim = x.shape
  m = y.shape[0]
  if n < 1 or m < 1:
    raise ValueError(f"sliced_wasserstein needs non-empty samples, got {n} and {m} rows.")
  x = _util.as_float(x)
  y = _util.as_float(y).astype(x.dtype)
  directions = sample_unit_directions(key, num_projections, dim).astype(x.dtype)
  highest = jax.lax.Precision.HIGHEST
  x_sorted = jnp.sort(jnp.matmul(x, directions.T, precision=highest), axis=0)  # (n, L)
  y_sorted = jnp.sort(jnp.matmul(y, directions.T, precision=highest), axis=0)  # (m, L)
  if n == m:
    return jnp.mean(jnp.square(x_sorted - y_sorted))
  weights, x_index, y_index = _quantile_grid(n, m)
  diffs = x_sorted[x_index] - y_sorted[y_index]                           # (n+m, L)
  per_direction = jnp.sum(jnp.asarray(weights, x.dtype)[:, None] * jnp.square(diffs), axis=0)
  return jnp.mean(per_direction)
