"""Self-healing resumes: damaged or non-finite checkpoints, damaged config.json, log windows.

One uninterrupted reference run (module fixture: the tiny digits MLP for 500
steps, a log line every 30 steps and a checkpoint every 50, all kept) is
copied and cut back to what a killed run leaves, then damaged; every resumed
run must end bitwise equal to the reference and write the same metrics.jsonl
(timing fields aside).
"""

import glob
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from wae_jax import checkpoint
from wae_jax import metrics_io
from wae_jax import train

from test_train import tiny_config

NUM_STEPS = 500
LOG_EVERY = 30
CHECKPOINT_EVERY = 50
TIMING_FIELDS = ("steps_per_second",)


def reference_config():
  config = tiny_config(num_train_steps=NUM_STEPS).copy_and_resolve_references()
  config.log_every_steps = LOG_EVERY
  config.checkpoint_every_steps = CHECKPOINT_EVERY
  config.keep_checkpoints = NUM_STEPS // CHECKPOINT_EVERY
  return config


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The uninterrupted run's workdir (read-only: copy it with `killed_copy`)."""
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  train.train_and_evaluate(reference_config(), workdir)
  return workdir


def killed_copy(reference, tmp_path, last_step):
  """The reference as a run killed after saving checkpoint `last_step` leaves it."""
  workdir = str(tmp_path / "killed")
  shutil.copytree(reference, workdir)
  os.remove(os.path.join(workdir, "run_complete.json"))
  for step in checkpoint.all_steps(workdir):
    if step > last_step:
      shutil.rmtree(os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step)))
  return workdir


def step_folder(workdir, step):
  return os.path.join(workdir, checkpoint.CHECKPOINT_DIR, str(step))


def assert_same_final_state(workdir, reference):
  expected = checkpoint.state_to_checkpoint(checkpoint.restore_state(reference, step=NUM_STEPS))
  got = checkpoint.state_to_checkpoint(checkpoint.restore_state(workdir, step=NUM_STEPS))
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))


def metric_lines(workdir):
  records = metrics_io.read_jsonl(os.path.join(workdir, metrics_io.METRICS_FILE))
  return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


# --- Ways to damage a checkpoint folder ---------------------------------------

def _data_files(folder):
  """The OCDBT files holding the state's b-tree and array data."""
  files = glob.glob(os.path.join(folder, "default", "d", "*"))
  files += glob.glob(os.path.join(folder, "default", "ocdbt.process_*", "d", "*"))
  assert files, folder
  return files


def truncate_data(folder):
  for path in _data_files(folder):
    os.truncate(path, os.path.getsize(path) // 2)


def garble_data(folder):
  rng = np.random.default_rng(0)
  for path in _data_files(folder):
    with open(path, "wb") as f:
      f.write(rng.bytes(os.path.getsize(path)))


def flip_bytes_in_data(folder):
  for path in _data_files(folder):
    with open(path, "r+b") as f:
      data = bytearray(f.read())
      for i in range(len(data) // 2, min(len(data), len(data) // 2 + 4)):
        data[i] ^= 0xFF
      f.seek(0)
      f.write(data)


def delete_manifest(folder):
  os.remove(os.path.join(folder, "default", "manifest.ocdbt"))


def delete_array_metadata(folder):
  os.remove(os.path.join(folder, "default", "_METADATA"))


def delete_checkpoint_metadata(folder):
  os.remove(os.path.join(folder, "_CHECKPOINT_METADATA"))


def empty_the_folder(folder):
  shutil.rmtree(folder)
  os.makedirs(folder)


def data_of_another_step(folder):
  """Intact files of another checkpoint: only the recorded digest tells."""
  other = step_folder(os.path.dirname(os.path.dirname(folder)), CHECKPOINT_EVERY)
  shutil.rmtree(os.path.join(folder, "default"))
  shutil.copytree(os.path.join(other, "default"), os.path.join(folder, "default"))


DAMAGES = (truncate_data, garble_data, flip_bytes_in_data, delete_manifest,
           delete_array_metadata, delete_checkpoint_metadata, empty_the_folder,
           data_of_another_step)


def write_non_finite_checkpoint(workdir, step):
  """Checkpoint `step` replaced by a state with Inf params and a matching digest,
  as a trainer without the state check would have written it."""
  config = checkpoint.load_config(workdir)
  state = checkpoint.restore_state(workdir, config, step=step)
  state = state.replace(params=jax.tree.map(lambda x: x * np.inf, state.params))
  shutil.rmtree(step_folder(workdir, step))
  manager = checkpoint.make_manager(workdir, config)
  digest = checkpoint.state_digest(jax.device_get(checkpoint.state_to_checkpoint(state)))
  checkpoint.save(manager, state, step, image_shape=(8, 8, 1), config=config, digest=digest)
  manager.wait_until_finished()
  manager.close()


# --- Tests -------------------------------------------------------------------


class _Warnings(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.lines = []

  def emit(self, record):
    self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def healed_run(reference, tmp_path_factory):
  """The reference killed after its last save, then damaged: checkpoint 500
  non-finite, 450 down to 100 each damaged another way (DAMAGES), config.json
  emptied; resumed. Returns (workdir, {step: damage}, warning lines)."""
  workdir = killed_copy(reference, tmp_path_factory.mktemp("healed"), last_step=NUM_STEPS)
  write_non_finite_checkpoint(workdir, NUM_STEPS)
  damaged = {NUM_STEPS: "non-finite state"}
  for step, damage in zip(range(NUM_STEPS - CHECKPOINT_EVERY, 0, -CHECKPOINT_EVERY), DAMAGES):
    damage(step_folder(workdir, step))
    damaged[step] = damage.__name__
  assert min(damaged) == 2 * CHECKPOINT_EVERY, "one good checkpoint (50) must be left"
  with open(os.path.join(workdir, checkpoint.CONFIG_FILE), "w"):
    pass  # An empty config.json.
  warnings = _Warnings()
  logging.getLogger("absl").addHandler(warnings)
  try:
    train.train_and_evaluate(reference_config(), workdir)
  finally:
    logging.getLogger("absl").removeHandler(warnings)
  return workdir, damaged, warnings.lines


@pytest.mark.slow
def test_damaged_checkpoints_are_moved_aside_and_the_run_resumes_bitwise_equal(
    healed_run, reference):
  workdir, damaged, warnings = healed_run
  moved = [w for w in warnings if "moved it to" in w and checkpoint.CHECKPOINT_DIR in w]
  assert len(moved) == len(damaged), warnings
  for step, damage in damaged.items():
    assert os.path.isdir(step_folder(workdir, step) + checkpoint.CORRUPT_SUFFIX), damage
    assert sum(f"Checkpoint {step} " in w for w in moved) == 1, damage
  assert any(f"Checkpoint {NUM_STEPS} " in w and "NaN or Inf" in w for w in moved)
  # Intact files of another step: only the recorded digest tells.
  assert any(f"Checkpoint {2 * CHECKPOINT_EVERY} " in w and "digest" in w for w in moved)
  # It resumed from checkpoint 50 (the only good one) and saved every later one again.
  assert checkpoint.all_steps(workdir) == list(range(CHECKPOINT_EVERY, NUM_STEPS + 1,
                                                     CHECKPOINT_EVERY))
  assert_same_final_state(workdir, reference)


@pytest.mark.slow
def test_a_damaged_config_json_is_moved_aside_and_rewritten(healed_run):
  workdir, _, warnings = healed_run
  config_path = os.path.join(workdir, checkpoint.CONFIG_FILE)
  assert os.path.getsize(config_path + checkpoint.CORRUPT_SUFFIX) == 0
  assert checkpoint.load_config(workdir).num_train_steps == NUM_STEPS
  assert any(f"{config_path} is damaged" in w for w in warnings)


@pytest.mark.slow
def test_resumed_metrics_equal_the_uninterrupted_runs_with_periods_30_and_50(
    healed_run, reference):
  """Resumed from checkpoint 50 with a log line every 30 steps: the line at
  step 60 must still average steps 31-60, as the uninterrupted run's does."""
  lines = metric_lines(healed_run[0])
  assert [r["step"] for r in lines] == list(range(LOG_EVERY, NUM_STEPS, LOG_EVERY)) + [NUM_STEPS]
  assert lines == metric_lines(reference)


@pytest.mark.slow
def test_a_checkpoint_records_its_config_for_when_config_json_is_lost(reference, tmp_path):
  workdir = killed_copy(reference, tmp_path, last_step=2 * CHECKPOINT_EVERY)
  os.remove(os.path.join(workdir, checkpoint.CONFIG_FILE))
  changed = reference_config()
  changed.optimizer.learning_rate = 0.5
  with pytest.raises(ValueError, match=r"optimizer.learning_rate \(saved 0.001, now 0.5\)"):
    train.train_and_evaluate(changed, workdir)
  assert checkpoint.all_steps(workdir)[-1] == 2 * CHECKPOINT_EVERY  # Nothing moved aside.


@pytest.mark.slow
def test_a_non_finite_state_is_never_saved_or_called_good(tmp_path, monkeypatch):
  """Step 4 makes the params Inf while its reported losses stay finite: the
  run stops at that save, and the checkpoint it names (2) restores finite."""
  original = train.make_train_step

  def poisoned_make_train_step(method, mesh, steps_per_call, **kwargs):
    step, put_batch, put_state = original(method, mesh, steps_per_call, **kwargs)

    def poisoned_step(state, batch):
      new_state, metrics = step(state, batch)
      scale = jax.numpy.where(new_state.step == 4, np.inf, 1.0)
      return new_state.replace(params=jax.tree.map(lambda x: x * scale, new_state.params)), metrics

    return poisoned_step, put_batch, put_state

  monkeypatch.setattr(train, "make_train_step", poisoned_make_train_step)
  workdir = str(tmp_path / "run")
  with pytest.raises(train.NonFiniteLossError,
                     match=r"state became non-finite \(params/.*\) at step 4; training stopped "
                     r"and the last good checkpoint is step 2"):
    train.train_and_evaluate(tiny_config(num_train_steps=6), workdir)
  assert checkpoint.all_steps(workdir) == [2]
  state = checkpoint.restore_state(workdir)  # Verified: digest and finite.
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(state.params))
  with pytest.raises(checkpoint.NonFiniteStateError, match="params/"):
    checkpoint.verified_digest(state.replace(
        params=jax.tree.map(lambda x: x * np.nan, state.params)), 2)


@pytest.mark.slow
def test_reading_a_damaged_checkpoint_without_training_is_one_clear_error(reference, tmp_path):
  workdir = killed_copy(reference, tmp_path, last_step=2 * CHECKPOINT_EVERY)
  delete_checkpoint_metadata(step_folder(workdir, 2 * CHECKPOINT_EVERY))
  with pytest.raises(checkpoint.DamagedCheckpointError,
                     match=r"Checkpoint 100 in .* is damaged: .*; choose another of its "
                     r"checkpoints \[50, 100\]"):
    checkpoint.restore_state(workdir)
  assert checkpoint.all_steps(workdir) == [50, 100]  # Reading moves nothing.
