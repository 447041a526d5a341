"""The WAE paper's settings (Tolstikhin et al. 2018), shared by its configs.

MNIST: latent 8, batch 100, 100 epochs, Adam lr 1e-3 (beta1 0.5) with the
paper's decay (halve after epoch 30, / 5 after 50, / 10 after 100), the DCGAN-
style conv nets, lambda 10, prior N(0, I).
CelebA 64x64: latent 64, 55 epochs, lambda 100 (MMD) or 1 (GAN), prior
N(0, 2 I) (the paper's sigma_z^2 = 2), the same optimizer and decay.
Each function ends with methods.apply_required, so the VAE gets its Gaussian
encoder, logits and N(0, I) prior.
"""

import ml_collections

from configs import default
from wae_jax import methods

MNIST_TRAIN_EXAMPLES = 60_000
CELEBA_TRAIN_EXAMPLES = 162_770  # tfds celeb_a train split


def mnist(method: str) -> ml_collections.ConfigDict:
  config = default.base_config()
  config.method = method
  config.dataset = "mnist"
  config.image_size = 28
  config.batch_size = 100
  config.latent_dim = 8
  config.prior_var = 1.0
  config.model.network = "dcgan"
  config.lambda_reg = 10.0
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.5
  config.optimizer.schedule = "wae_piecewise"
  # 100 epochs of 600 batches; steps_per_epoch is filled from the data.
  config.num_train_steps = 100 * (MNIST_TRAIN_EXAMPLES // config.batch_size)
  config.log_every_steps = 100
  config.checkpoint_every_steps = 6000
  config.eval_every_steps = 6000
  return methods.apply_required(config)


def celeba(method: str) -> ml_collections.ConfigDict:
  config = default.base_config()
  config.method = method
  config.dataset = "celeb_a"
  config.image_size = 64
  config.batch_size = 100
  config.latent_dim = 64
  config.prior_var = 2.0
  config.model.network = "dcgan"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.5
  config.optimizer.schedule = "wae_piecewise"
  # 55 epochs of 1627 full batches (the last partial batch is dropped).
  config.num_train_steps = 55 * (CELEBA_TRAIN_EXAMPLES // config.batch_size)
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5000
  config.eval_every_steps = 5000
  return methods.apply_required(config)
