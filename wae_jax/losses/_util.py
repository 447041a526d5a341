"""Helpers shared by the loss modules (not part of the public API)."""

import jax
import jax.numpy as jnp


def as_float(x: jax.Array) -> jax.Array:
  """Casts an array to at least float32: bfloat16/float16/int -> float32.

  float64 stays float64 so that gradients can be checked in double precision
  under `jax.enable_x64(True)`.
  """
  x = jnp.asarray(x)
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def check_rank(name: str, x: jax.Array, rank: int, shape_doc: str) -> None:
  """Raises a ValueError if `x` does not have `rank` dimensions."""
  if jnp.ndim(x) != rank:
    raise ValueError(
        f"{name} must have shape {shape_doc} ({rank} dimensions), got shape "
        f"{tuple(jnp.shape(x))}; reshape it before calling the loss.")


def check_same_dim(name_a: str, a: jax.Array, name_b: str, b: jax.Array) -> None:
  """Raises a ValueError if the last dimensions of `a` and `b` differ."""
  if jnp.shape(a)[-1] != jnp.shape(b)[-1]:
    raise ValueError(
        f"{name_a} and {name_b} must have the same last (feature) dimension, "
        f"got {jnp.shape(a)[-1]} and {jnp.shape(b)[-1]}.")


def pairwise_sq_distances(x: jax.Array, y: jax.Array) -> jax.Array:
  """Squared Euclidean distances ||x_i - y_j||^2.

  Uses the Gram-matrix form (one matmul, O(n m) memory) at full float32
  precision (TPU/GPU default matmuls would round to bfloat16/TF32), clipped at
  0 because rounding can make it slightly negative.

  Args:
    x: (n, d) float array.
    y: (m, d) float array.

  Returns:
    (n, m) array of squared distances.
  """
  x_sq = jnp.sum(x * x, axis=-1)
  y_sq = jnp.sum(y * y, axis=-1)
  dots = jnp.matmul(x, y.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * dots, 0.0)
