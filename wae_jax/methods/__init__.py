"""Training methods, one module each, found by name: config.method = 'vae'
is wae_jax/methods/vae.py.

`get(name)` returns the method's `Method` record:

    method = methods.get(config.method)
    state = method.init(config, rng, {"image": images})     # -> TrainState
    state, metrics = method.train_step(state, batch)       # pure, jittable
    method.encode / decode / sample / reconstruct / interpolate (eval mode)
    method.check_config(config)                            # ValueError if unusable
    method.required                                        # {'model.encoder': 'gaussian', ...}
    method.config                                          # the fields it adds to the schema

A method is a module of this package whose name does not start with '_' and
that defines `METHOD = Method(...)`, naming only what differs from the
defaults below (shared.autoencoder.encode, .sample, ...; an `init` that runs
`check_config`, builds the base state and adds the method's state from
`init_extras`). `names()` lists them; code the methods share lives in the
`shared` subpackage, which is not a method. Adding a method is adding its file.

Method state. What a method adds to the TrainState (MoCA's key encoder and
queue, WAE-GAN's adversary and its optimizer) is one flax struct dataclass of
the method module, stored in `state.extras` (None for a method that adds
nothing). So a new method adds no field to wae_jax/state.py, and checkpoints
save whatever the extras hold.

Config. `Method.config` maps the top-level config fields the method owns to
their defaults (a dict value is a group of fields); wae_jax/config.py adds
every method's fields to the shared ones, so each run's config holds them all
and a method's own defaults are written once, in its module.

Required values. `Method.required` maps dotted config fields to the values the
method cannot run without (the VAE's Gaussian encoder, MoCA's sphere).
`apply_required(config)` sets them (a ConfigDict, or a flat dict of dotted
overrides that has 'method'); wae_jax/config.py's `use_method` also refuses
a value the user set that contradicts them.
"""

import dataclasses
import functools
import importlib
import pkgutil
import types
from typing import Any, Callable, Mapping, Optional

import ml_collections

from wae_jax import compiled
from wae_jax.methods.shared import autoencoder


def _no_check(config: ml_collections.ConfigDict) -> None:
  del config


def _no_overrides(batch_size: int) -> dict:
  del batch_size
  return {}


@dataclasses.dataclass(frozen=True, eq=False)
class Method:
  """A training method: its state, its step, its config and its inference functions.

  One record per method, compared and hashed by identity.

  Attributes:
    name: the config.method value (the module's name).
    train_step: (state, batch, axis_name=None) -> (state, metrics); batch is
      {'image': float32 (B, H, W, C) in [0, 1], ...}.
    init: (config, rng, example_batch) -> TrainState; default: `check_config`,
      autoencoder.create_state, then extras = init_extras(config, key, state)
      with key = autoencoder.init_keys(rng)['method'].
    init_extras: (config, key, base state) -> the method's `state.extras`;
      None for a method that adds no state.
    check_config: config -> None, raises ValueError with one sentence.
    config: {top-level config field: default} the method adds to the schema;
      a dict default is a group of fields (e.g. {'vae': {'beta': 1.0}}).
      Two methods may declare the same field only with the same default.
    required: {dotted config field: value} the method needs (see
      `apply_required`).
    pretrains: whether config.pretrain.enabled runs the encoder pretraining
      (shared/pretraining.py) before its first step.
    tiny_overrides: global batch size -> {dotted field: value} that a tiny
      test run of this method needs beyond small widths (e.g. MoCA's queue,
      a multiple of the batch); the tests build their configs with it.
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
    mmd_settings: config -> losses.mmd_penalty's kernel, scales and prior_var
      for this method's codes; the evaluator's latent_mmd uses it.
    description: one line for the docs' table of methods.
  """

  name: str
  train_step: Callable
  init: Optional[Callable] = None
  init_extras: Optional[Callable] = None
  check_config: Callable = _no_check
  config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  required: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  pretrains: bool = False
  tiny_overrides: Callable[[int], dict] = _no_overrides
  encode: Callable = autoencoder.encode
  decode: Callable = autoencoder.decode
  sample: Callable = autoencoder.sample
  reconstruct: Callable = autoencoder.reconstruct
  interpolate: Callable = autoencoder.interpolate
  sample_prior: Callable = autoencoder.sample_prior
  init_from_data: Optional[Callable] = None
  mmd_settings: Callable = autoencoder.mmd_settings
  description: str = ""

  def __post_init__(self):
    object.__setattr__(self, "required", types.MappingProxyType(dict(self.required)))
    object.__setattr__(self, "config", types.MappingProxyType(dict(self.config)))
    if self.init is None:
      check_config, init_extras = self.check_config, self.init_extras

      def init(config, rng, example_batch):
        check_config(config)
        state = autoencoder.create_state(config, rng, example_batch)
        if init_extras is None:
          return state
        key = autoencoder.init_keys(rng)["method"]
        return state.replace(extras=init_extras(config, key, state))

      init.__doc__ = f"Checks the config, then builds {self.name}'s base state."
      object.__setattr__(self, "init", init)


@functools.lru_cache(maxsize=None)
def names() -> tuple:
  """Every method's name, sorted: the modules of this package that define METHOD."""
  found = []
  for info in pkgutil.iter_modules(__path__):
    if info.ispkg or info.name.startswith("_"):
      continue
    module = importlib.import_module(f"{__name__}.{info.name}")
    if isinstance(getattr(module, "METHOD", None), Method):
      found.append(info.name)
  return tuple(sorted(found))


def get(name: str) -> Method:
  """The `Method` record of config.method `name` (one of `names()`)."""
  if name not in names():
    raise ValueError(
        f"Unknown method {name!r}; set config.method to one of {', '.join(names())}.")
  method = importlib.import_module(f"{__name__}.{name}").METHOD
  if method.name != name:
    raise ValueError(f"wae_jax/methods/{name}.py declares METHOD.name={method.name!r}; "
                     f"name it {name!r}, like its file.")
  return method


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


jitted = compiled.jitted  # Method functions are what it compiles; its home is a leaf module.
