"""The trainer as a user runs it: `python -m wae_jax.main` in a subprocess.

The README's many-device command on 8 fake CPU devices, for several hundred
steps with the default logging period, so that a hang of the asynchronously
dispatched data-parallel steps (which needed ~100 steps in flight) shows;
while it runs, a second trainer on the same workdir must stop at once.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from wae_jax import checkpoint
from wae_jax import fields
from wae_jax import methods
from wae_jax import metrics_io

import test_readme

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 400


@pytest.mark.slow
def test_eight_device_command_runs_to_the_end_and_locks_its_workdir(tmp_path):
  workdir = str(tmp_path / "eight")
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  # The README's command; the overrides only shrink the network and the run.
  command = [sys.executable, "-m", "wae_jax.main", "--config=configs/default.py",
             "--config.batch_size=96", f"--workdir={workdir}",
             f"--config.num_train_steps={NUM_STEPS}", "--config.model.hidden_sizes=(16,)",
             "--config.latent_dim=4", "--config.num_eval_images=8",
             f"--config.checkpoint_every_steps={NUM_STEPS}"]
  first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
  try:
    deadline = time.time() + 300
    while not os.path.exists(os.path.join(workdir, checkpoint.CONFIG_FILE)):
      assert first.poll() is None, first.stderr.read()[-3000:]
      assert time.time() < deadline, "the first trainer never wrote config.json"
      time.sleep(0.1)
    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert first.poll() is None, "the first trainer ended before the second one was refused"
    _, stderr = first.communicate(timeout=300)
  finally:
    first.kill()
    first.wait()
  assert first.returncode == 0, stderr[-3000:]
  assert "on 8 devices" in stderr
  records = metrics_io.read_jsonl(os.path.join(workdir, metrics_io.METRICS_FILE))
  assert [r["step"] for r in records] == [100, 200, 300, 400]  # Once each: B wrote nothing.
  assert os.path.exists(os.path.join(workdir, "run_complete.json"))

  assert second.returncode == 2, second.stderr[-3000:]
  assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr, second.stderr
  assert f"Another trainer (process {first.pid} on" in second.stderr
  assert workdir in second.stderr


def _main(*arguments, cwd=REPO_ROOT):
  return subprocess.run([sys.executable, "-m", "wae_jax.main", *arguments], cwd=cwd,
                        capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_show_config_prints_the_resolved_config_and_writes_nothing(tmp_path):
  workdir = tmp_path / "never"
  result = _main("--config=configs/default.py", "--config.method=moca", "--config.seed=7",
                 "--show_config", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  shown = json.loads(result.stdout)
  assert (shown["method"], shown["seed"], shown["prior"], shown["model"]["encoder"]) == (
      "moca", 7, "sphere", "sphere")  # moca's required values applied
  assert shown["moca"]["queue_size"] == 1000  # its block's defaults are in the schema
  assert not os.path.exists(workdir)
  help_text = _main("--help").stdout
  assert "--show_config" in help_text and "--config.method" in help_text


@pytest.mark.slow
def test_switching_method_on_the_default_config_runs_to_the_end(tmp_path):
  """--config.method=vae on configs/default.py, the README's config file,
  applies the VAE's required values and trains (every method's switch, on a
  tiny config file: test_every_method.py)."""
  name = "vae"
  workdir = tmp_path / name
  result = _main("--config=configs/default.py:runlocal", f"--config.method={name}",
                 f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(workdir / "run_complete.json", encoding="utf-8") as f:
    assert json.load(f)["step"] == checkpoint.load_config(str(workdir)).num_train_steps
  config = checkpoint.load_config(str(workdir))
  for field, value in methods.get(name).required.items():
    assert fields.get(config, field) == value


@pytest.mark.slow
def test_a_paper_config_loads_from_any_directory_with_the_installed_package(tmp_path):
  """Only the package importable (as after pip install), run outside the checkout."""
  site = test_readme.installed_copy(tmp_path / "site-packages")
  config_file = os.path.join(REPO_ROOT, "configs", "swae_mnist.py")
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.main", f"--config={config_file}:runlocal",
       "--show_config"], cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(site)),
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  shown = json.loads(result.stdout)
  assert (shown["method"], shown["dataset"], shown["latent_dim"]) == ("swae", "mnist", 40)
