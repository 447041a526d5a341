"""The valued train step: a method's step reading the scalar hyper-parameters
of wae_jax/hparams.py as values, so one compiled program serves runs that
differ only in them (a population, wae_jax/population.py, or solo runs of a
sweep in one process).

The method code reads `config.lambda_reg` as it always did: inside the trace
the state's config is a copy whose step fields hold traced float32 scalars
(`bind`), and the parts built from the config (optimizers, the WAE-GAN
adversary) are rebuilt from it (`Method.with_config`), so the learning rate
is a value too. A solo run goes through the same step (wae_jax/train.py), so
member i of a population runs the operations of the run trained alone.
"""

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections


def bind(config: ml_collections.ConfigDict, hparams: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` whose `hparams` fields hold the given (traced) scalars."""
  plain = (config.as_configdict() if isinstance(config, ml_collections.FrozenConfigDict)
           else config).to_dict()
  for name, value in hparams.items():
    node = plain
    *parents, leaf = name.split(".")
    for part in parents:
      node = node[part]
    node[leaf] = jnp.asarray(value, jnp.float32)
  return ml_collections.ConfigDict(plain)


def valued_step(method) -> Callable:
  """method.train_step reading hparams.step_fields as values:
  fn(state, hparams {field: float32 scalar}, batch, axis_name) -> (state, metrics).

  Inside the trace the state reads `bind(state.config, hparams)` with its
  optimizers rebuilt from it (`method.with_config`); the returned state has
  the static parts (config, modules, optimizers) of the state passed in.
  """
  if method not in _valued_steps:
    _valued_steps[method] = _make_valued_step(method)
  return _valued_steps[method]


_valued_steps: dict = {}  # One function per method, so jit caches by it.


def _make_valued_step(method) -> Callable:
  def step(state, hparams, batch, axis_name=None):
    bound = method.with_config(state, bind(state.config, hparams))
    new_state, metrics = method.train_step(bound, batch, axis_name)
    # The static parts of the state passed in, the leaves of the new one.
    return jax.tree.unflatten(jax.tree.structure(state), jax.tree.leaves(new_state)), metrics

  step.__name__ = f"{method.name}_valued_step"
  return step
