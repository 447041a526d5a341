"""Pieces every network shares: batch norm, the latent head, the output layer."""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax import priors

ENCODER_TYPES = ("deterministic", "gaussian", "sphere")
DECODER_OUTPUTS = ("sigmoid", "logits", "linear")
DTYPES = ("float32", "bfloat16")


def _identity(x: jax.Array) -> jax.Array:
  return x


def batch_norm(train: bool, axis_name: Optional[str], name: Optional[str] = None,
               dtype: Any = None, enabled: bool = True):
  """BatchNorm as in the WAE code (decay 0.9, eps 1e-5); stats synced over axis_name.

  Statistics are computed in float32 whatever `dtype` (the output's) is.
  enabled=False (config.model.batch_norm=False) gives the identity, e.g. for
  the WAE paper's VAE, which ran without batch norm.
  """
  if not enabled:
    return _identity
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      axis_name=axis_name, name=name, dtype=dtype)


def scale_width(channels: int, width_multiplier: float) -> int:
  """Channel count scaled by the width multiplier, at least 1."""
  return max(1, int(round(channels * width_multiplier)))


class LatentHead(nn.Module):
  """Dense layer(s) from features to the latent code.

  deterministic: (mean, None); gaussian: (mean, logvar clipped to logvar_clip);
  sphere: (mean / ||mean||, None). Codes are float32 whatever `dtype` computes
  the dense layers.
  """

  latent_dim: int
  encoder: str = "deterministic"
  logvar_clip: Tuple[float, float] = (-10.0, 5.0)
  dtype: Any = None

  @nn.compact
  def __call__(self, features: jax.Array) -> Tuple[jax.Array, Optional[jax.Array]]:
    """(B, F) -> (mean (B, latent_dim), logvar (B, latent_dim) or None)."""
    mean = nn.Dense(self.latent_dim, dtype=self.dtype, name="mean")(features)
    mean = mean.astype(jnp.float32)
    if self.encoder == "gaussian":
      logvar = nn.Dense(self.latent_dim, dtype=self.dtype, name="logvar")(features)
      logvar = logvar.astype(jnp.float32)
      return mean, jnp.clip(logvar, self.logvar_clip[0], self.logvar_clip[1])
    if self.encoder == "sphere":
      return priors.to_unit_sphere(mean), None
    return mean, None


def decoder_output(logits: jax.Array, kind: str) -> jax.Array:
  """Pixel means in [0, 1] ('sigmoid'), or the raw output: Bernoulli logits
  ('logits') or unbounded values such as 2-D points ('linear'); float32."""
  logits = logits.astype(jnp.float32)
  return nn.sigmoid(logits) if kind == "sigmoid" else logits
