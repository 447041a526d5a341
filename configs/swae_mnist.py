"""SWAE on MNIST, the paper's setting: latent 40, K 4000, beta 0.5, 200 epochs."""

from configs import _swae_paper
from configs import _runlocal


def get_config(arg=None):
  config = _swae_paper.swae("mnist", 28, 40, _swae_paper.MNIST_TRAIN_EXAMPLES)
  return _runlocal.finalize(config, arg)
