"""Random search: draw a sweep's hyper-parameters from its search space.

A config that carries a random sweep (configs/bigwae.py) holds its search space
as data, name -> (distribution, parameters), and calls `random_sweep`:

  "choice"       a tuple of values, drawn uniformly
  "uniform"      (low, high)
  "log_uniform"  (low, high), uniform in log(value); low > 0

Run index i is configuration i // seeds_per_configuration with seed
i % seeds_per_configuration. Each value of a configuration is drawn from its
own random stream seeded by (sweep seed, configuration index, name) only, so
the same index always gives the same draws whatever num_runs is, and editing
one range leaves the other names' draws unchanged.
"""

import math
import zlib
from typing import Any, Callable

import numpy as np

DISTRIBUTIONS = ("choice", "uniform", "log_uniform")


def draw(name: str, spec: tuple[str, Any], seed: int, configuration: int) -> Any:
  """One value of hyper-parameter `name` for one configuration."""
  distribution, params = spec
  stream = np.random.default_rng(
      [seed, configuration, zlib.crc32(name.encode("utf-8"))])
  if distribution == "choice":
    values = tuple(params)
    if not values:
      raise ValueError(f"SEARCH_SPACE[{name!r}] has an empty choice; list at least one value.")
    value = values[int(stream.integers(len(values)))]
    return value.item() if isinstance(value, np.generic) else value
  low, high = (float(p) for p in params)
  if not low <= high:
    raise ValueError(f"SEARCH_SPACE[{name!r}] has low {low} > high {high}; swap them.")
  if distribution == "uniform":
    value = stream.uniform(low, high)
  elif distribution == "log_uniform":
    if low <= 0:
      raise ValueError(f"SEARCH_SPACE[{name!r}] is log_uniform with low {low} <= 0; "
                       "use a positive low or 'uniform'.")
    value = math.exp(stream.uniform(math.log(low), math.log(high)))
  else:
    raise ValueError(f"SEARCH_SPACE[{name!r}] has distribution {distribution!r}; "
                     f"use one of {DISTRIBUTIONS}.")
  # Four significant digits keep the commands readable; rounding cannot leave
  # [low, high] when the bounds themselves have at most four.
  return min(max(float(f"{value:.4g}"), low), high)


def random_sweep(search_space: dict[str, tuple[str, Any]],
                 to_overrides: Callable[[dict[str, Any]], dict[str, Any]],
                 num_runs: int, seed: int = 0,
                 seeds_per_configuration: int = 1) -> list[dict[str, Any]]:
  """The first num_runs runs of a random sweep.

  Args:
    search_space: name -> (distribution, parameters).
    to_overrides: {name: drawn value} -> flat dotted config overrides of one
      configuration (the config decides which names apply).
    num_runs: how many runs (indices 0 .. num_runs-1).
    seed: the sweep's seed; the same (seed, index) always gives the same run.
    seeds_per_configuration: runs of one configuration, differing in "seed".

  Returns:
    num_runs dicts of overrides, each with "seed" (the run's seed).
  """
  if num_runs < 0:
    raise ValueError(f"num_runs is {num_runs}; give a number of runs >= 0.")
  runs = []
  for index in range(num_runs):
    configuration = index // seeds_per_configuration
    drawn = {name: draw(name, spec, seed, configuration)
             for name, spec in search_space.items()}
    overrides = to_overrides(drawn)
    overrides["seed"] = index % seeds_per_configuration
    runs.append(overrides)
  return runs
