"""WAE-GAN losses: the latent adversary and the encoder's adversarial term."""

from typing import Union

import jax
import jax.numpy as jnp
import numpy as np

from wae_jax.losses import _util


def adversary_loss(d_prior: jax.Array, d_encoded: jax.Array) -> jax.Array:
  """Sigmoid cross-entropy of the latent adversary (prior = 1, encoded = 0).

    loss = mean_i softplus(-d_prior_i) + mean_j softplus(d_encoded_j)
         = mean -log sigmoid(d_prior) + mean -log(1 - sigmoid(d_encoded))

  The two means are added, as in the original WAE-GAN code (the caller
  multiplies by lambda if it wants the paper's scaling).

  Args:
    d_prior: (B,) adversary logits on prior samples. float32 or bfloat16.
    d_encoded: (B',) adversary logits on encoded codes.

  Returns:
    float32 scalar.
  """
  d_prior = _util.as_float(d_prior)
  d_encoded = _util.as_float(d_encoded)
  return (jnp.mean(jax.nn.softplus(-d_prior))
          + jnp.mean(jax.nn.softplus(d_encoded)))


def encoder_adversarial_loss(d_encoded: jax.Array) -> jax.Array:
  """Non-saturating encoder loss: mean -log sigmoid(d_encoded).

  The encoder tries to make the adversary call its codes prior samples
  (label 1); this has strong gradients when the adversary is confident.

  Args:
    d_encoded: (B,) adversary logits on encoded codes. float32 or bfloat16.

  Returns:
    float32 scalar, mean over the batch of softplus(-d_encoded).
  """
  return jnp.mean(jax.nn.softplus(-_util.as_float(d_encoded)))


def gaussian_log_density(z: jax.Array,
                         prior_var: Union[float, jax.Array] = 1.0) -> jax.Array:
  """Per-sample log density of N(0, prior_var I): returns a VECTOR (B,).

    log p(z_i) = -||z_i||^2 / (2 prior_var) - (d/2) log(2 pi prior_var)

  WAE-GAN adds it to the adversary's logit so the adversary starts from the
  prior's shape. (The original WAE code adds -0.5 log(2 pi) once instead of d
  times; a constant offset the adversary's bias absorbs. This is the exact,
  normalised density.)

  Args:
    z: (B, d) codes. float32 or bfloat16 (computed in float32).
    prior_var: scalar variance of the prior.

  Returns:
    (B,) float32 log densities, one per row (not reduced).
  """
  _util.check_rank("z", z, 2, "(B, d)")
  z = _util.as_float(z)
  prior_var = jnp.asarray(prior_var, z.dtype)
  dim = z.shape[-1]
  return (-0.5 * jnp.sum(z * z, axis=-1) / prior_var
          - 0.5 * dim * jnp.log(2.0 * np.pi * prior_var))
