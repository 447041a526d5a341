"""Training methods, one module each, chosen by config.method.

`get(name)` returns the method's `Method` record:

    method = methods.get(config.method)
    state = method.init(config, rng, example_batch)        # -> TrainState
    state, metrics = method.train_step(state, batch)       # pure, jittable
    method.encode / decode / sample / reconstruct / interpolate (eval mode)
    method.check_config(config)                            # ValueError if unusable
    method.required                                        # {'model.encoder': 'gaussian', ...}

A method module declares itself with one `METHOD = Method(...)` that names
only what differs from the defaults below (common.encode, common.sample, ...;
an `init` that runs `check_config`, builds the base state and adds the
method's state from `init_extras`).

Method state. What a method adds to the TrainState (MoCA's key encoder and
queue, WAE-GAN's adversary and its optimizer) is one flax struct dataclass of
the method module, stored in `state.extras` (None for a method that adds
nothing): e.g. `state.extras.queue`, `state.extras.adversary_params`. So a new
method adds no field to wae_jax/state.py, and checkpoints save whatever the
extras hold.

Required values. `Method.required` maps dotted config fields to the values the
method cannot run without (the VAE's Gaussian encoder, MoCA's sphere). Configs,
the sweep, tests and benchmarks all set them with `apply_required(config)`,
which takes a ConfigDict or a flat dict of dotted overrides that has 'method'.
"""

import dataclasses
import importlib
import types
from typing import Any, Callable, Mapping, Optional

import ml_collections

from wae_jax.methods import common

METHODS = ("wae_mmd", "wae_gan", "vae", "moca", "swae")


def _no_check(config: ml_collections.ConfigDict) -> None:
  del config


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
  """A training method: its state, its step and its inference functions.

  One record per method, compared and hashed by identity.

  Attributes:
    name: the config.method value.
    train_step: (state, batch, axis_name=None) -> (state, metrics).
    init: (config, rng, example_batch) -> TrainState; default: `check_config`,
      common.create_state, then extras = init_extras(config, key, state) with
      key = common.init_keys(rng)['method'].
    init_extras: (config, key, base state) -> the method's `state.extras`;
      None for a method that adds no state.
    check_config: config -> None, raises ValueError with one sentence.
    required: {dotted config field: value} the method needs (see
      `apply_required`).
    encode: (state, images (B,H,W,C)) -> codes (B, d).
    decode: (state, codes (B, d)) -> pixel means (B,H,W,C) in [0, 1].
    sample: (state, key, n) -> (n,H,W,C) decoded prior samples.
    reconstruct: (state, images) -> G(E(images)).
    interpolate: (state, images_a, images_b, num_steps) -> (B, num_steps, H, W, C).
    sample_prior: (state, key, n) -> (n, d) prior draws (a learned prior for
      SWAE; the latent distances compare codes with them).
    init_from_data: (state, data source) -> state, for a method that starts
      from training data (SWAE's pseudo-inputs); the trainer calls it after
      `init` on a fresh run. None: nothing to do.
  """

  name: str
  train_step: Callable
  init: Optional[Callable] = None
  init_extras: Optional[Callable] = None
  check_config: Callable = _no_check
  required: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  encode: Callable = common.encode
  decode: Callable = common.decode
  sample: Callable = common.sample
  reconstruct: Callable = common.reconstruct
  interpolate: Callable = common.interpolate
  sample_prior: Callable = common.sample_prior
  init_from_data: Optional[Callable] = None

  def __post_init__(self):
    object.__setattr__(self, "required", types.MappingProxyType(dict(self.required)))
    if self.init is None:
      check_config, init_extras = self.check_config, self.init_extras

      def init(config, rng, example_batch):
        check_config(config)
        state = common.create_state(config, rng, example_batch)
        if init_extras is None:
          return state
        key = common.init_keys(rng)["method"]
        return state.replace(extras=init_extras(config, key, state))

      init.__doc__ = f"Checks the config, then builds {self.name}'s base state."
      object.__setattr__(self, "init", init)


def get(name: str) -> Method:
  """The `Method` record of config.method `name` (one of METHODS)."""
  if name not in METHODS:
    raise ValueError(
        f"Unknown method {name!r}; set config.method to one of {METHODS}.")
  return importlib.import_module(f"wae_jax.methods.{name}").METHOD


def apply_required(config):
  """Sets the config values config.method needs (`Method.required`); returns config.

  Args:
    config: an ml_collections.ConfigDict, or a flat dict of dotted overrides
      with a 'method' key (one run of a sweep).
  """
  required = get(config["method"]).required
  for dotted, value in required.items():
    if isinstance(config, ml_collections.ConfigDict):
      *parents, leaf = dotted.split(".")
      node = config
      for name in parents:
        node = node[name]
      node[leaf] = value
    else:
      config[dotted] = value
  return config
