"""The VAE baseline on MNIST with the WAE paper's networks and optimizer.

Gaussian encoder, Bernoulli decoder (logits), beta 1; lambda is unused.
Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import common


def get_config(arg=None):
  config = _wae_paper.mnist("vae")
  config.model.encoder = "gaussian"
  config.model.decoder_output = "logits"
  config.vae.likelihood = "bernoulli"
  config.vae.beta = 1.0
  return common.finalize(config, arg)
