"""WAE-GAN on MNIST, the WAE paper's setting (lambda 10, adversary Adam 5e-4,
no log-prior trick as the code's MNIST config).

Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _wae_paper.mnist("wae_gan")
  config.adversary.hidden_sizes = (512, 512, 512, 512)
  config.adversary.learning_rate = 5e-4
  config.adversary.b1 = 0.5
  config.adversary_log_prior = False
  return _runlocal.finalize(config, arg)
