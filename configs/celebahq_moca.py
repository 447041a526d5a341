"""MoCA on CelebA-HQ 256x256: the 6-block ResNet (its 4x4 map flattened),
lambda 20000, tau 1, lr 2e-3 halved every 40 epochs until epoch 400, 1000 epochs.

K = 29952: the paper's 30000 rounded down to a multiple of the batch (64).
CelebA-HQ needs its manual download (see wae_jax/data); 27k/3k train/test.
Every value and its source: configs/paper_settings.md.
"""

from configs import _moca_paper
from configs import _runlocal

CELEBAHQ_TRAIN_EXAMPLES = 27_000


def get_config(arg=None):
  config = _moca_paper.moca("celeb_a_hq", 256, "resnet6", lambda_reg=20_000.0,
                            queue_size=30_000, train_examples=CELEBAHQ_TRAIN_EXAMPLES,
                            epochs=1000, halve_every_epochs=40, halve_until_epoch=400)
  config.moca.temperature = 1.0
  config.optimizer.learning_rate = 2e-3
  return _runlocal.finalize(config, arg)
