"""WAE with a sample-based latent regularizer (Tolstikhin et al. 2018) and its
baselines: loss = c(x, G(z)) + lambda * D(Q_Z, P_Z), with D chosen by
config.regularizer in {mmd, sliced, sinkhorn, cramer_wold}; z = E(x) for a
deterministic encoder, z = mean + std * eps for model.encoder="gaussian" (plus
config.encoder_logvar_l1 * sum |logvar|).

Options of the WAE paper: config.encoder_input_noise > 0 adds truncated
Gaussian noise (cut at 2 std, as tf.truncated_normal) with that std to the
encoder's input during training (the decoder's target stays the clean image);
config.pretrain runs wae_jax/methods/shared/pretraining.py before the first step.
"""

import math
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections

from wae_jax import fields
from wae_jax import losses
from wae_jax import methods
from wae_jax import parallel
from wae_jax.losses import mmd as mmd_lib
from wae_jax.methods.shared import autoencoder
from wae_jax.methods.shared import pretraining
from wae_jax.state import TrainState

REGULARIZERS = ("mmd", "sliced", "sinkhorn", "cramer_wold")

# The fields WAE-MMD adds to the config (the MMD kernel, config.mmd, is shared:
# the evaluator's latent_mmd reads it too).
CONFIG = {
    "regularizer": "mmd",   # mmd | sliced | sinkhorn | cramer_wold
    "sliced": {"num_projections": 64},
    "sinkhorn": {"epsilon": 0.1, "num_iters": 50},
    "cramer_wold": {"gamma": -1.0},  # <= 0: the CWAE paper's rule
    **autoencoder.WAE_ENCODER_CONFIG,
    **pretraining.CONFIG,
}


def check_config(config: ml_collections.ConfigDict) -> None:
  """The regularizer and its values."""
  autoencoder.check_wae_encoder(config)
  fields.check_choice(config, "regularizer", REGULARIZERS)
  if config.regularizer == "mmd":
    fields.check_choice(config, "mmd.kernel", mmd_lib.KERNELS)
    scales = config.mmd.scales
    if (not isinstance(scales, (tuple, list)) or not scales or not all(
        isinstance(s, (int, float)) and math.isfinite(s) and s > 0 for s in scales)):
      raise ValueError(
          f"config.mmd.scales must be a non-empty tuple of positive numbers, got {scales!r}; "
          "e.g. --config.mmd.scales='(0.1, 1.0, 10.0)'.")
    fields.check_number(config, "mmd.base_scale", low=0, low_open=True)
  elif config.regularizer == "sliced":
    fields.check_number(config, "sliced.num_projections", low=1, integer=True)
  elif config.regularizer == "sinkhorn":
    fields.check_number(config, "sinkhorn.epsilon", low=0, low_open=True)
    fields.check_number(config, "sinkhorn.num_iters", low=1, integer=True)
  elif config.regularizer == "cramer_wold":
    fields.check_number(config, "cramer_wold.gamma")
  if config.regularizer == "cramer_wold" and config.prior != "gaussian":
    raise ValueError(
        "regularizer='cramer_wold' measures distance to a Gaussian; set "
        "config.prior='gaussian'.")


def regularizer(config, codes: jax.Array, prior_samples: jax.Array,
                key: jax.Array) -> jax.Array:
  """D(Q_Z, P_Z) between global-batch codes (n, d) and prior samples (n, d)."""
  name = config.regularizer
  if name == "mmd":
    return losses.mmd_penalty(codes, prior_samples, **autoencoder.mmd_settings(config))
  if name == "sliced":
    return losses.sliced_wasserstein(
        codes, prior_samples, key,
        num_projections=int(config.sliced.num_projections))
  if name == "sinkhorn":
    return losses.sinkhorn_divergence(
        codes, prior_samples, epsilon=float(config.sinkhorn.epsilon),
        num_iters=int(config.sinkhorn.num_iters))
  if name == "cramer_wold":
    # Distance to N(0, I): standardise the codes by the prior's std.
    standardised = codes / jnp.sqrt(jnp.float32(config.prior_var))
    return losses.cramer_wold_normality(standardised,
                                        gamma=float(config.cramer_wold.gamma))
  raise ValueError(f"Unknown config.regularizer {name!r}.")


def loss_fn(params, state: TrainState, images: jax.Array, key: jax.Array,
            axis_name: Optional[str] = None):
  """The per-device WAE loss; returns (loss, (metrics, new_batch_stats)).

  images: (b, H, W, C) local batch. The regularizer sees the global batch.
  """
  config = state.config
  noise_key, prior_key, reg_key, latent_key = jax.random.split(key, 4)
  encoder_input = autoencoder.noisy_encoder_input(config, images, noise_key, axis_name)
  (_, logvar), codes, decoded, new_batch_stats = autoencoder.autoencode(
      state, params, encoder_input, axis_name=axis_name,
      to_latent=autoencoder.gaussian_latent(latent_key, axis_name))
  reconstruction = autoencoder.reconstruction_cost(
      config, autoencoder.to_pixel_means(config, decoded), images)
  all_codes = parallel.gather(codes, axis_name)
  prior_samples = autoencoder.sample_prior(state, prior_key, all_codes.shape[0])
  penalty = regularizer(config, all_codes, prior_samples, reg_key)
  logvar_l1 = autoencoder.logvar_penalty(config, logvar)
  loss = reconstruction + config.lambda_reg * penalty + logvar_l1
  metrics = {"reconstruction": reconstruction, "regularizer": penalty,
             "logvar_l1": logvar_l1, "loss": loss}
  return loss, (metrics, new_batch_stats)


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """One Adam step on the encoder-decoder; returns (new_state, metrics)."""
  return autoencoder.gradient_step(loss_fn, state, batch, axis_name)


def init_extras(config: ml_collections.ConfigDict, key: jax.Array,
                state: TrainState) -> pretraining.PretrainState:
  """The pretraining record (nothing else is WAE-MMD's own)."""
  del config, key, state
  return pretraining.PretrainState(encoder_pretrained=pretraining.not_yet())


METHOD = methods.Method(
    name="wae_mmd", train_step=train_step, init_extras=init_extras, check_config=check_config,
    config=CONFIG, pretrains=True,
    description="WAE with a sample-based regularizer: MMD, sliced-Wasserstein, Sinkhorn "
                "or Cramér-Wold (Tolstikhin et al. 2018)")
