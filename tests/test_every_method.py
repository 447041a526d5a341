"""Every method the registry finds (wae_jax/methods/<name>.py), end to end:
a command-line run that switches to it with --config.method (its required
values applied), a run killed after its first checkpoint and resumed that ends
bitwise equal to it, and the sample export of its checkpoint.

Nothing here names a method: a new method module is covered by these tests
(and by test_methods.py's init/step and test_parallel.py's 8-vs-1 tests) as
soon as its file exists.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import methods_testlib as lib
import pytest

from wae_jax import checkpoint
from wae_jax import config as wae_config
from wae_jax import data
from wae_jax import fields
from wae_jax import methods
from wae_jax import sample
from wae_jax import train

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 6

# A config file for one method: the schema's defaults (the default method's,
# as configs/default.py), small widths and the method's own tiny_overrides.
# Runs switch it to the method as a user does: --config.method on the command
# line, `switched` in this process.
CONFIG_FILE = textwrap.dedent("""
    from wae_jax import config as wae_config
    from wae_jax import fields
    from wae_jax import methods

    def get_config(arg=None):
      config = wae_config.base_config()
      overrides = {{"batch_size": 16, "latent_dim": 4, "model.hidden_sizes": (16,),
                   "num_train_steps": {steps}, "log_every_steps": 2,
                   "checkpoint_every_steps": 2, "eval_every_steps": {steps},
                   "keep_checkpoints": 2, "num_eval_images": 8,
                   **methods.get({name!r}).tiny_overrides(16)}}
      for field, value in overrides.items():
        fields.set_value(config, field, value)
      config.lock()
      return config
""")

# The killed child: the config file's run with a sleep per call, so that it
# can be killed between checkpoints (the sleep changes the timing, never the
# numbers).
KILLABLE_RUN = textwrap.dedent("""
    import importlib.util, sys, time
    sys.path.insert(0, {repo!r})
    from wae_jax import config as wae_config
    from wae_jax import train
    spec = importlib.util.spec_from_file_location("run_config", {config_file!r})
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    original = train.make_train_step
    def slow_make_train_step(method, mesh, steps_per_call, **kwargs):
      step, put_batch, put_state = original(method, mesh, steps_per_call, **kwargs)
      def slow_step(state, batch):
        time.sleep(0.25)
        return step(state, batch)
      return slow_step, put_batch, put_state
    train.make_train_step = slow_make_train_step
    train.train_and_evaluate(wae_config.use_method(module.get_config(), {name!r}), {workdir!r})
""")


def _write_config_file(directory, name) -> str:
  path = os.path.join(directory, f"{name}_config.py")
  with open(path, "w", encoding="utf-8") as f:
    f.write(CONFIG_FILE.format(name=name, steps=NUM_STEPS))
  return path


def _switched_config(path, name):
  """The config file's config switched to method `name`, as --config.method=name does."""
  spec = importlib.util.spec_from_file_location("run_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return wae_config.use_method(module.get_config(), name)


def _kill_after_first_checkpoint(config_file: str, name: str, workdir: str) -> None:
  script = KILLABLE_RUN.format(repo=REPO_ROOT, config_file=config_file, name=name,
                               workdir=workdir)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  lib.sigkill_after_first_checkpoint(process, workdir)


@pytest.mark.slow
@pytest.mark.parametrize("name", methods.names())
def test_cli_run_resume_after_kill_and_sample_export(name, tmp_path):
  config_file = _write_config_file(str(tmp_path), name)

  # 1. The command line switches the config to the method and trains it to the end.
  reference = str(tmp_path / "cli")
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.main", f"--config={config_file}",
       f"--config.method={name}", f"--workdir={reference}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(reference, "run_complete.json"), encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["step"] == NUM_STEPS
  config = checkpoint.load_config(reference)
  assert config.method == name
  for field, value in methods.get(name).required.items():
    assert fields.get(config, field) == value, field

  # 2. Killed after its first checkpoint and started again: the same run.
  killed = str(tmp_path / "killed")
  _kill_after_first_checkpoint(config_file, name, killed)
  killed_at = checkpoint.all_steps(killed)
  assert killed_at and max(killed_at) < NUM_STEPS
  assert train.train_and_evaluate(_switched_config(config_file, name), killed) == summary
  expected = checkpoint.state_to_checkpoint(checkpoint.restore_state(reference))
  got = checkpoint.state_to_checkpoint(checkpoint.restore_state(killed))
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))

  # 3. The sample export: the method's own draws and codes of the checkpoint.
  state = checkpoint.restore_state(reference)
  method = methods.get(name)
  out = str(tmp_path / "samples.npy")
  assert sample.write_samples(reference, "samples", 7, out, seed=3) == out
  np.testing.assert_allclose(np.load(out), method.sample(state, jax.random.PRNGKey(3), 7),
                             rtol=1e-5, atol=1e-6)
  out = str(tmp_path / "reconstructions.npz")
  sample.write_samples(reference, "reconstructions", 5, out)
  test = next(data.build(config).test_batches(5))
  with np.load(out) as arrays:
    np.testing.assert_array_equal(arrays["images"], test["image"])
    np.testing.assert_allclose(arrays["codes"], method.encode(state, test["image"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays["reconstructions"], method.decode(state, arrays["codes"]),
                               rtol=1e-5, atol=1e-6)
