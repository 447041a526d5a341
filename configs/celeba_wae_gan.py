"""WAE-GAN on CelebA 64x64, the WAE paper's setting (latent 64, lambda 1,
Adam 3e-4 for the autoencoder and 1e-3 for a 1024-wide adversary).

Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _wae_paper.celeba("wae_gan")
  config.lambda_reg = 1.0
  config.optimizer.learning_rate = 3e-4
  config.adversary.hidden_sizes = (1024, 1024, 1024, 1024)
  config.adversary.learning_rate = 1e-3
  config.adversary.b1 = 0.5
  config.adversary_log_prior = True
  return _runlocal.finalize(config, arg)
