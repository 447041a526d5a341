"""The population trainer as a user runs it:
python -m wae_jax.main --config=... --config.population.<field>='(...)' --workdir=W.

Each member W/<i>/ is a normal run (its config, logs, checkpoints; launch.status
and the sample export read it; resumed alone it continues); a member that goes
non-finite stops alone; a killed population resumes bit for bit; bad
populations are one error line before anything is written.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np

from launch import status
from wae_jax import checkpoint
from wae_jax import hparams
from wae_jax import metrics_io
from wae_jax import population
from wae_jax import sample
from wae_jax import train
import methods_testlib

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 8

CONFIG_FILE = textwrap.dedent("""
    from wae_jax import config as wae_config

    def get_config(arg=None):
      config = wae_config.for_method("wae_mmd")
      config.batch_size = 16
      config.latent_dim = 4
      config.model.hidden_sizes = (16,)
      config.num_train_steps = {steps}
      config.steps_per_call = 2
      config.log_every_steps = 2
      config.checkpoint_every_steps = 4
      config.eval_every_steps = {steps}
      config.keep_checkpoints = 2
      config.num_eval_images = 8
      config.encoder_input_noise = 0.0
      config.lock()
      return config
""")

# Three members: seeds and λ differ; member 2's learning rate makes Adam's
# steps ~1e30, so its loss overflows to Inf/NaN within the first steps.
POPULATION_FLAGS = ["--config.population.seed=(0, 1, 2)",
                    "--config.population.lambda_reg=(1.0, 10.0, 100.0)",
                    "--config.population.optimizer.learning_rate=(0.001, 0.003, 1e30)"]

# The killed child: the population with a sleep per call, so it can be killed
# between checkpoints (the sleep changes the timing, never the numbers).
KILLABLE = textwrap.dedent("""
    import sys, time
    sys.argv = {argv!r}
    sys.path.insert(0, {repo!r})
    from wae_jax import train
    original = train._parallel_step
    def slow(*args, **kwargs):
      step = original(*args, **kwargs)
      def slow_step(*a):
        time.sleep(0.5)
        return step(*a)
      return slow_step
    train._parallel_step = slow
    from wae_jax import main
    from wae_jax import cli
    cli.run_absl(main.main)
""")


def _argv(config_file: str, workdir: str, extra=()) -> list:
  return ["wae_jax.main", f"--config={config_file}", f"--workdir={workdir}",
          *POPULATION_FLAGS, *extra]


def _run(argv: list) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", *argv], cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=600)


def _error_lines(stderr: str) -> list:
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> str:
  path = tmp_path_factory.mktemp("config") / "pop_config.py"
  path.write_text(CONFIG_FILE.format(steps=NUM_STEPS))
  return str(path)


@pytest.fixture(scope="module")
def finished(config_file, tmp_path_factory) -> str:
  """W of the three-member population trained by the command line."""
  workdir = str(tmp_path_factory.mktemp("pop") / "W")
  result = _run(_argv(config_file, workdir))
  # Member 2 went non-finite: the trainer finishes the others, then fails.
  assert result.returncode == 1, result.stderr[-3000:]
  assert "member 2" in result.stderr and "non-finite" in result.stderr
  return workdir


def _leaves(workdir: str) -> list:
  return jax.tree.leaves(checkpoint.state_to_checkpoint(checkpoint.restore_state(workdir)))


@pytest.mark.slow
def test_members_are_runs(finished):
  for i, (seed, lam) in enumerate([(0, 1.0), (1, 10.0)]):
    member = population.member_workdir(finished, i)
    config = checkpoint.load_config(member)
    assert (config.seed, config.lambda_reg) == (seed, lam)
    assert all(not v for v in hparams.member_configs(config))  # a solo run's config
    records = metrics_io.read_jsonl(os.path.join(member, "metrics.jsonl"))
    assert [r["step"] for r in records] == list(range(2, NUM_STEPS + 1, 2))
    assert all(np.isfinite(r["loss"]) for r in records)
    assert checkpoint.all_steps(member) == [4, 8]
    with open(os.path.join(member, "run_complete.json"), encoding="utf-8") as f:
      assert json.load(f)["step"] == NUM_STEPS
    assert status.run_state(member) == "finished"
    # The sample export reads a member as any run (its own prior and decoder).
    out = sample.write_samples(member, "samples", 5, os.path.join(member, "s.npy"), seed=1)
    assert np.load(out).shape == (5, 8, 8, 1)
  # The members trained different runs.
  params = [checkpoint.restore_state(population.member_workdir(finished, i)).params
            for i in (0, 1)]
  assert not np.array_equal(params[0]["decoder"]["Dense_0"]["kernel"],
                            params[1]["decoder"]["Dense_0"]["kernel"])


@pytest.mark.slow
def test_non_finite_member_stopped_alone(finished, config_file):
  bad = population.member_workdir(finished, 2)
  with open(os.path.join(bad, "run_failed.json"), encoding="utf-8") as f:
    failed = json.load(f)
  assert failed["step"] <= NUM_STEPS and "non-finite" in failed["reason"]
  assert not os.path.exists(os.path.join(bad, "run_complete.json"))
  assert status.run_state(bad) == "failed"
  # Started again: nothing left to train, the failure is reported again.
  again = _run(_argv(config_file, finished))
  assert again.returncode == 1 and "member 2" in again.stderr


@pytest.mark.slow
def test_member_resumed_alone_continues(finished, tmp_path):
  """Member 1, trained on alone with num_train_steps raised, starts from the
  population's checkpoint and logs as one run."""
  member = str(tmp_path / "1")
  shutil.copytree(population.member_workdir(finished, 1), member)
  config = checkpoint.load_config(member)
  with config.unlocked():
    config.num_train_steps = NUM_STEPS + 4
  assert train.train_and_evaluate(config, member)["step"] == NUM_STEPS + 4
  records = metrics_io.read_jsonl(os.path.join(member, "metrics.jsonl"))
  assert [r["step"] for r in records] == list(range(2, NUM_STEPS + 5, 2))
  assert checkpoint.all_steps(member) == [8, 12]


@pytest.mark.slow
def test_killed_population_resumes_bitwise(finished, config_file, tmp_path):
  workdir = str(tmp_path / "W")
  script = KILLABLE.format(argv=_argv(config_file, workdir), repo=REPO_ROOT)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  methods_testlib.sigkill_after_first_checkpoint(process, population.member_workdir(workdir, 1))
  assert max(checkpoint.all_steps(population.member_workdir(workdir, 1))) < NUM_STEPS
  result = _run(_argv(config_file, workdir))
  assert result.returncode == 1, result.stderr[-3000:]
  for i in (0, 1):
    for a, b in zip(_leaves(population.member_workdir(finished, i)),
                    _leaves(population.member_workdir(workdir, i))):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = metrics_io.read_jsonl(os.path.join(population.member_workdir(workdir, i),
                                                 "metrics.jsonl"))
    assert [r["step"] for r in records] == list(range(2, NUM_STEPS + 1, 2))


@pytest.mark.slow
@pytest.mark.parametrize("flags, names", [
    (["--config.population.latent_dim=(4, 8)"], "config.latent_dim"),
    (["--config.population.seed=(0, 1, 2)", "--config.population.lambda_reg=(1.0, 2.0)"],
     "3 for seed, 2 for lambda_reg"),
])
def test_bad_population_is_one_error_line_before_anything_is_written(config_file, tmp_path,
                                                                   flags, names):
  workdir = str(tmp_path / "W")
  result = _run(["wae_jax.main", f"--config={config_file}", f"--workdir={workdir}", *flags])
  assert result.returncode == 2
  errors = _error_lines(result.stderr)
  assert len(errors) == 1 and names in errors[0], result.stderr[-2000:]
  assert not os.path.exists(workdir)


def test_members_differing_in_a_shape_field_refused_in_process(config_file, tmp_path):
  """train_population's own check, for members built in code."""
  import importlib.util
  spec = importlib.util.spec_from_file_location("pop_config", config_file)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  configs = [module.get_config(), module.get_config()]
  with configs[1].unlocked():
    configs[1].model.hidden_sizes = (8,)
  with pytest.raises(ValueError, match="config.model.hidden_sizes differs"):
    population.train_population(configs, str(tmp_path / "W"))
  assert not os.path.exists(tmp_path / "W")
