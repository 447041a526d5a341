"""The one immutable training state shared by every method."""

from typing import Any

import flax.linen as nn
import jax
import ml_collections
import optax
from flax import struct


@struct.dataclass
class Networks:
  """The Flax module definitions of a run (static: never traced or saved)."""

  encoder: nn.Module
  decoder: nn.Module


@struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree.

  Leaves are saved in checkpoints; fields marked `pytree_node=False` are the
  static definition of the run (config, modules, optimizer) and are rebuilt
  from the config on restore. A method's own state lives in `extras`, whose
  type the method module defines (see wae_jax/methods/__init__.py).
  """

  step: jax.Array                      # int32 scalar
  params: Any                          # {'encoder': ..., 'decoder': ...}
  batch_stats: Any                     # same keys, {} where a net has no BatchNorm
  opt_state: optax.OptState
  rng: jax.Array                       # base key; a step uses fold_in(rng, step)
  # What the method adds (a flax struct dataclass of its module, e.g. MoCA's
  # queue at `extras.queue`); None for a method that adds nothing.
  extras: Any = None
  # Static definition of the run.
  config: ml_collections.FrozenConfigDict = struct.field(pytree_node=False, default=None)
  networks: Networks = struct.field(pytree_node=False, default=None)
  tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)
