"""Optimizers and the schedules of the papers: learning rate and EMA momentum.

Schedules are pure functions of the step (the global step counter, which equals
the optax count of the optimizer state), never state of their own. Epochs are
`step // config.steps_per_epoch` with `steps_per_epoch` counted in global
batches; the trainer fills it from the dataset when the config leaves it <= 0.
`cosine_momentum` is also exported as `wae_jax.losses.cosine_momentum`.
"""

from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

SCHEDULES = ("constant", "wae_piecewise", "step")

# The WAE paper's manual decay: (first epoch it applies from, cumulative factor).
# Halve after epoch 30, then divide by 5 after 50 and by 10 after 100.
WAE_PIECEWISE_FACTORS = ((30, 0.5), (50, 0.5 / 5.0), (100, 0.5 / 5.0 / 10.0))


def _steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  steps_per_epoch = int(config.steps_per_epoch)
  if steps_per_epoch <= 0:
    raise ValueError(
        f"optimizer.schedule={config.optimizer.schedule!r} needs "
        f"config.steps_per_epoch > 0 (got {steps_per_epoch}); set it, or let the "
        "trainer fill it from the dataset before building the optimizer.")
  return steps_per_epoch


def learning_rate_schedule(
    config: ml_collections.ConfigDict,
    base_learning_rate: Optional[float] = None) -> Callable[[jnp.ndarray], jnp.ndarray]:
  """Returns step -> learning rate (float32 scalar) for config.optimizer.

  The schedule's factors multiply config.optimizer.learning_rate, or
  `base_learning_rate` when given (the WAE-GAN adversary decays with the
  encoder-decoder, as in the WAE paper and code).

  constant: config.optimizer.learning_rate at every step.
  wae_piecewise: lr x 1 before epoch 30, x 1/2 from epoch 30, x 1/10 from
    epoch 50, x 1/100 from epoch 100 (the WAE paper's cumulative factors).
  step: lr x decay_factor ** (e // decay_every_epochs), e = epoch, or
    min(epoch, decay_until_epoch) when decay_until_epoch > 0 (MoCA's
    CelebA-HQ halves every 40 epochs until epoch 400).
  """
  opt = config.optimizer
  base_lr = opt.learning_rate if base_learning_rate is None else base_learning_rate
  # A Python number, or a traced float32 value (a population member's, hparams.bind).
  base_lr = float(base_lr) if isinstance(base_lr, (int, float)) else base_lr
  schedule = opt.schedule
  if schedule == "constant":
    return lambda step: jnp.asarray(base_lr, jnp.float32)
  if schedule == "wae_piecewise":
    steps_per_epoch = _steps_per_epoch(config)

    def wae_piecewise(step):
      epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
      factor = jnp.float32(1.0)
      # Thresholds from low to high, so the highest one reached wins.
      for first_epoch, cumulative in sorted(WAE_PIECEWISE_FACTORS):
        factor = jnp.where(epoch >= first_epoch, jnp.float32(cumulative), factor)
      return jnp.float32(base_lr) * factor

    return wae_piecewise
  if schedule == "step":
    steps_per_epoch = _steps_per_epoch(config)
    decay_every = int(opt.decay_every_epochs)
    if decay_every <= 0:
      raise ValueError(
          "optimizer.schedule='step' needs optimizer.decay_every_epochs > 0 "
          f"(got {decay_every}).")
    decay_factor = float(opt.decay_factor)
    decay_until = int(opt.decay_until_epoch)

    def step_decay(step):
      epoch = jnp.asarray(step, jnp.int32) // steps_per_epoch
      if decay_until > 0:
        epoch = jnp.minimum(epoch, decay_until)
      num_decays = (epoch // decay_every).astype(jnp.float32)
      return jnp.float32(base_lr) * jnp.float32(decay_factor) ** num_decays

    return step_decay
  raise ValueError(
      f"Unknown optimizer.schedule {schedule!r}; use one of {SCHEDULES}.")


GRADIENT_NORM_EPS = 1e-7


def normalize_gradients() -> optax.GradientTransformation:
  """Divides each gradient tensor by its own L2 norm (+ 1e-7).

  The "AdamNormGrad" of the VampPrior and Symmetric WAE code
  (github.com/sunsunyyl/SWAE utils/optimizer.py:53): every parameter tensor's
  gradient is normalised before Adam sees it.
  """
  def normalize(updates, params=None):
    del params
    return jax.tree.map(
        lambda g: g / (jnp.sqrt(jnp.sum(jnp.square(g))) + GRADIENT_NORM_EPS), updates)
  return optax.stateless(normalize)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam (b1, b2 from config.optimizer) with the configured schedule, after
  per-tensor gradient normalisation when optimizer.normalize_gradients."""
  adam = optax.adam(
      learning_rate=learning_rate_schedule(config),
      b1=float(config.optimizer.b1),
      b2=float(config.optimizer.b2))
  if config.optimizer.get("normalize_gradients", False):
    return optax.chain(normalize_gradients(), adam)
  return adam


def make_adversary_optimizer(
    config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The WAE-GAN adversary's own Adam: config.adversary.learning_rate under the
  encoder-decoder's schedule (wae.py:398 decays both by the same factor)."""
  return optax.adam(
      learning_rate=learning_rate_schedule(config, config.adversary.learning_rate),
      b1=float(config.adversary.b1),
      b2=float(config.optimizer.b2))


def cosine_momentum(step: Union[int, jax.Array],
                    total_steps: Union[int, jax.Array],
                    base: Union[float, jax.Array]) -> jax.Array:
  """EMA momentum rising from `base` to 1 on a half cosine (BYOL, MoCA).

    m(step) = 1 - (1 - base) (cos(pi step / total_steps) + 1) / 2

  `step` is clipped to [0, total_steps], so m stays at 1 after the schedule
  ends (a resumed run that trains longer keeps a frozen key encoder rather
  than a momentum that falls again).

  Args:
    step: scalar (or any-shape) int or float step; traced values are fine.
    total_steps: positive scalar, the length of the schedule.
    base: scalar m0 in [0, 1].

  Returns:
    float32 array of the shape of `step` (a scalar for a scalar step).
  """
  if isinstance(total_steps, (int, float)) and total_steps <= 0:
    raise ValueError(
        f"cosine_momentum needs total_steps > 0, got {total_steps}; pass the "
        "number of training steps.")
  step = jnp.asarray(step, jnp.float32)
  total_steps = jnp.asarray(total_steps, jnp.float32)
  base = jnp.asarray(base, jnp.float32)
  progress = jnp.clip(step, 0.0, total_steps) / total_steps
  return 1.0 - (1.0 - base) * (jnp.cos(np.pi * progress) + 1.0) / 2.0
