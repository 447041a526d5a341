"""WAE-GAN on CelebA 64x64, the WAE paper's setting (latent 64, lambda 1)."""

from configs import _wae_paper
from configs import common


def get_config(arg=None):
  config = _wae_paper.celeba("wae_gan")
  config.lambda_reg = 1.0
  config.adversary.hidden_sizes = (512, 512, 512, 512)
  config.adversary.learning_rate = 5e-4
  config.adversary.b1 = 0.5
  config.adversary_log_prior = True
  return common.finalize(config, arg)
