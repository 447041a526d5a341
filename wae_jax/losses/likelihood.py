"""VAE terms and reconstruction costs.

Every function here reduces the same way: SUM over all non-batch axes (latent
dims or pixels), then MEAN over the leading batch axis, giving a per-example
loss averaged over the batch.
"""

from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from wae_jax.losses import _util


def _sum_non_batch_mean_batch(values: jax.Array) -> jax.Array:
  """(B, ...) -> scalar: sum over all axes but the first, mean over the first."""
  return jnp.mean(jnp.sum(values.reshape(values.shape[0], -1), axis=-1))


def _check_batched(name: str, x: jax.Array) -> None:
  if jnp.ndim(x) < 1:
    raise ValueError(f"{name} must have a leading batch axis (B, ...), got a scalar.")


def _check_same_shape(name_a, a, name_b, b) -> None:
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(f"{name_a} and {name_b} must have the same shape, got "
                     f"{jnp.shape(a)} and {jnp.shape(b)}.")


def gaussian_kl(mean: jax.Array, logvar: jax.Array,
                prior_var: Union[float, jax.Array] = 1.0) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, prior_var I)), summed over dims, mean over batch.

    KL_i = 0.5 sum_k (exp(logvar_ik) / s + mean_ik^2 / s - 1 - logvar_ik + log s),
    s = prior_var

  Args:
    mean: (B, d) encoder means. float32 or bfloat16 (computed in float32).
    logvar: (B, d) encoder log variances.
    prior_var: the prior's per-coordinate variance s > 0.

  Returns:
    float32 scalar.
  """
  _check_batched("mean", mean)
  _check_same_shape("mean", mean, "logvar", logvar)
  mean = _util.as_float(mean)
  logvar = _util.as_float(logvar).astype(mean.dtype)
  prior_var = _util.as_float(prior_var).astype(mean.dtype)
  return _sum_non_batch_mean_batch(
      0.5 * ((jnp.exp(logvar) + mean * mean) / prior_var - 1.0 - logvar
             + jnp.log(prior_var)))


def bernoulli_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
  """Bernoulli negative log-likelihood from logits, summed over pixels, mean over batch.

    nll_i = sum_p [softplus(logits_ip) - x_ip logits_ip]
          = sum_p -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))]

  x may be any value in [0, 1] (grey levels give the usual continuous
  relaxation).

  Args:
    logits: (B, ...) decoder logits, e.g. (B, H, W, C). float32 or bfloat16.
    x: same shape, targets in [0, 1].

  Returns:
    float32 scalar.
  """
  _check_batched("logits", logits)
  _check_same_shape("logits", logits, "x", x)
  logits = _util.as_float(logits)
  x = _util.as_float(x).astype(logits.dtype)
  return _sum_non_batch_mean_batch(jax.nn.softplus(logits) - x * logits)


def gaussian_nll(mean: jax.Array,
                 x: jax.Array,
                 var: Union[float, jax.Array] = 1.0) -> jax.Array:
  """Gaussian negative log-likelihood, summed over pixels, mean over batch.

    nll_i = sum_p [0.5 (x_ip - mean_ip)^2 / var + 0.5 log(2 pi var)]

  Args:
    mean: (B, ...) decoder means. float32 or bfloat16 (computed in float32).
    x: same shape, targets.
    var: observation variance: a positive scalar, or an array broadcastable
      to x.shape.

  Returns:
    float32 scalar.
  """
  _check_batched("mean", mean)
  _check_same_shape("mean", mean, "x", x)
  mean = _util.as_float(mean)
  x = _util.as_float(x).astype(mean.dtype)
  var = _util.as_float(var).astype(mean.dtype)
  per_pixel = 0.5 * jnp.square(x - mean) / var + 0.5 * jnp.log(2.0 * np.pi * var)
  return _sum_non_batch_mean_batch(jnp.broadcast_to(per_pixel, x.shape))


def squared_error(x_rec: jax.Array, x: jax.Array) -> jax.Array:
  """Squared L2 reconstruction cost, summed over pixels, mean over batch.

    c_i = sum_p (x_rec_ip - x_ip)^2

  (The original WAE code multiplies this by 0.05; the caller scales.)

  Args:
    x_rec: (B, ...) reconstructions, e.g. (B, H, W, C). float32 or bfloat16.
    x: same shape, targets.

  Returns:
    float32 scalar.
  """
  _check_batched("x_rec", x_rec)
  _check_same_shape("x_rec", x_rec, "x", x)
  x_rec = _util.as_float(x_rec)
  x = _util.as_float(x).astype(x_rec.dtype)
  return _sum_non_batch_mean_batch(jnp.square(x_rec - x))
