"""MoCA on CelebA 64x64, K = 59968 (the paper's 60000 rounded down to a multiple of 64); network A2 (ResNet-18), lambda 100.0.

Every value and its source: configs/paper_settings.md.
"""

from configs import _moca_paper
from configs import _runlocal


def get_config(arg=None):
  config = _moca_paper.celeba("resnet18", lambda_reg=100.0)
  return _runlocal.finalize(config, arg)
