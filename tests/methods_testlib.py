"""Shared helpers of the method tests: tiny configs and real 8x8 digits."""

import functools
import importlib.util
import pathlib

import jax
import numpy as np
from sklearn.datasets import load_digits

from wae_jax import methods

_DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "default.py"


def base_config():
  spec = importlib.util.spec_from_file_location("wae_default_config", _DEFAULT_CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.base_config()


def tiny_config(method: str, batch_size: int = 32, **overrides):
  """A small-MLP config of `method` for 8x8 digits; overrides use a.b keys."""
  config = base_config()
  config.method = method
  config.batch_size = batch_size
  config.latent_dim = 4
  config.model.hidden_sizes = (32,)
  config.adversary.hidden_sizes = (16, 16)
  config.num_train_steps = 50
  config.steps_per_epoch = 10
  config.optimizer.learning_rate = 3e-3
  config.lambda_reg = 1.0
  if method == "vae":
    config.model.encoder = "gaussian"
    config.model.decoder_output = "logits"
    config.vae.likelihood = "bernoulli"
  if method == "moca":
    config.model.encoder = "sphere"
    config.prior = "sphere"
    config.moca.queue_size = 2 * batch_size
    config.moca.temperature = 0.2
    config.lambda_reg = 0.1
  for dotted, value in overrides.items():
    node = config
    *parents, leaf = dotted.split(".")
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


@functools.lru_cache(maxsize=None)
def digits() -> np.ndarray:
  """All 1797 scikit-learn digits as float32 (N, 8, 8, 1) in [0, 1]."""
  images = load_digits().images.astype(np.float32) / 16.0
  return images[..., None]


def digits_batch(batch_size: int, offset: int = 0) -> dict:
  images = digits()[offset:offset + batch_size]
  return {"image": images, "label": np.zeros((batch_size,), np.int32)}


def init_state(config, seed: int = 0):
  method = methods.get(config.method)
  state = method.init(config, jax.random.PRNGKey(seed),
                      digits_batch(config.batch_size))
  return method, state


def jit_step(method):
  return jax.jit(method.train_step, donate_argnums=0)


def copy_tree(tree):
  """A host copy (safe to keep after the device buffers are donated)."""
  return jax.tree.map(np.array, tree)
