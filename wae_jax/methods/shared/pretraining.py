"""WAE encoder pretraining, as the WAE code runs it before training (wae.py
429-452): the encoder alone is trained so that the sample mean and covariance
of its codes match those of the prior.

With config.pretrain.enabled (for a method whose record says `pretrains`:
WAE-MMD and WAE-GAN, which add `CONFIG` to their config), before the first train
step the trainer calls `pretrain_encoder`: up to config.pretrain.max_steps
(the code's 200) steps of a separate Adam (the code builds its own optimizer:
learning rate config.pretrain.learning_rate, or config.optimizer.learning_rate
when that is <= 0, without decay, and config.optimizer.b1), each on
config.pretrain.sample_size training images (the code's
e_pretrain_sample_size) and as many prior samples, minimising
`moment_matching_loss`; it stops after the first step whose loss (before the
update, as the code reads it) is below config.pretrain.stop_loss (0.1). The
codes are those of training (input noise, Gaussian encoder noise, batch-norm
statistics updated).

The method's state (`state.extras.encoder_pretrained`: WAE-MMD's
`PretrainState`, WAE-GAN's `AdversaryState`) records the number of
pretraining steps taken (at least 1 once done), so a run resumed from a
checkpoint never pretrains again; the main Adam's state and the step counter
are untouched.
"""

from typing import Any, Iterator, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct

from wae_jax import cli
from wae_jax import fields
from wae_jax import parallel
from wae_jax.methods.shared import autoencoder
from wae_jax.state import TrainState

# The fields a pretraining method adds to the config, with their defaults.
CONFIG = {
    "pretrain": {
        "enabled": False,
        "sample_size": 1000,     # images (and prior samples) per step
        "max_steps": 200,
        "stop_loss": 0.1,        # stop after the first step whose loss is below
        "learning_rate": -1.0,   # <= 0: optimizer.learning_rate
    },
}
NUMBERS = (
    ("pretrain.sample_size", dict(low=2, integer=True)),
    ("pretrain.max_steps", dict(low=1, integer=True)),
    ("pretrain.stop_loss", dict(low=0)),
)
# Pretraining step t draws its noise from fold_in(fold_in(rng, KEY_STREAM), t),
# a stream apart from the train steps' fold_in(rng, step).
KEY_STREAM = 2**31 - 1


@struct.dataclass
class PretrainState:
  """WAE-MMD's `state.extras`: the pretraining record alone."""

  encoder_pretrained: jax.Array  # int32: pretraining steps taken (0 = not yet)


def not_yet() -> jax.Array:
  """The record of a run that has not pretrained."""
  return jnp.zeros((), jnp.int32)


def moment_matching_loss(codes: jax.Array, prior_samples: jax.Array) -> jax.Array:
  """Mean squared difference of the means plus that of the covariances.

  codes, prior_samples: (n, d); unbiased covariances ((n - 1) divisor), as
  wae.py:130-144.
  """
  def moments(z):
    mean = jnp.mean(z, axis=0, keepdims=True)
    centred = z - mean
    return mean, centred.T @ centred / (z.shape[0] - 1)

  mean_q, cov_q = moments(codes)
  mean_p, cov_p = moments(prior_samples)
  return jnp.mean(jnp.square(mean_q - mean_p)) + jnp.mean(jnp.square(cov_q - cov_p))


def check_config(config: ml_collections.ConfigDict, num_devices: Optional[int] = None) -> None:
  """cli.UserError for a pretraining number out of range or a sample that
  does not split over `num_devices` (when config.pretrain.enabled)."""
  if not config.pretrain.enabled:
    return
  for field, limits in NUMBERS:
    fields.check_number(config, field, **limits)
  if num_devices is not None and config.pretrain.sample_size % num_devices:
    raise cli.UserError(
        f"config.pretrain.sample_size={config.pretrain.sample_size} is not divisible by "
        f"the {num_devices} devices; use a multiple of {num_devices}.")


def wanted(state: TrainState) -> bool:
  """Whether this run (of a method that `pretrains`) pretrains its encoder
  now: enabled and not yet done."""
  return bool(state.config.pretrain.enabled) and steps_taken(state) == 0


def steps_taken(state: TrainState) -> int:
  """Pretraining steps this run took (0: not pretrained yet)."""
  return int(state.extras.encoder_pretrained)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  learning_rate = float(config.pretrain.learning_rate)
  if learning_rate <= 0:
    learning_rate = float(config.optimizer.learning_rate)
  return optax.adam(learning_rate, b1=float(config.optimizer.b1),
                    b2=float(config.optimizer.b2))


def pretrain_step(carry, batch: dict, axis_name: Optional[str] = None):
  """One step on the encoder: carry = (state, pretrain Adam state, t) ->
  (new carry, {"pretrain_loss": loss before the update})."""
  state, opt_state, t = carry
  tx = make_optimizer(state.config)
  images = autoencoder.batch_images(batch)
  key = jax.random.fold_in(jax.random.fold_in(state.rng, KEY_STREAM), t)
  noise_key, latent_key, prior_key = jax.random.split(key, 3)
  encoder_input = autoencoder.noisy_encoder_input(state.config, images, noise_key, axis_name)

  def loss_fn(encoder_params):
    (mean, logvar), stats = autoencoder.encoder_apply(
        state, encoder_params, state.batch_stats["encoder"], encoder_input, train=True,
        axis_name=axis_name)
    codes = parallel.gather(autoencoder.gaussian_latent(latent_key, axis_name)(mean, logvar),
                          axis_name)
    prior_samples = autoencoder.sample_prior(state, prior_key, codes.shape[0])
    return moment_matching_loss(codes, prior_samples), stats

  params = state.params["encoder"]
  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      parallel.per_device(params, axis_name))
  updates, opt_state = tx.update(parallel.average_grads(grads, axis_name), opt_state, params)
  state = state.replace(
      params={**state.params, "encoder": optax.apply_updates(params, updates)},
      batch_stats={**state.batch_stats, "encoder": stats})
  return (state, opt_state, t + 1), parallel.mean_metrics({"pretrain_loss": loss}, axis_name)


def sample_batches(batches: Iterator[dict], sample_size: int, process_count: int
                   ) -> Iterator[dict]:
  """Host-local samples of sample_size / process_count images, cut from
  consecutive host-local training batches."""
  local_size = sample_size // process_count
  pending, have = [], 0
  for batch in batches:
    pending.append(batch["image"])
    have += len(batch["image"])
    while have >= local_size:
      images = np.concatenate(pending)
      yield {"image": images[:local_size]}
      pending, have = [images[local_size:]], have - local_size


def pretrain_encoder(state: TrainState, batches: Iterator[dict],
                     mesh: jax.sharding.Mesh) -> tuple[TrainState, list[float]]:
  """Runs the pretraining phase on a replicated state; returns (state marked
  as pretrained, the loss of every step taken).

  batches: host-local training batches (any size); they are regrouped into
  config.pretrain.sample_size images per step.
  """
  config = state.config
  step = parallel.make_parallel_step(pretrain_step, mesh, donate_state=False)
  carry: Any = (state, make_optimizer(config).init(state.params["encoder"]),
                jnp.zeros((), jnp.int32))
  samples = sample_batches(batches, int(config.pretrain.sample_size), jax.process_count())
  history = []
  for _ in range(int(config.pretrain.max_steps)):
    carry, metrics = step(carry, parallel.shard_batch(next(samples), mesh))
    history.append(float(metrics["pretrain_loss"]))
    if history[-1] < float(config.pretrain.stop_loss):
      break
  state = carry[0]
  record = jnp.asarray(len(history), jnp.int32)
  return state.replace(extras=state.extras.replace(encoder_pretrained=record)), history
