"""WAE-GAN (Tolstikhin et al. 2018): a latent adversary tells prior samples
from encoded codes; the encoder-decoder minimises
  c(x, G(E(x))) + lambda * encoder_adversarial_loss(D(E(x))).

Each train step makes one encoder-decoder update (main Adam, config.optimizer)
and one adversary update (its own Adam: config.adversary.learning_rate,
config.adversary.b1), both from the same forward pass: the adversary is
trained on the codes of the pre-update encoder (stop-gradient) against prior
samples of the global batch size, and the encoder's adversarial term uses the
pre-update adversary (simultaneous updates, one jitted step).

The adversary lives in `state.extras` (an `AdversaryState`).
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from wae_jax import config_checks
from wae_jax import losses
from wae_jax import methods
from wae_jax import models
from wae_jax.methods import common
from wae_jax.methods import optim
from wae_jax.state import TrainState


@struct.dataclass
class AdversaryState:
  """The latent adversary: its params and optimizer state, and (static) its
  module and optimizer."""

  adversary_params: Any
  adversary_opt_state: optax.OptState
  adversary: nn.Module = struct.field(pytree_node=False)
  adversary_tx: optax.GradientTransformation = struct.field(pytree_node=False)


def check_config(config: ml_collections.ConfigDict) -> None:
  """A deterministic encoder and the adversary's optimizer and widths."""
  config_checks.check_number(config, "adversary.learning_rate", low=0, low_open=True)
  config_checks.check_number(config, "adversary.b1", low=0, high=1, high_open=True)
  sizes = config.adversary.hidden_sizes
  if not isinstance(sizes, (tuple, list)) or not all(
      isinstance(s, int) and s >= 1 for s in sizes):
    raise ValueError(f"config.adversary.hidden_sizes must be a tuple of positive integers, "
                     f"got {sizes!r}.")
  if config.model.encoder == "gaussian":
    raise ValueError(
        "wae_gan uses a deterministic encoder; set "
        "config.model.encoder='deterministic'.")


def init_extras(config: ml_collections.ConfigDict, key: jax.Array,
                state: TrainState) -> AdversaryState:
  """The adversary, its params (from `key`) and its own Adam."""
  del state
  adversary = models.build_adversary(config)
  example_z = jnp.zeros((1, int(config.latent_dim)), jnp.float32)
  adversary_params = adversary.init(key, example_z)["params"]
  adversary_tx = optim.make_adversary_optimizer(config)
  return AdversaryState(
      adversary_params=adversary_params,
      adversary_opt_state=adversary_tx.init(adversary_params),
      adversary=adversary, adversary_tx=adversary_tx)


def adversary_logits(state: TrainState, adversary_params, z: jax.Array):
  """D(z): (n, d) -> (n,) logits (log p_Z(z) added when configured)."""
  return state.extras.adversary.apply({"params": adversary_params}, z)


def adversary_accuracy(d_prior: jax.Array, d_encoded: jax.Array) -> jax.Array:
  """Mean of the accuracies on prior samples (logit > 0) and codes (< 0)."""
  return 0.5 * (jnp.mean((d_prior > 0).astype(jnp.float32))
                + jnp.mean((d_encoded < 0).astype(jnp.float32)))


def loss_fn(params, state: TrainState, images: jax.Array,
            axis_name: Optional[str] = None):
  """Encoder-decoder loss on the local batch; returns (loss, aux) where aux =
  (metrics, new_batch_stats, codes (b, d))."""
  config = state.config
  _, codes, decoded, new_batch_stats = common.autoencode(
      state, params, images, axis_name=axis_name)
  reconstruction = common.reconstruction_cost(
      config, common.to_pixel_means(config, decoded), images)
  # Per-example term: the mean over the local batch, averaged by the grads.
  adversarial = losses.encoder_adversarial_loss(
      adversary_logits(state, state.extras.adversary_params, codes))
  loss = reconstruction + config.lambda_reg * adversarial
  metrics = {"reconstruction": reconstruction, "regularizer": adversarial,
             "loss": loss}
  return loss, (metrics, new_batch_stats, codes)


def adversary_loss_fn(adversary_params, state: TrainState, codes: jax.Array,
                      prior_samples: jax.Array):
  """Adversary loss on global-batch codes and prior samples (n, d) each."""
  d_prior = adversary_logits(state, adversary_params, prior_samples)
  d_encoded = adversary_logits(state, adversary_params, codes)
  loss = losses.adversary_loss(d_prior, d_encoded)
  return loss, adversary_accuracy(d_prior, d_encoded)


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """One encoder-decoder and one adversary update; returns (state, metrics)."""
  images = jnp.asarray(batch["image"], jnp.float32)
  prior_key = common.step_key(state)
  grads, (metrics, new_batch_stats, codes) = jax.grad(loss_fn, has_aux=True)(
      common.per_device(state.params, axis_name), state, images, axis_name)
  grads = common.average_grads(grads, axis_name)

  all_codes = common.gather(jax.lax.stop_gradient(codes), axis_name)
  prior_samples = common.sample_prior(state, prior_key, all_codes.shape[0])
  extras = state.extras
  (adv_loss, adv_accuracy), adv_grads = jax.value_and_grad(
      adversary_loss_fn, has_aux=True)(
          common.per_device(extras.adversary_params, axis_name), state,
          all_codes, prior_samples)
  adv_grads = common.average_grads(adv_grads, axis_name)
  adv_updates, adversary_opt_state = extras.adversary_tx.update(
      adv_grads, extras.adversary_opt_state, extras.adversary_params)
  adversary_params = optax.apply_updates(extras.adversary_params, adv_updates)

  metrics.update(adversary_loss=adv_loss, adversary_accuracy=adv_accuracy,
                 learning_rate=common.learning_rate(state))
  new_state = common.apply_updates(state, grads, new_batch_stats)
  new_state = new_state.replace(extras=extras.replace(
      adversary_params=adversary_params, adversary_opt_state=adversary_opt_state))
  return new_state, common.mean_metrics(metrics, axis_name)


METHOD = methods.Method(name="wae_gan", train_step=train_step,
                        init_extras=init_extras, check_config=check_config)
