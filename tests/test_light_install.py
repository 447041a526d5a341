"""`pip install -e .` has no TensorFlow: the default job runs without it and a
tfds dataset fails at once with the install command (CLI, via subprocess, with
tensorflow and tensorflow_datasets made unimportable)."""

import os
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs `python -m wae_jax.main ARGS` as if tensorflow were not installed.
_WITHOUT_TENSORFLOW = """
import importlib.machinery, runpy, sys
class PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_datasets"):
      return None
    return importlib.machinery.PathFinder.find_spec(name, path, target)
sys.meta_path = [PathFinderWithoutTensorFlow if f is importlib.machinery.PathFinder else f
                 for f in sys.meta_path]
sys.argv = ["wae_jax.main"] + sys.argv[1:]
try:
  runpy.run_module("wae_jax.main", run_name="__main__", alter_sys=True)
finally:
  assert not [m for m in sys.modules if m.split(".")[0] == "tensorflow"]
"""


def _main_without_tensorflow(tmp_path, *args):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # one device, as a user's laptop
  return subprocess.run(
      [sys.executable, "-c", _WITHOUT_TENSORFLOW, "--config=configs/default.py",
       f"--workdir={tmp_path}", *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_tfds_dataset_without_tensorflow_fails_at_once_with_install_command(tmp_path):
  start = time.perf_counter()
  result = _main_without_tensorflow(tmp_path / "run", "--config.dataset=mnist")
  assert result.returncode != 0
  assert "pip install -e '.[tfds]'" in result.stderr, result.stderr[-2000:]
  assert "tensorflow_datasets and tensorflow are not installed" in result.stderr
  assert not (tmp_path / "run" / "checkpoints").exists()  # nothing trained
  assert time.perf_counter() - start < 120  # fails during startup, never a hang


@pytest.mark.slow
def test_offline_default_job_runs_without_tensorflow(tmp_path):
  result = _main_without_tensorflow(
      tmp_path, "--config.num_train_steps=2", "--config.log_every_steps=1",
      "--config.eval_every_steps=2", "--config.checkpoint_every_steps=2",
      "--config.num_eval_images=8")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (tmp_path / "run_complete.json").exists()
