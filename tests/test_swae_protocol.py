"""The SWAE code's test protocol as options: binarised test images
(swae.binarize_test) and the final evaluation of the best checkpoint
(evaluation.final_checkpoint='best')."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from wae_jax import checkpoint
from wae_jax import cli
from wae_jax import data
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import parallel
from wae_jax import train
from wae_jax.evaluation import evaluator as evaluator_lib

import methods_testlib as lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_binarize_test_draws_each_pixel_once_with_its_grey_level():
  config = lib.tiny_config("swae")
  grey = data.build(config)
  config.swae.binarize_test = True
  binary = data.build(config)
  grey_test = next(grey.test_batches(10_000))["image"].astype(np.float64)
  binary_test = next(binary.test_batches(10_000))["image"].astype(np.float64)
  assert set(np.unique(binary_test)) == {0.0, 1.0}
  # Bernoulli(p) per pixel: the count of ones has mean sum p and variance
  # sum p (1 - p); five standard deviations.
  spread = np.sqrt(np.sum(grey_test * (1 - grey_test)))
  assert abs(binary_test.sum() - grey_test.sum()) < 5 * spread
  # Pixels that are 0 or 1 already stay so; the training images stay grey.
  sure = (grey_test == 0) | (grey_test == 1)
  np.testing.assert_array_equal(binary_test[sure], grey_test[sure])
  np.testing.assert_array_equal(next(grey.train_batches())["image"],
                                next(binary.train_batches())["image"])
  # One fixed draw: the same images in every build.
  np.testing.assert_array_equal(binary_test, next(data.build(config).test_batches(10_000))["image"])
  # uint8 images (the tfds sources) stay uint8, as 0 or 255.
  as_bytes = data.binarize(np.array([[0, 255], [128, 64]], np.uint8))
  assert as_bytes.dtype == np.uint8 and set(np.unique(as_bytes)) <= {0, 255}
  assert as_bytes[0, 0] == 0 and as_bytes[0, 1] == 255
  config.dataset = "gmm2d"
  with pytest.raises(cli.UserError, match="binarize_test=False"):
    data.build(config)


@pytest.mark.slow
def test_final_evaluation_restores_the_checkpoint_with_the_lowest_best_metric(tmp_path):
  """Step 1 is saved with the better metric: the final metrics are step 1's
  state's, not the last state's (step 2), and say so."""
  config = lib.tiny_config("swae", 16, **{"swae.num_pseudo_inputs": 40})
  config.model.hidden_sizes = (16,)
  config.num_train_steps = 2
  config.evaluation.final_checkpoint = "best"
  config.evaluation.probe_train_examples = 300
  config, source = train.prepare_config(config, jax.device_count())
  method = methods.get(config.method)
  mesh = parallel.make_mesh()
  step = lib.jit(method.train_step)
  states = [train.initial_state(method, config, source)]
  for batch in [next(source.train_batches(0)), next(source.train_batches(1))]:
    states.append(step(states[-1], batch)[0])
  manager = checkpoint.make_manager(str(tmp_path), config)
  for saved_step, value in ((1, 1.0), (2, 2.0)):
    checkpoint.save(manager, states[saved_step], saved_step, {config.best_metric: value},
                    image_shape=source.image_shape, config=config)
  evaluator = evaluator_lib.Evaluator(method, source, config)
  writer = metrics_io.MetricWriter(str(tmp_path), is_chief=True)
  final = train.evaluate_best_checkpoint(manager, config, source, mesh,
                                         parallel.replicate(states[2], mesh), evaluator, writer)
  writer.close()
  manager.close()
  first, last = evaluator(states[1]), evaluator(states[2])
  assert first["test_reconstruction"] != last["test_reconstruction"]
  assert final["final_checkpoint_step"] == 1
  # The same state and evaluation keys: the same numbers, up to the
  # replicated state's float32 reductions.
  assert final["test_reconstruction"] == pytest.approx(first["test_reconstruction"], rel=1e-6)
  line = metrics_io.read_jsonl(os.path.join(str(tmp_path), "eval.jsonl"))[-1]
  assert line["step"] == 2 and line["metrics"]["final_checkpoint_step"] == 1


@pytest.mark.slow
def test_cli_final_evaluation_is_of_the_best_checkpoint_on_binarised_digits(tmp_path):
  """configs/swae_digits.py (final_checkpoint 'best') at :runlocal with
  binarised test images, an evaluation and a checkpoint every step."""
  workdir = str(tmp_path / "run")
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.main", "--config=configs/swae_digits.py:runlocal",
       f"--workdir={workdir}", "--config.swae.binarize_test=True",
       "--config.eval_every_steps=1", "--config.checkpoint_every_steps=1",
       "--config.keep_checkpoints=1", "--config.num_train_steps=4"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
      timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = metrics_io.read_jsonl(os.path.join(workdir, "eval.jsonl"))
  periodic, final = lines[:-1], lines[-1]
  assert [line["step"] for line in periodic] == [1, 2, 3, 4] and final["step"] == 4
  values = [line["metrics"]["test_reconstruction"] for line in periodic]
  best = periodic[int(np.argmin(values))]
  with open(os.path.join(workdir, "run_complete.json"), encoding="utf-8") as f:
    complete = json.load(f)
  assert final["metrics"]["final_checkpoint_step"] == best["step"] == complete["best_step"]
  assert final["metrics"]["test_reconstruction"] == pytest.approx(
      best["metrics"]["test_reconstruction"], rel=1e-6)
  assert "fd_digits_classifier" in final["metrics"]  # the config's final metrics
  assert "fd_digits_classifier" not in periodic[-1]["metrics"]
