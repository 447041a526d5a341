"""SWAE on the paper's CIFAR-10 subset (bird, cat, ship): latent 512, K 4000, 200 epochs."""

from configs import _swae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _swae_paper.swae("cifar10", 32, 512, _swae_paper.CIFAR10_SUBSET_TRAIN_EXAMPLES)
  # utils/load_data.py:460-461: labels [2, 3, 8] (bird, cat, ship).
  config.keep_labels = (2, 3, 8)
  return _runlocal.finalize(config, arg)
