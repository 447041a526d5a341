"""WAE-MMD on MNIST, the WAE paper's setting (IMQ kernel, lambda 10).

Every value and its source: configs/paper_settings.md.
"""

from configs import _wae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _wae_paper.mnist("wae_mmd")
  config.regularizer = "mmd"
  config.mmd.kernel = "imq"
  return _runlocal.finalize(config, arg)
