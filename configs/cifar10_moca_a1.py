"""MoCA on CIFAR-10 32x32, K = 29952 (the paper's 30000 rounded down to a multiple of 64); network A1 (DCGAN-style conv net), lambda 2000.0.

Every value and its source: configs/paper_settings.md.
"""

from configs import _moca_paper
from configs import _runlocal


def get_config(arg=None):
  config = _moca_paper.cifar10("dcgan", lambda_reg=2000.0)
  return _runlocal.finalize(config, arg)
