"""Schedules that are pure functions of the step."""

from typing import Union

import jax
import jax.numpy as jnp
import numpy as np


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
