"""Engines that execute the runs of a sweep: `local` and `ray`."""

from launch.engines.base import Engine
from wae_jax import cli

ENGINES = ("local", "ray")


def get_engine(name: str, **kwargs) -> Engine:
  """The engine called `name`, built with its keyword arguments."""
  if name == "local":
    from launch.engines import local  # pylint: disable=g-import-not-at-top
    return local.LocalEngine(**kwargs)
  if name == "ray":
    from launch.engines import ray_engine  # pylint: disable=g-import-not-at-top
    return ray_engine.RayEngine(**kwargs)
  raise cli.UserError(f"Unknown engine {name!r}; use one of {ENGINES}.")
