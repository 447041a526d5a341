"""MoCA's settings (Arpit et al., Momentum Contrastive Autoencoder), shared.

Unit-sphere latent and prior, a key encoder that is the EMA of the query
encoder with the cosine momentum schedule from m0 = 0.99, temperature 0.05,
batch 64, Adam lr 1e-3. The queue size K must be a multiple of the global
batch (each step writes one whole batch of keys): the paper's K = 30000 and
60000 are not multiples of 64, so these configs round K down to a multiple,
29952 (= 468 x 64) and 59968 (= 937 x 64).

A1 is the DCGAN-style conv net, A2 the ResNet-18 encoder with its mirrored
decoder. The brief does not give the latent size or the training length:
latent 128 and the epochs below are this project's choice.
"""

import ml_collections

from configs import common
from configs import default
from wae_jax import methods

BATCH_SIZE = 64
CIFAR10_TRAIN_EXAMPLES = 50_000
CELEBA_TRAIN_EXAMPLES = 162_770


def moca(dataset: str, image_size: int, network: str, lambda_reg: float,
         queue_size: int, train_examples: int, epochs: int) -> ml_collections.ConfigDict:
  config = default.base_config()
  config.method = "moca"
  config.dataset = dataset
  config.image_size = image_size
  config.batch_size = BATCH_SIZE
  config.latent_dim = 128
  methods.apply_required(config)  # the unit-sphere encoder and prior
  config.model.network = network
  config.lambda_reg = lambda_reg
  config.moca.queue_size = common.round_queue_size(queue_size, BATCH_SIZE)
  config.moca.temperature = 0.05
  config.moca.momentum_base = 0.99
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.9  # Adam's default betas.
  config.optimizer.schedule = "constant"
  config.num_train_steps = epochs * (train_examples // BATCH_SIZE)
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5000
  config.eval_every_steps = 5000
  return config


def cifar10(network: str, lambda_reg: float) -> ml_collections.ConfigDict:
  return moca("cifar10", 32, network, lambda_reg, 30_000, CIFAR10_TRAIN_EXAMPLES, epochs=100)


def celeba(network: str, lambda_reg: float) -> ml_collections.ConfigDict:
  return moca("celeb_a", 64, network, lambda_reg, 60_000, CELEBA_TRAIN_EXAMPLES, epochs=50)
