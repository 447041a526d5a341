"""MoCA, the momentum contrastive autoencoder (Arpit et al. 2021).

The latent is the unit sphere (encoder outputs are L2-normalised here, whatever
the encoder type). Per step, with m = losses.cosine_momentum(step,
config.num_train_steps, config.moca.momentum_base):
  1. key encoder <- m * key encoder + (1 - m) * query encoder, for params and
     batch stats (the query encoder as it is at the start of the step);
  2. keys k = E_key(x) / ||E_key(x)|| in training mode (batch statistics of the
     batch, synced across devices; the key encoder's own batch-stat updates
     are discarded: its stats are the EMA above), no gradient;
  3. loss = squared_error(G(q), x) + lambda * C(q, k, queue, tau) with
     q = E(x) / ||E(x)|| and C = losses.moca_loss (config.moca.loss_form
     "algorithm1") or losses.moca_alignment_entropy_loss ("eq6"); one Adam
     step on the encoder-decoder;
  4. the global batch's keys are written into the queue at queue_ptr (device
     order), queue_ptr <- (queue_ptr + B) mod K. K must be a multiple of B.
The key encoder, the queue and its pointer are `state.extras` (a MocaState).
Generation decodes samples of the sphere prior (z / ||z||, z ~ N(0, I));
interpolation renormalises the mixed code onto the sphere.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
from flax import struct
from jax import lax

from wae_jax import fields
from wae_jax import losses
from wae_jax import methods
from wae_jax import parallel
from wae_jax import priors
from wae_jax.methods.shared import autoencoder
from wae_jax.state import TrainState

# The unit-sphere latent: the encoder and the prior that sample() decodes.
REQUIRED = {"model.encoder": "sphere", "prior": "sphere"}
# config.moca.loss_form -> the contrastive term: Algorithm 1's cross-entropy
# (positive key in the normaliser) or Eq. 6's alignment + entropy.
CONTRASTIVE_LOSSES = {"algorithm1": losses.moca_loss,
                      "eq6": losses.moca_alignment_entropy_loss}


# The fields MoCA adds to the config.
CONFIG = {"moca": {
    "queue_size": 1000,        # K, a multiple of the global batch
    "temperature": 0.05,       # tau
    "momentum_base": 0.99,     # m0 of the cosine momentum schedule
    "loss_form": "algorithm1",  # algorithm1 (cross-entropy) | eq6 (alignment + entropy)
}}


def tiny_overrides(batch_size: int) -> dict:
  """A queue of two batches, and a temperature and weight that train 8x8 digits
  in a few steps."""
  return {"moca.queue_size": 2 * batch_size, "moca.temperature": 0.2, "lambda_reg": 0.1}


@struct.dataclass
class MocaState:
  """MoCA's part of the TrainState (`state.extras`)."""

  key_encoder_params: Any        # EMA of the query encoder's params
  key_encoder_batch_stats: Any   # EMA of its batch stats ({} without BatchNorm)
  queue: jax.Array               # (K, latent_dim), unit rows
  queue_ptr: jax.Array           # int32 scalar, next slot to write


def check_config(config: ml_collections.ConfigDict) -> None:
  """The queue fits whole batches, tau > 0, m0 in [0, 1], and the sphere."""
  fields.check_number(config, "moca.temperature", low=0, low_open=True)
  fields.check_number(config, "moca.momentum_base", low=0, high=1)
  fields.check_number(config, "moca.queue_size", low=1, integer=True)
  queue_size = int(config.moca.queue_size)
  batch_size = int(config.batch_size)
  if queue_size <= 0 or queue_size % batch_size != 0:
    raise ValueError(
        f"config.moca.queue_size ({queue_size}) must be a positive multiple of "
        f"the global batch size config.batch_size ({batch_size}); change one "
        "of them.")
  if config.model.encoder == "gaussian":
    raise ValueError(
        "MoCA uses a unit-norm deterministic encoder; set "
        "config.model.encoder='sphere'.")
  if config.moca.loss_form not in CONTRASTIVE_LOSSES:
    raise ValueError(
        f"Unknown config.moca.loss_form {config.moca.loss_form!r}; use one of "
        f"{tuple(CONTRASTIVE_LOSSES)}.")
  if config.prior != "sphere":
    raise ValueError(
        "MoCA's latent is the unit sphere; set config.prior='sphere'.")


def init_extras(config: ml_collections.ConfigDict, key: jax.Array,
                state: TrainState) -> MocaState:
  """The key encoder (a copy of the query encoder), a queue of K random unit
  vectors drawn from `key`, and queue_ptr = 0."""
  queue = priors.to_unit_sphere(jax.random.normal(
      key, (int(config.moca.queue_size), int(config.latent_dim)), jnp.float32))
  copy = lambda tree: jax.tree.map(jnp.array, tree)
  return MocaState(
      key_encoder_params=copy(state.params["encoder"]),
      key_encoder_batch_stats=copy(state.batch_stats["encoder"]),
      queue=queue,
      queue_ptr=jnp.zeros((), jnp.int32))


def momentum(state: TrainState) -> jax.Array:
  """The EMA momentum m of this step (cosine schedule of the step)."""
  config = state.config
  return losses.cosine_momentum(state.step, config.num_train_steps,
                                config.moca.momentum_base)


def ema(target, online, m):
  """m * target + (1 - m) * online, leaf by leaf."""
  return jax.tree.map(lambda t, o: m * t + (1.0 - m) * o, target, online)


def loss_fn(params, state: TrainState, images: jax.Array, keys: jax.Array,
            axis_name: Optional[str] = None):
  """Per-device MoCA loss; keys (b, d) are the (stop-gradient) keys of the
  local batch. Returns (loss, (metrics, new_batch_stats, queries (b, d)))."""
  config = state.config
  _, queries, decoded, new_batch_stats = autoencoder.autoencode(
      state, params, images, axis_name=axis_name,
      to_latent=lambda mean, _: priors.to_unit_sphere(mean))
  reconstruction = autoencoder.reconstruction_cost(
      config, autoencoder.to_pixel_means(config, decoded), images)
  contrastive = CONTRASTIVE_LOSSES[config.moca.loss_form](
      queries, lax.stop_gradient(keys), state.extras.queue, config.moca.temperature)
  loss = reconstruction + config.lambda_reg * contrastive
  metrics = {"reconstruction": reconstruction, "regularizer": contrastive,
             "loss": loss}
  return loss, (metrics, new_batch_stats, queries)


def compute_keys(state: TrainState, key_params, key_batch_stats, images,
                 axis_name: Optional[str] = None) -> jax.Array:
  """Unit keys (b, d) of the key encoder (training-mode batch statistics)."""
  (codes, _), _ = autoencoder.encoder_apply(
      state, key_params, key_batch_stats, images, train=True,
      axis_name=axis_name)
  return lax.stop_gradient(priors.to_unit_sphere(codes))


def enqueue(queue: jax.Array, queue_ptr: jax.Array, keys: jax.Array):
  """Writes keys (B, d) at rows [ptr, ptr + B) of queue (K, d); K % B == 0."""
  queue = lax.dynamic_update_slice_in_dim(queue, keys.astype(queue.dtype),
                                          queue_ptr, axis=0)
  return queue, (queue_ptr + keys.shape[0]) % queue.shape[0]


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """EMA of the key encoder, one Adam step, enqueue; returns (state, metrics)."""
  images = autoencoder.batch_images(batch)
  extras = state.extras
  m = momentum(state)
  key_params = ema(extras.key_encoder_params, state.params["encoder"], m)
  key_batch_stats = ema(extras.key_encoder_batch_stats,
                        state.batch_stats["encoder"], m)
  keys = compute_keys(state, key_params, key_batch_stats, images, axis_name)
  grads, (metrics, new_batch_stats, _) = jax.grad(loss_fn, has_aux=True)(
      parallel.per_device(state.params, axis_name), state, images, keys, axis_name)
  grads = parallel.average_grads(grads, axis_name)
  queue, queue_ptr = enqueue(extras.queue, extras.queue_ptr,
                             parallel.gather_invariant(keys, axis_name))
  metrics.update(momentum=m, learning_rate=autoencoder.learning_rate(state))
  new_state = autoencoder.apply_updates(state, grads, new_batch_stats)
  new_state = new_state.replace(extras=MocaState(
      key_encoder_params=key_params, key_encoder_batch_stats=key_batch_stats,
      queue=queue, queue_ptr=queue_ptr))
  return new_state, parallel.mean_metrics(metrics, axis_name)


def encode(state: TrainState, images: jax.Array) -> jax.Array:
  """images -> unit codes (B, d) of the query encoder (eval mode)."""
  return autoencoder.encode(state, images, latent_map=priors.to_unit_sphere)


def reconstruct(state: TrainState, images: jax.Array) -> jax.Array:
  return autoencoder.reconstruct(state, images, latent_map=priors.to_unit_sphere)


def interpolate(state: TrainState, images_a: jax.Array, images_b: jax.Array,
                num_steps: int) -> jax.Array:
  """(B, num_steps, H, W, C): decoded renormalised mixtures of the codes."""
  return autoencoder.interpolate(state, images_a, images_b, num_steps,
                            latent_map=priors.to_unit_sphere)


METHOD = methods.Method(
    name="moca", train_step=train_step, init_extras=init_extras,
    check_config=check_config, config=CONFIG, required=REQUIRED,
    tiny_overrides=tiny_overrides, encode=encode, reconstruct=reconstruct,
    interpolate=interpolate,
    description="momentum contrastive autoencoder on the unit sphere (Arora et al. 2021)")
