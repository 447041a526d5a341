"""The VAE baseline on CelebA 64x64 with the WAE paper's networks (latent 64).

Gaussian encoder, Bernoulli decoder on pixel intensities in [0, 1], beta 1,
prior N(0, I): _wae_paper applies the VAE's required values.
"""

from configs import _wae_paper
from configs import common


def get_config(arg=None):
  config = _wae_paper.celeba("vae")
  config.vae.likelihood = "bernoulli"
  config.vae.beta = 1.0
  return common.finalize(config, arg)
