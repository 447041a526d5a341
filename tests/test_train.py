"""End-to-end tests of the trainer: every method, resume, kill-and-resume, NaN stop.

Tiny configs (digits, an MLP of 16 units, a few steps) through
`train_and_evaluate`, on the 8 fake CPU devices of conftest.py (so the
data-parallel step and its checkpoints are what runs here).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import methods_testlib as lib
import pytest
from PIL import Image

from wae_jax import checkpoint
from wae_jax import config as wae_config
from wae_jax import data
from wae_jax import fields
from wae_jax import images as images_lib
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import sample
from wae_jax import train

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(method: str = "wae_mmd", num_train_steps: int = 4):
  """A few steps of `method` on the 8x8 digits with a 16-unit MLP.

  Logs and checkpoints every 2 steps, evaluates at the end only (evaluations
  dominate the cost of these runs).
  """
  config = wae_config.base_config()
  config.method = method
  config.dataset = "digits"
  config.image_size = 8
  config.batch_size = 16
  config.latent_dim = 4
  config.model.hidden_sizes = (16,)
  config.adversary.hidden_sizes = (16,)
  config.num_train_steps = num_train_steps
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = num_train_steps
  config.keep_checkpoints = 2
  config.num_eval_images = 8
  methods.apply_required(config)
  for field, value in methods.get(method).tiny_overrides(config.batch_size).items():
    fields.set_value(config, field, value)
  config.lock()
  return config


def _png_size(path):
  with Image.open(path) as image:
    image.verify()
  with Image.open(path) as image:
    assert image.format == "PNG"
    return image.size[1], image.size[0]  # (height, width)


def _check_finished_run(workdir, method, num_steps, eval_steps):
  """What every finished run leaves in its workdir; returns run_complete.json."""
  with open(os.path.join(workdir, "run_complete.json")) as f:
    summary = json.load(f)
  assert summary["step"] == num_steps
  assert summary["best_step"] in checkpoint.all_steps(workdir)

  # Every loss term, the learning rate and steps/s, every 2 steps.
  records = metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == list(range(2, num_steps + 1, 2))
  assert {"loss", "learning_rate"} <= set(records[0])
  if method == "moca":
    assert {"momentum", "reconstruction", "regularizer"} <= set(records[0])
  assert "steps_per_second" in records[1]
  assert all(np.isfinite(v) for r in records for v in r.values())
  evals = metrics_io.read_jsonl(os.path.join(workdir, "eval.jsonl"))
  assert [e["step"] for e in evals] == eval_steps
  best = min(e["metrics"]["test_reconstruction"] for e in evals)
  assert evals[-1]["metrics"]["best_test_reconstruction"] == pytest.approx(best)
  assert summary["best_metrics"] == {"test_reconstruction": pytest.approx(best)}
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir))

  # The PNG grids, of the size their layout implies (8 images of 8x8).
  image_dir = os.path.join(workdir, "images")
  expected = {
      "samples": images_lib.grid_size(3, 3, 8, 8),
      "reconstructions": images_lib.grid_size(1, 16, 8, 8),
      "interpolations": images_lib.grid_size(
          images_lib.INTERPOLATION_PAIRS, images_lib.INTERPOLATION_STEPS, 8, 8),
  }
  for name, size in expected.items():
    for step in eval_steps:
      assert _png_size(os.path.join(image_dir, f"{name}_{step:08d}.png")) == size
    assert _png_size(os.path.join(image_dir, f"{name}_latest.png")) == size
  return summary


MOCA_STEPS = 8


def moca_config():
  """8 MoCA steps (queue, EMA key encoder): checkpoints every 2, evaluations at 4 and 8."""
  config = tiny_config("moca", MOCA_STEPS).copy_and_resolve_references()
  config.eval_every_steps = 4
  return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """One finished MoCA run, shared read-only (copy it to change it)."""
  workdir = str(tmp_path_factory.mktemp("finished") / "moca")
  summary = train.train_and_evaluate(moca_config(), workdir)
  return workdir, summary


def _copy_run(finished_run, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(finished_run[0], copy)
  return copy


@pytest.mark.slow
def test_end_to_end_moca(finished_run):
  workdir, summary = finished_run
  assert _check_finished_run(workdir, "moca", MOCA_STEPS, eval_steps=[4, 8]) == summary
  # The whole state comes back: queue, pointer, key encoder.
  state = checkpoint.restore_state(workdir)
  assert int(state.step) == MOCA_STEPS
  assert state.extras.queue.shape == (32, 4)
  assert int(state.extras.queue_ptr) == (MOCA_STEPS * 16) % 32
  assert state.extras.key_encoder_params is not None
  # Kept: the last 2 checkpoints plus the best evaluated one.
  assert checkpoint.all_steps(workdir) == sorted({6, 8, summary["best_step"]})


@pytest.mark.slow
@pytest.mark.parametrize("method", [m for m in methods.names() if m != "moca"])  # moca: finished_run
def test_end_to_end(method, tmp_path):
  workdir = str(tmp_path / method)
  summary = train.train_and_evaluate(tiny_config(method), workdir)
  assert _check_finished_run(workdir, method, 4, eval_steps=[4]) == summary
  state = checkpoint.restore_state(workdir)
  assert int(state.step) == 4
  if method == "wae_gan":
    assert state.extras.adversary_params is not None
    assert state.extras.adversary_opt_state is not None


@pytest.mark.slow
def test_resume_after_completion_changes_nothing(finished_run):
  workdir, summary = finished_run
  files = ("run_complete.json", "metrics.jsonl", "eval.jsonl", "config.json")
  before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in files}
  steps = checkpoint.all_steps(workdir)
  assert train.train_and_evaluate(moca_config(), workdir) == summary
  assert checkpoint.all_steps(workdir) == steps
  for name, mtime in before.items():
    assert os.path.getmtime(os.path.join(workdir, name)) == mtime, name


@pytest.mark.slow
def test_resume_refuses_changed_state_ignores_half_written_checkpoint(finished_run, tmp_path):
  workdir = _copy_run(finished_run, tmp_path)
  changed = moca_config()
  changed.latent_dim = 6
  with pytest.raises(ValueError, match=r"latent_dim \(saved 4, now 6\)"):
    train.train_and_evaluate(changed, workdir)
  # What a kill during orbax's save of step 10 leaves: a temporary folder.
  partial = os.path.join(workdir, "checkpoints", "10.orbax-checkpoint-tmp-1234567")
  os.makedirs(os.path.join(partial, "default"))
  with open(os.path.join(partial, "default", "garbage"), "w") as f:
    f.write("half")
  assert max(checkpoint.all_steps(workdir)) == MOCA_STEPS
  # A longer run is an allowed change: it continues from step 8, not 10.
  longer = moca_config()
  longer.num_train_steps = 10
  assert train.train_and_evaluate(longer, workdir)["step"] == 10
  assert not os.path.exists(partial)  # Deleted once a manager opened the folder.
  assert int(checkpoint.restore_state(workdir).step) == 10
  records = metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
  assert checkpoint.load_config(workdir).num_train_steps == 10


@pytest.mark.slow
def test_steps_per_call_changes_no_number(tmp_path):
  """Four steps per compiled call (one lax.scan) give the params and the
  logged losses of one step per call, bit for bit (MoCA: its queue and EMA
  key encoder ride in the scanned state)."""
  runs = {}
  for steps_per_call in (1, 4):
    config = tiny_config("moca", num_train_steps=8)
    with config.unlocked():
      config.log_every_steps = 4
      config.checkpoint_every_steps = 8
      config.steps_per_call = steps_per_call
    workdir = str(tmp_path / f"k{steps_per_call}")
    train.train_and_evaluate(config, workdir)
    losses = [r["loss"] for r in metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))]
    runs[steps_per_call] = (jax.tree.leaves(checkpoint.restore_state(workdir)), losses)
  (one_state, one_losses), (four_state, four_losses) = runs[1], runs[4]
  assert len(one_losses) == 2 and four_losses == one_losses
  for one, four in zip(one_state, four_state):
    np.testing.assert_array_equal(np.asarray(four), np.asarray(one))


def test_steps_per_call_divides_every_stop():
  config = wae_config.base_config()  # 100 per call; logs every 100, evaluates and saves every 1000
  assert train.steps_per_call(config, start_step=0) == 100
  assert train.steps_per_call(config, start_step=2000) == 100
  assert train.steps_per_call(config, start_step=1005) == 5  # resumed off the grid
  # Batches of 1 MiB: at most 64 per call, and a divisor of 100.
  assert train.steps_per_call(config, start_step=0, batch_bytes=2**20) == 50
  assert train.steps_per_call(config, start_step=0, batch_bytes=2**30) == 1
  config.log_every_steps = 4
  assert train.steps_per_call(config, start_step=0) == 4
  config.log_every_steps, config.num_train_steps = 100, 3001
  assert train.steps_per_call(config, start_step=0) == 1


@pytest.mark.slow
def test_non_finite_loss_stops_with_step_and_last_good_checkpoint(tmp_path, monkeypatch):
  original = train.make_train_step

  def poisoned_make_train_step(method, mesh, steps_per_call, **kwargs):
    step, put_batch, put_state = original(method, mesh, steps_per_call, **kwargs)

    def poisoned_step(state, batch):
      new_state, metrics = step(state, batch)
      # Step 3 reports a NaN loss; a call runs steps_per_call steps (2 here,
      # the log period), so step 3 is the first of its call.
      metrics = dict(metrics)
      steps = new_state.step - steps_per_call + 1 + jax.numpy.arange(steps_per_call)
      metrics["loss"] = jax.numpy.where(steps == 3, np.nan, metrics["loss"])
      return new_state, metrics

    return poisoned_step, put_batch, put_state

  monkeypatch.setattr(train, "make_train_step", poisoned_make_train_step)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteLossError,
                     match=r"non-finite \(loss\) at step 3.*last good checkpoint is step 2"):
    train.train_and_evaluate(tiny_config(num_train_steps=6), workdir)
  assert checkpoint.all_steps(workdir) == [2]
  assert not os.path.exists(os.path.join(workdir, "run_complete.json"))


# The child: a run (config `tests.<module>.<function>()`) with a sleep per
# call, so it can be killed between checkpoints (the sleep changes the timing,
# never the numbers).
KILLABLE_RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from tests import {module}
    from wae_jax import train
    original = train.make_train_step
    def slow_make_train_step(method, mesh, steps_per_call, **kwargs):
      step, put_batch, put_state = original(method, mesh, steps_per_call, **kwargs)
      def slow_step(state, batch):
        time.sleep(0.25)
        return step(state, batch)
      return slow_step, put_batch, put_state
    train.make_train_step = slow_make_train_step
    train.train_and_evaluate({module}.{function}(), {workdir!r})
""")


def kill_after_first_checkpoint(workdir: str, module: str, function: str) -> None:
  """Runs `tests.<module>.<function>()`'s config in a child process and
  SIGKILLs it as soon as its first checkpoint is complete."""
  script = KILLABLE_RUN.format(repo=REPO_ROOT, tests=os.path.join(REPO_ROOT, "tests"),
                               module=module, function=function, workdir=workdir)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  lib.sigkill_after_first_checkpoint(process, workdir)


@pytest.mark.slow
def test_killed_and_resumed_run_equals_uninterrupted_run(finished_run, tmp_path):
  """SIGKILL after the first checkpoint, restart: final state bitwise equal.

  Both runs use the data-parallel step over all 8 fake devices (conftest.py).
  """
  assert jax.device_count() == 8
  reference = checkpoint.restore_state(finished_run[0])
  workdir = str(tmp_path / "killed")
  kill_after_first_checkpoint(workdir, "test_train", "moca_config")
  killed_at = checkpoint.all_steps(workdir)
  assert killed_at and max(killed_at) < MOCA_STEPS
  assert not os.path.exists(os.path.join(workdir, "run_complete.json"))

  summary = train.train_and_evaluate(moca_config(), workdir)
  assert summary == finished_run[1]
  resumed = checkpoint.restore_state(workdir)
  # Every saved leaf: params, batch stats, Adam moments, key encoder, queue,
  # queue pointer, rng, step.
  expected = checkpoint.state_to_checkpoint(reference)
  got = checkpoint.state_to_checkpoint(resumed)
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))
  # The logs read as one run: one metrics line per logged step.
  records = metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert [r["step"] for r in records] == list(range(2, MOCA_STEPS + 1, 2))


@pytest.mark.slow
def test_sample_cli_writes_pngs(finished_run, tmp_path):
  workdir = _copy_run(finished_run, tmp_path)
  for kind, num, size in (("samples", 16, images_lib.grid_size(4, 4, 8, 8)),
                          ("reconstructions", 8, images_lib.grid_size(1, 16, 8, 8)),
                          ("interpolations", 16, images_lib.grid_size(
                              max(1, 16 // images_lib.INTERPOLATION_STEPS),
                              images_lib.INTERPOLATION_STEPS, 8, 8))):
    path = sample.write_samples(workdir, kind, num)
    assert path.endswith(f"sample_{kind}_{MOCA_STEPS:08d}.png")
    assert _png_size(path) == size
  out = str(tmp_path / "cli.png")
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.sample", f"--workdir={workdir}", "--num=9",
       f"--out={out}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert _png_size(out) == images_lib.grid_size(3, 3, 8, 8)


@pytest.mark.slow
def test_sample_cli_exports_arrays(finished_run, tmp_path):
  """.npz / .npy by --out's extension, checked against the restored state."""
  workdir = finished_run[0]
  config = checkpoint.load_config(workdir)
  state = checkpoint.restore_state(workdir)
  method = methods.get(config.method)

  def run_sample(*flags):
    result = subprocess.run([sys.executable, "-m", "wae_jax.sample", f"--workdir={workdir}",
                             *flags], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # No library chatter.

  out = tmp_path / "reconstructions.npz"
  run_sample("--kind=reconstructions", "--num=5", f"--out={out}")
  test = next(data.build(config).test_batches(5))
  with np.load(out) as arrays:
    assert sorted(arrays) == ["codes", "images", "labels", "reconstructions"]
    np.testing.assert_array_equal(arrays["images"], test["image"])
    np.testing.assert_array_equal(arrays["labels"], test["label"])
    np.testing.assert_allclose(arrays["codes"], method.encode(state, test["image"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(arrays["codes"], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(arrays["reconstructions"],
                               method.decode(state, arrays["codes"]), rtol=1e-5, atol=1e-6)

  out = tmp_path / "samples.npy"
  run_sample("--num=7", "--seed=3", f"--out={out}")
  samples = np.load(out)
  assert samples.shape == (7, 8, 8, 1) and samples.dtype == np.float32
  # MoCA's prior is the sphere: the same draws as the method's own sampler.
  np.testing.assert_allclose(samples, method.sample(state, jax.random.PRNGKey(3), 7),
                             rtol=1e-5, atol=1e-6)

  out = str(tmp_path / "interpolations.npz")
  sample.write_samples(workdir, "interpolations", 16, out)
  with np.load(out) as arrays:
    interpolations = arrays["interpolations"]
    pairs = max(1, 16 // images_lib.INTERPOLATION_STEPS)
    assert interpolations.shape == (pairs, images_lib.INTERPOLATION_STEPS, 8, 8, 1)
    # t = 0 and t = 1 decode the endpoints' own codes.
    np.testing.assert_allclose(interpolations[:, 0], method.decode(state, arrays["codes_a"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(interpolations[:, -1], method.decode(state, arrays["codes_b"]),
                               rtol=1e-5, atol=1e-6)
