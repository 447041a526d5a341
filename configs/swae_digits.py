"""SWAE on scikit-learn's 8x8 digits: offline, a few minutes on 2 CPU cores.

The paper's objective and optimizer (configs/_swae_paper.py) at digits size:
the default MLP nets, latent 8, K 200 pseudo-inputs (1497 training images),
200 epochs of 14 batches of 100.
"""

from configs import _swae_paper
from configs import _runlocal

DIGITS_TRAIN_EXAMPLES = 1497


def get_config(arg=None):
  config = _swae_paper.swae("digits", 8, 8, DIGITS_TRAIN_EXAMPLES)
  config.model.network = "mlp"
  config.model.hidden_sizes = (256, 256)
  config.swae.num_pseudo_inputs = 200
  config.checkpoint_every_steps = 700
  config.eval_every_steps = 700
  config.evaluation.final_metrics = ("fd_classifier", "swd_image")
  config.evaluation.num_samples = 1000
  return _runlocal.finalize(config, arg)
