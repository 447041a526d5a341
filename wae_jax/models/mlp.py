"""Fully connected encoder and decoder (the CPU default; any image size)."""

import math
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax

from wae_jax.models.layers import LatentHead, decoder_output


class MLPEncoder(nn.Module):
  """Flatten -> hidden_sizes (ReLU) -> latent head."""

  latent_dim: int
  hidden_sizes: Sequence[int] = (256, 256)
  encoder: str = "deterministic"
  logvar_clip: Tuple[float, float] = (-10.0, 5.0)
  axis_name: Optional[str] = None  # no BatchNorm; kept for the common interface
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """(B, H, W, C) -> (mean (B, d), logvar (B, d) or None)."""
    del train
    h = x.reshape(x.shape[0], -1)
    for width in self.hidden_sizes:
      h = nn.relu(nn.Dense(width, dtype=self.dtype)(h))
    return LatentHead(self.latent_dim, self.encoder, self.logvar_clip, self.dtype)(h)


class MLPDecoder(nn.Module):
  """z -> reversed hidden_sizes (ReLU) -> H*W*C -> reshape."""

  image_shape: Tuple[int, int, int]
  hidden_sizes: Sequence[int] = (256, 256)
  output: str = "sigmoid"
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    """(B, d) -> (B, H, W, C)."""
    del train
    h = z
    for width in reversed(tuple(self.hidden_sizes)):
      h = nn.relu(nn.Dense(width, dtype=self.dtype)(h))
    h = nn.Dense(math.prod(self.image_shape), dtype=self.dtype)(h)
    return decoder_output(h.reshape((z.shape[0],) + tuple(self.image_shape)), self.output)
