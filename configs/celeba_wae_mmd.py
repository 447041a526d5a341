"""WAE-MMD on CelebA 64x64, the WAE paper's setting (latent 64, lambda 100).

Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _wae_paper.celeba("wae_mmd")
  config.lambda_reg = 100.0
  config.regularizer = "mmd"
  config.mmd.kernel = "imq"
  return _runlocal.finalize(config, arg)
