"""Training methods, one module each, chosen by config.method.

Each module exports `init(config, rng, example_batch) -> TrainState`, the pure
`train_step(state, batch, axis_name=None) -> (state, metrics)`, and `encode`,
`decode`, `sample`, `reconstruct`, `interpolate`.
"""

import importlib
import types

METHODS = ("wae_mmd", "wae_gan", "vae", "moca", "swae")


def get(name: str) -> types.ModuleType:
  """The method module called `name` (one of METHODS)."""
  if name not in METHODS:
    raise ValueError(
        f"Unknown method {name!r}; set config.method to one of {METHODS}.")
  return importlib.import_module(f"wae_jax.methods.{name}")
