"""MoCA on CIFAR-10 32x32, K = 29952 (the paper's 30000 rounded down to a multiple of 64); network A2 (ResNet-18), lambda 100.0.

Every value and its source: configs/paper_settings.md.
"""

from configs import _moca_paper
from configs import _runlocal


def get_config(arg=None):
  config = _moca_paper.cifar10("resnet18", lambda_reg=100.0)
  return _runlocal.finalize(config, arg)
