"""`jitted(function)`: one jax.jit wrapper per function in a process.

The evaluator, the image grids and the sample exporter compile the same
method functions (sample, encode, ...); sharing the wrapper means each
compiles once per run. A leaf module, so none of them imports the others.
"""

import functools
from typing import Callable


@functools.lru_cache(maxsize=None)
def jitted(function: Callable, static_argnums: tuple = ()) -> Callable:
  """jax.jit of `function` with `static_argnums`, cached per (function, static args)."""
  import jax  # pylint: disable=g-import-not-at-top
  return jax.jit(function, static_argnums=static_argnums)
