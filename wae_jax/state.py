"""The one immutable training state shared by every method."""

from typing import Any, Optional

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
  adversary: Optional[nn.Module] = None


@struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree.

  Leaves are saved in checkpoints; fields marked `pytree_node=False` are the
  static definition of the run (config, modules, optimizers) and are rebuilt
  from the config on restore. Fields a method does not use stay None.
  """

  step: jax.Array                      # int32 scalar
  params: Any                          # {'encoder': ..., 'decoder': ...}
  batch_stats: Any                     # same keys, {} where a net has no BatchNorm
  opt_state: optax.OptState
  rng: jax.Array                       # base key; a step uses fold_in(rng, step)
  # MoCA: the key encoder (EMA of the query encoder) and the queue of keys.
  key_encoder_params: Any = None
  key_encoder_batch_stats: Any = None
  queue: Optional[jax.Array] = None    # (K, latent_dim), unit rows
  queue_ptr: Optional[jax.Array] = None  # int32 scalar, next slot to write
  # WAE-GAN: the latent adversary and its own optimizer.
  adversary_params: Any = None
  adversary_opt_state: Optional[optax.OptState] = None
  # WAE-MMD / WAE-GAN: pretraining steps taken (int32 scalar; 0 = not yet).
  encoder_pretrained: Optional[jax.Array] = None
  # Symmetric WAE: a learnable prior.
  prior_params: Any = None
  # Static definition of the run.
  config: ml_collections.FrozenConfigDict = struct.field(pytree_node=False, default=None)
  networks: Networks = struct.field(pytree_node=False, default=None)
  tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)
  adversary_tx: Optional[optax.GradientTransformation] = struct.field(
      pytree_node=False, default=None)
