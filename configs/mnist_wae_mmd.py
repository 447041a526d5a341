"""WAE-MMD on MNIST, the WAE paper's setting (IMQ kernel, lambda 10)."""

from configs import _wae_paper
from configs import common


def get_config(arg=None):
  config = _wae_paper.mnist("wae_mmd")
  config.regularizer = "mmd"
  config.mmd.kernel = "imq"
  return common.finalize(config, arg)
