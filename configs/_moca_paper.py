"""MoCA's settings (Arpit et al., Momentum Contrastive Autoencoder), shared.

Unit-sphere latent and prior, a key encoder that is the EMA of the query
encoder with the cosine momentum schedule from m0 = 0.99, temperature 0.05,
batch 64, Adam lr 1e-3. The queue size K must be a multiple of the global
batch (each step writes one whole batch of keys): the paper's K = 30000 and
60000 are not multiples of 64, so these configs round K down to a multiple,
29952 (= 468 x 64) and 59968 (= 937 x 64).

A1 is the DCGAN-style conv net, A2 the ResNet-18 encoder with its mirrored
decoder (with a final x2 for 64x64 CelebA). Epochs and learning-rate halvings
are appendix A's: CIFAR-10 A1 40 epochs at a constant rate, A2 100 epochs
halved after epoch 60; CelebA 200 epochs halved every 60; CelebA-HQ 1000
epochs halved every 40 until epoch 400. Every value and its source:
configs/paper_settings.md.
"""

import ml_collections

from configs import _runlocal
from wae_jax.config import base_config
from wae_jax import methods

BATCH_SIZE = 64
CIFAR10_TRAIN_EXAMPLES = 50_000
CELEBA_TRAIN_EXAMPLES = 162_770


def moca(dataset: str, image_size: int, network: str, lambda_reg: float,
         queue_size: int, train_examples: int, epochs: int, halve_every_epochs: int = 0,
         halve_until_epoch: int = 0) -> ml_collections.ConfigDict:
  """A MoCA run; halve_every_epochs > 0 halves the learning rate every that
  many epochs (until halve_until_epoch when > 0), else it stays constant."""
  config = base_config()
  config.method = "moca"
  config.dataset = dataset
  config.image_size = image_size
  config.batch_size = BATCH_SIZE
  config.latent_dim = 128
  methods.apply_required(config)  # the unit-sphere encoder and prior
  config.model.network = network
  # A1 (dcgan): "batch norm in every layer" (moca.txt, appendix A), which the
  # WAE net lacks after its decoder's dense layer.
  config.model.dense_batch_norm = network == "dcgan"
  config.lambda_reg = lambda_reg
  config.moca.queue_size = _runlocal.round_queue_size(queue_size, BATCH_SIZE)
  config.moca.temperature = 0.05
  config.moca.momentum_base = 0.99
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.9  # PyTorch's default betas (moca.txt, appendices B and D).
  config.optimizer.schedule = "step" if halve_every_epochs else "constant"
  config.optimizer.decay_every_epochs = halve_every_epochs or 30
  config.optimizer.decay_factor = 0.5
  config.optimizer.decay_until_epoch = halve_until_epoch
  config.num_train_steps = epochs * (train_examples // BATCH_SIZE)
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5000
  config.eval_every_steps = 5000
  return config


def cifar10(network: str, lambda_reg: float) -> ml_collections.ConfigDict:
  if network == "dcgan":  # A1
    return moca("cifar10", 32, network, lambda_reg, 30_000, CIFAR10_TRAIN_EXAMPLES,
                epochs=40)
  # A2: over 100 epochs, halving every 60 is one halving, after epoch 60.
  return moca("cifar10", 32, network, lambda_reg, 30_000, CIFAR10_TRAIN_EXAMPLES,
              epochs=100, halve_every_epochs=60)


def celeba(network: str, lambda_reg: float) -> ml_collections.ConfigDict:
  return moca("celeb_a", 64, network, lambda_reg, 60_000, CELEBA_TRAIN_EXAMPLES,
              epochs=200, halve_every_epochs=60)
