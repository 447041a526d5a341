"""The WAE-GAN latent adversary: an MLP on codes, logit (B,)."""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax.priors import GaussianPrior


class Adversary(nn.Module):
  """MLP (ReLU) -> logit that z came from the prior, plus log p_Z(z) if `prior` is set.

  The optimal logit is log p_Z(z) - log q_Z(z); adding log p_Z(z) (the WAE
  paper, appendix C.2) leaves the MLP to learn only -log q_Z(z). Each code
  gets its own log p_Z(z_i): the paper's form, not the released code's (B, B)
  broadcast of every code's prior term over every logit (models.py:340-354;
  see wae_jax/methods/wae_gan.py and configs/paper_settings.md).
  """

  hidden_sizes: Sequence[int] = (512, 512, 512, 512)
  prior: Optional[GaussianPrior] = None
  axis_name: Optional[str] = None  # no BatchNorm; kept for the common interface
  dtype: Any = None  # computation dtype (params and the logit stay float32)

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """(B, d) -> (B,) logits."""
    h = z
    for width in self.hidden_sizes:
      h = nn.relu(nn.Dense(width, dtype=self.dtype)(h))
    logits = nn.Dense(1, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
    if self.prior is not None:
      logits = logits + self.prior.log_density(z)
    return logits
