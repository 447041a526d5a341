"""Checkpoints, config.json, image grids and metric files, without training.

The state here is a hand-built TrainState (Adam, a queue, a typed PRNG key),
so these tests need neither the methods nor the models.
"""

import json
import os

import jax
import ml_collections
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from configs import default
from wae_jax import checkpoint
from wae_jax import images
from wae_jax import metrics_io
from wae_jax.state import TrainState

TX = optax.adam(1e-3)


def make_state(step: int = 0, scale: float = 1.0) -> TrainState:
  params = {"encoder": {"w": scale * jnp.arange(6.0).reshape(3, 2)},
            "decoder": {"b": scale * jnp.ones(2)}}
  return TrainState(
      step=jnp.int32(step), params=params, batch_stats={"encoder": {}, "decoder": {}},
      opt_state=TX.init(params), rng=jax.random.key(3),
      extras={"queue": scale * jnp.ones((4, 2)), "queue_ptr": jnp.int32(step % 4)},
      tx=TX)


def small_config(keep: int = 2):
  config = default.base_config()
  config.keep_checkpoints = keep
  return config


def restore(manager, step):
  abstract = jax.eval_shape(make_state)
  target = checkpoint._abstract_checkpoint(  # pylint: disable=protected-access
      abstract, jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  return checkpoint.checkpoint_to_state(
      abstract, manager.restore(step, args=ocp.args.StandardRestore(target)))


def test_keeps_last_n_plus_best_by_metric(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), small_config(keep=2))
  values = {1: 5.0, 2: 3.0, 3: 4.0, 4: 6.0, 5: 7.0, 6: None}
  for step, value in values.items():
    metrics = None if value is None else {"test_reconstruction": value}
    checkpoint.save(manager, make_state(step), step, metrics, image_shape=(8, 8, 1))
  manager.wait_until_finished()
  # Last 2 (5, 6) plus the lowest test_reconstruction (step 2).
  assert sorted(manager.all_steps()) == [2, 5, 6]
  assert manager.best_step() == 2
  assert manager.metrics(2) == {"test_reconstruction": 3.0}
  manager.close()
  assert checkpoint.all_steps(str(tmp_path)) == [2, 5, 6]


def test_state_round_trip_is_exact(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), small_config())
  state = make_state(3, scale=1.7)
  checkpoint.save(manager, state, 3, {"test_reconstruction": 1.0}, image_shape=(8, 8, 1))
  manager.wait_until_finished()
  restored = restore(manager, 3)
  manager.close()
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)):
    if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
      a, b = jax.random.key_data(a), jax.random.key_data(b)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert restored.tx is TX  # The static part comes from the abstract state.


def test_temporary_checkpoint_folder_is_ignored_and_cleaned(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), small_config())
  checkpoint.save(manager, make_state(1), 1, {"test_reconstruction": 1.0}, image_shape=(8, 8, 1))
  manager.wait_until_finished()
  manager.close()
  partial = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-99"
  (partial / "default").mkdir(parents=True)
  (partial / "default" / "half").write_text("x")
  assert checkpoint.all_steps(str(tmp_path)) == [1]
  manager = checkpoint.make_manager(str(tmp_path), small_config())
  assert manager.latest_step() == 1
  # Opening a manager starts deleting temporary folders; a save waits for it.
  checkpoint.save(manager, make_state(3), 3, {"test_reconstruction": 1.0}, image_shape=(8, 8, 1))
  manager.wait_until_finished()
  manager.close()
  assert not partial.exists()
  assert checkpoint.all_steps(str(tmp_path)) == [1, 3]


def test_config_json_round_trip_and_resume_check(tmp_path):
  config = small_config()
  checkpoint.save_config(str(tmp_path), config)
  loaded = checkpoint.load_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()
  assert isinstance(loaded.mmd.scales, tuple)
  # Run length may change; the shape of the state may not.
  longer = small_config()
  longer.num_train_steps = 10 * config.num_train_steps
  assert checkpoint.check_resumable(str(tmp_path), longer) == ["num_train_steps"]
  wider = small_config()
  wider.model.hidden_sizes = (64,)
  with pytest.raises(ValueError, match=r"model\.hidden_sizes \(saved \[256, 256\], now \[64\]\)"):
    checkpoint.check_resumable(str(tmp_path), wider)
  with pytest.raises(FileNotFoundError, match="not a wae_jax workdir"):
    checkpoint.load_config(str(tmp_path / "elsewhere"))


def test_a_run_started_before_the_schema_grew_still_resumes(tmp_path):
  """A config.json without a method block that was added later (and without a
  newer evaluator field) resumes while those fields keep their defaults."""
  config = small_config()
  older = config.to_dict()
  del older["vae"], older["evaluation"]["feature_net_steps"]
  checkpoint.save_config(str(tmp_path), ml_collections.ConfigDict(older))
  assert checkpoint.check_resumable(str(tmp_path), config) == []
  config.vae.beta = 4.0  # A value the run never had is a change.
  with pytest.raises(ValueError, match=r"vae\.beta \(saved '<absent>', now 4\.0\)"):
    checkpoint.check_resumable(str(tmp_path), config)


def test_grid_layout_matches_a_direct_placement():
  rng = np.random.default_rng(0)
  pictures = rng.uniform(size=(5, 4, 3, 1)).astype(np.float32)
  grid = images.make_grid(pictures, num_cols=2)
  factor = images.upscale_factor(4)
  assert factor == 8
  assert grid.shape == images.grid_size(3, 2, 4, 3) + (3,)
  pad = images.PAD
  for index in range(5):
    row, col = divmod(index, 2)
    top, left = pad + row * (4 * factor + pad), pad + col * (3 * factor + pad)
    tile = grid[top:top + 4 * factor, left:left + 3 * factor]
    expected = np.kron(pictures[index, :, :, 0], np.ones((factor, factor)))
    np.testing.assert_array_equal(tile[..., 0], np.round(expected * 255).astype(np.uint8))
    np.testing.assert_array_equal(tile[..., 0], tile[..., 2])
  # The unused sixth tile stays grey.
  top, left = pad + 2 * (4 * factor + pad), pad + (3 * factor + pad)
  assert np.all(grid[top:top + 4 * factor, left:left + 3 * factor] == 128)


def test_reconstructions_sit_right_of_their_originals(tmp_path):
  originals = np.zeros((3, 8, 8, 1), np.float32)
  reconstructions = np.ones((3, 8, 8, 1), np.float32)
  grid = images.reconstructions_grid(originals, reconstructions, pairs_per_row=3)
  tile = images.upscale_factor(8) * 8
  lefts = [images.PAD + i * (tile + images.PAD) for i in range(6)]
  values = [grid[images.PAD, left, 0] for left in lefts]
  assert values == [0, 255, 0, 255, 0, 255]
  path = str(tmp_path / "r.png")
  images.save_png(path, grid)
  with Image.open(path) as image:
    assert image.format == "PNG" and image.size == (grid.shape[1], grid.shape[0])


def test_interpolation_rows():
  steps = np.linspace(0, 1, 5, dtype=np.float32)
  interpolations = np.broadcast_to(steps[None, :, None, None, None], (2, 5, 8, 8, 3))
  grid = images.interpolations_grid(interpolations)
  assert grid.shape == images.grid_size(2, 5, 8, 8) + (3,)
  tile = images.upscale_factor(8) * 8
  row = [grid[images.PAD, images.PAD + i * (tile + images.PAD), 0] for i in range(5)]
  assert row == list(np.round(steps * 255).astype(np.uint8))


def test_metric_files_are_cut_back_on_resume(tmp_path):
  writer = metrics_io.MetricWriter(str(tmp_path))
  for step in (10, 20, 30):
    writer.write_scalars(step, {"loss": float(step)})
    writer.write_eval(step, {"test_reconstruction": 1.0 / step})
  writer.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 40, "lo')  # A line cut short by a kill.
  writer = metrics_io.MetricWriter(str(tmp_path), start_step=20)
  writer.close()
  assert [r["step"] for r in metrics_io.read_jsonl(str(tmp_path / "metrics.jsonl"))] == [10, 20]
  evals = metrics_io.read_jsonl(str(tmp_path / "eval.jsonl"))
  assert evals == [{"step": 10, "metrics": {"test_reconstruction": 0.1}},
                   {"step": 20, "metrics": {"test_reconstruction": 0.05}}]


def test_progress_line():
  progress = metrics_io.Progress(start_step=0, num_train_steps=1000)
  line = progress.line(250, 1.23456, 50.0)
  assert line == "step  250/1000 | loss 1.2346 | 50.0 steps/s | ETA 15s"
  assert metrics_io.format_duration(3725) == "1h02m"


def test_write_json_atomic_leaves_no_temporary_file(tmp_path):
  path = str(tmp_path / "run_complete.json")
  checkpoint.write_json_atomic(path, {"step": 3})
  assert json.load(open(path)) == {"step": 3}
  assert os.listdir(tmp_path) == ["run_complete.json"]
