"""Shared helpers of the method tests: tiny configs, real 8x8 digits, and
train steps compiled once per process.

Compiling the train steps is nearly all the time these tests take (a step of
the tiny MLP runs in about a millisecond, its compile takes seconds), so:
- tests compile with `COMPILER_OPTIONS`: XLA:CPU's LLVM optimisation level 0
  and its classic (not the MLIR fusion-emitter) kernel generation. They change
  how fast the machine code runs, not what the program computes (states after
  five steps agree with the default build to < 1e-6 relative), and cut a
  step's compile from ~3 s to ~0.5 s;
- `init_state` and the inference helpers are jitted with them too: eager
  Flax init compiles every primitive on its own, which costs more;
- `shared_setup` builds each (method, config) state and its jitted step once
  per process, so tests that need the same config reuse one compile. The
  jitted step does not donate, so the shared initial state stays valid.
"""

import functools
import types

import jax
import numpy as np
from sklearn.datasets import load_digits

from wae_jax import config as wae_config
from wae_jax import fields
from wae_jax import methods

COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}
if jax.default_backend() == "cpu":  # an XLA:CPU option; other backends reject it
  COMPILER_OPTIONS["xla_cpu_use_fusion_emitters"] = False


def base_config():
  return wae_config.base_config()


def tiny_config(method: str, batch_size: int = 32, **overrides):
  """A small-MLP config of `method` for 8x8 digits: the method's required
  values and its `tiny_overrides(batch_size)`, then `overrides` (a.b keys)."""
  config = wae_config.for_method(method)
  config.batch_size = batch_size
  config.latent_dim = 4
  config.model.hidden_sizes = (32,)
  config.num_train_steps = 50
  config.steps_per_epoch = 10
  config.optimizer.learning_rate = 3e-3
  config.lambda_reg = 1.0
  for dotted, value in {**methods.get(method).tiny_overrides(batch_size),
                        **overrides}.items():
    fields.set_value(config, dotted, value)
  return config


@functools.lru_cache(maxsize=None)
def digits() -> np.ndarray:
  """All 1797 scikit-learn digits as float32 (N, 8, 8, 1) in [0, 1]."""
  images = load_digits().images.astype(np.float32) / 16.0
  return images[..., None]


def digits_batch(batch_size: int, offset: int = 0) -> dict:
  images = digits()[offset:offset + batch_size]
  return {"image": images, "label": np.zeros((batch_size,), np.int32)}


def jit(fn, **kwargs):
  """jax.jit with the tests' fast-compile options."""
  return jax.jit(fn, compiler_options=COMPILER_OPTIONS, **kwargs)


def init_state(config, seed: int = 0):
  """(method module, method.init(config, PRNGKey(seed), digits batch)), with
  init jitted (config errors are raised while it is traced)."""
  method = methods.get(config.method)
  example_batch = digits_batch(config.batch_size)
  state = jit(lambda rng: method.init(config, rng, example_batch))(
      jax.random.PRNGKey(seed))
  return method, state


def jit_step(method):
  """The method's train step, jitted (no donation: inputs stay valid)."""
  return jit(method.train_step)


@functools.lru_cache(maxsize=None)
def _shared_setup(method_name, batch_size, override_items):
  config = tiny_config(method_name, batch_size, **dict(override_items))
  method, state = init_state(config)
  return method, state, jit_step(method)


def shared_setup(method_name: str, batch_size: int = 32, **overrides):
  """(config, method, initial state, jitted step) of tiny_config(...).

  The same arguments give the same state and step object in the whole
  process, so the step compiles once for all the tests that use them. The
  config is a fresh copy (changing it changes nothing in the state).
  """
  method, state, step = _shared_setup(method_name, batch_size,
                                      tuple(sorted(overrides.items())))
  return state.config.as_configdict(), method, state, step


def copy_tree(tree):
  """A host copy of every leaf."""
  return jax.tree.map(np.array, tree)


@functools.lru_cache(maxsize=None)
def inference(method) -> types.SimpleNamespace:
  """The method's inference helpers, jitted once per process (n and
  num_steps static)."""
  return types.SimpleNamespace(
      encode=jit(method.encode),
      decode=jit(method.decode),
      reconstruct=jit(method.reconstruct),
      sample=jit(method.sample, static_argnums=2),
      interpolate=jit(method.interpolate, static_argnums=3))


def sigkill_after_first_checkpoint(process, workdir: str) -> None:
  """SIGKILLs the child `process` (a subprocess.Popen training into `workdir`)
  as soon as its first checkpoint is complete; asserts it is alive until then."""
  import os, signal, time  # pylint: disable=g-import-not-at-top,multiple-imports
  deadline = time.time() + 300
  checkpoints = os.path.join(workdir, "checkpoints")
  try:
    # A step folder is named by its step only once orbax has finalised it.
    while not (os.path.isdir(checkpoints) and any(d.isdigit() for d in os.listdir(checkpoints))):
      assert process.poll() is None, process.stderr.read().decode()[-2000:]
      assert time.time() < deadline, "the child run never saved a checkpoint"
      time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.wait()
