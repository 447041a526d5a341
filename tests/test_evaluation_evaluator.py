"""The classifier feature distance, the Evaluator on a real (tiny) method
state, and `python -m wae_jax.evaluate` on a tiny trained workdir."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import default
from wae_jax import data
from wae_jax import methods
from wae_jax.evaluation import evaluator as evaluator_lib
from wae_jax.evaluation import feature_net
from wae_jax.evaluation import fid
from wae_jax.evaluation import inception

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**evaluation):
  config = default.base_config()
  config.batch_size = 16
  config.latent_dim = 4
  config.model.hidden_sizes = (16,)
  config.num_train_steps = 4
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 2
  config.keep_checkpoints = 3
  config.num_eval_images = 8
  config.evaluation.num_samples = 200
  config.evaluation.swd_images = 200
  config.evaluation.feature_net_steps = 300
  for name, value in evaluation.items():
    config.evaluation[name] = value
  return config


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("feature_net_cache"))


@pytest.fixture(scope="module")
def digits_net(cache_dir):
  config = tiny_config(cache_dir=cache_dir)
  return feature_net.load_or_train(data.build(config), config, num_steps=300, pinned=False)


def _test_images(config):
  return np.concatenate([b["image"] for b in data.build(config).test_batches(100)])


@pytest.mark.slow
def test_classifier_fd_zero_for_itself_and_grows_with_noise(digits_net, cache_dir):
  assert digits_net.name == "fd_digits_classifier"
  assert digits_net.test_accuracy > 0.85
  assert os.path.dirname(digits_net.path) == cache_dir
  images = _test_images(tiny_config())
  features = digits_net(images)
  assert features.shape == (images.shape[0], feature_net.HIDDEN_SIZES[-1])
  assert fid.frechet_distance_from_features(features, features) == pytest.approx(0, abs=1e-8)
  rng = np.random.default_rng(0)
  distances = []
  for noise in (0.1, 0.3, 0.6):
    noisy = np.clip(images + noise * rng.standard_normal(images.shape), 0, 1)
    distances.append(fid.frechet_distance_from_features(digits_net(noisy.astype(np.float32)),
                                                        features))
  assert 0 < distances[0] < distances[1] < distances[2]


@pytest.mark.slow
def test_classifier_is_cached(digits_net, cache_dir):
  config = tiny_config(cache_dir=cache_dir)
  again = feature_net.load_or_train(data.build(config), config, num_steps=300, pinned=False)
  assert again.path == digits_net.path
  assert again.test_accuracy == pytest.approx(digits_net.test_accuracy)
  images = _test_images(config)[:50]
  np.testing.assert_allclose(again(images), digits_net(images), rtol=1e-6)


def test_unlabelled_data_raises():
  class Unlabelled:
    has_labels = False
    name = "celeb_a"
  with pytest.raises(ValueError, match="has no labels"):
    feature_net.load_or_train(Unlabelled(), dataset="celeb_a")


@pytest.fixture(scope="module")
def fresh_state():
  config = tiny_config()
  method = methods.get(config.method)
  source = data.build(config)
  example = {"image": np.zeros((config.batch_size,) + source.image_shape, np.float32)}
  return config, method, source, method.init(config, jax.random.PRNGKey(0), example)


@pytest.mark.slow
def test_evaluator_cheap_metrics_match_references(fresh_state):
  config, method, source, state = fresh_state
  evaluator = evaluator_lib.Evaluator(method, source, config)
  results = evaluator(state)
  assert set(results) == {
      "test_reconstruction", "latent_mmd", "latent_swd", "latent_sv_max", "latent_sv_min",
      "latent_sv_min_over_max", "sharpness_samples", "sharpness_reconstructions",
      "sharpness_test", "latent_knn_accuracy", "latent_linear_accuracy"}
  images = _test_images(config)
  recon = np.asarray(method.reconstruct(state, images))
  expected = np.mean(np.sum((recon.astype(np.float64) - images) ** 2, axis=(1, 2, 3)))
  assert results["test_reconstruction"] == pytest.approx(expected, rel=1e-5)
  assert all(np.isfinite(v) for v in results.values())
  assert evaluator(state) == results  # fixed keys: reproducible


@pytest.mark.slow
def test_evaluator_fid_plumbing_and_missing_weights(fresh_state, tmp_path, monkeypatch):
  config, method, source, state = fresh_state
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  evaluator = evaluator_lib.Evaluator(method, source, config)
  assert "fid_inception" not in evaluator.full_metrics
  with pytest.raises(ValueError, match="inception_v3_weights_fid.pickle.*convert_fid_weights"):
    evaluator(state, metrics=("fid_inception",))
  with pytest.raises(ValueError, match="Unknown evaluation metric"):
    evaluator(state, metrics=("fid",))

  # A stand-in feature extractor (flattened pixels) checks the FID/KID wiring
  # without a 299x299 Inception pass.
  class PixelFeatures:
    name = "pixels"
    def __call__(self, images):
      return np.asarray(images, np.float64).reshape(len(images), -1)
  weights = tmp_path / "weights.npz"
  weights.write_bytes(b"")
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(weights))
  monkeypatch.setattr(evaluator_lib, "_inception_features", lambda path: PixelFeatures())
  evaluator = evaluator_lib.Evaluator(method, source, config)
  assert {"fid_inception", "kid_inception"} <= set(evaluator.full_metrics)
  results = evaluator(state, metrics=("fid_inception", "kid_inception"))
  samples = evaluator._samples(state, 200)
  real = _test_images(config)[:200].reshape(200, -1)
  expected = fid.frechet_distance_from_features(samples.reshape(200, -1), real)
  assert results["fid_inception"] == pytest.approx(expected, rel=1e-9)
  assert results["kid_inception"] > 0
  assert evaluator.feature_nets["fid_inception"].startswith("pixels")


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory, cache_dir):
  from wae_jax import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp("workdir"))
  train.train_and_evaluate(tiny_config(cache_dir=cache_dir), workdir)
  return workdir


@pytest.mark.slow
def test_evaluate_workdir_writes_eval_lines_and_best(trained_workdir):
  from wae_jax import evaluate  # pylint: disable=g-import-not-at-top
  eval_path = os.path.join(trained_workdir, "eval.jsonl")
  before = open(eval_path).read().splitlines() if os.path.exists(eval_path) else []
  summary = evaluate.evaluate_workdir(trained_workdir, checkpoints="all",
                                      metrics="cheap,fd_classifier,swd_image")
  lines = [json.loads(l) for l in open(eval_path).read().splitlines()[len(before):]]
  assert [l["step"] for l in lines] == [2, 4]
  for line in lines:
    assert "fd_digits_classifier" in line["metrics"] and "swd_image_avg" in line["metrics"]
    assert "fd_digits_classifier" in line["feature_net"]
  assert summary["metric"] == "fd_digits_classifier"
  best = min(lines, key=lambda l: l["metrics"]["fd_digits_classifier"])
  assert summary["step"] == best["step"]
  assert json.load(open(os.path.join(trained_workdir, "best_checkpoint.json"))) == summary


@pytest.mark.slow
def test_evaluate_cli(trained_workdir):
  env = dict(os.environ, PYTHONPATH=REPO)
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.evaluate", f"--workdir={trained_workdir}",
       "--checkpoints=latest", "--metrics=cheap", "--best_metric=test_reconstruction"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  summary = json.loads(result.stdout.strip().splitlines()[-1])
  assert summary["step"] == 4 and summary["metric"] == "test_reconstruction"
  last = json.loads(open(os.path.join(trained_workdir, "eval.jsonl")).read().splitlines()[-1])
  assert last["step"] == 4
  assert last["metrics"]["test_reconstruction"] == pytest.approx(summary["value"])
  assert 0 < last["metrics"]["latent_knn_accuracy"] <= 1


# --- data that are not pictures (synthetic, gmm2d vectors) ---------------------

VECTOR_RUN_FLAGS = ("--config.synthetic_num_points=64", "--config.synthetic_dim=8",
                    "--config.batch_size=16", "--config.latent_dim=4",
                    "--config.model.hidden_sizes=(16,)", "--config.model.decoder_output=linear",
                    "--config.num_train_steps=4", "--config.eval_every_steps=2",
                    "--config.log_every_steps=2", "--config.evaluation.num_samples=64",
                    "--config.evaluation.probe_train_examples=64")


def run_trainer(workdir, *flags):
  # One device: the user's plain command (conftest's 8 fake devices only slow compiling).
  env = dict(os.environ, PYTHONPATH=REPO, XLA_FLAGS="")
  return subprocess.run(
      [sys.executable, "-m", "wae_jax.main", "--config=configs/default.py",
       f"--workdir={workdir}", *VECTOR_RUN_FLAGS, *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("dataset,labelled", [("synthetic", False), ("gmm2d", True)])
def test_vector_data_train_and_evaluate_without_image_metrics(tmp_path, dataset, labelled):
  # 'full' on unlabelled vectors is everything but sharpness, image SWD, FID/KID
  # and the PNG grids (the labelled gmm2d's would add a 2000-step classifier FD).
  final = "('full',)" if not labelled else "()"
  result = run_trainer(tmp_path, f"--config.dataset={dataset}",
                       f"--config.evaluation.final_metrics={final}")
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.load(open(tmp_path / "run_complete.json"))
  lines = [json.loads(l) for l in open(tmp_path / "eval.jsonl")]
  assert [l["step"] for l in lines] == [2, 4] and summary["step"] == 4
  for line in lines:
    values = line["metrics"]
    assert {"test_reconstruction", "latent_mmd", "latent_swd", "latent_sv_max",
            "latent_sv_min", "latent_sv_min_over_max"} <= set(values)
    assert all(np.isfinite(v) for v in values.values())
    assert not [k for k in values if k.startswith(("sharpness", "swd_image", "fid", "kid"))]
    assert values["latent_sv_min_over_max"] == pytest.approx(
        values["latent_sv_min"] / values["latent_sv_max"])
    assert values["latent_mmd"] >= 0 and values["test_reconstruction"] > 0
    assert ("latent_knn_accuracy" in values) == labelled
  best = min(lines, key=lambda l: l["metrics"]["test_reconstruction"])
  assert summary["best_metrics"]["test_reconstruction"] == pytest.approx(
      best["metrics"]["test_reconstruction"])
  assert not os.path.exists(tmp_path / "images")

  # wae_jax.sample: vectors go to .npz by default; a PNG grid of them is refused.
  from wae_jax import sample  # pylint: disable=g-import-not-at-top
  path = sample.write_samples(str(tmp_path), "reconstructions", 8)
  assert path.endswith("sample_reconstructions_00000004.npz")
  arrays = np.load(path)
  assert arrays["reconstructions"].shape == arrays["images"].shape == (
      (8, 1, 1, 8) if dataset == "synthetic" else (8, 1, 1, 2))
  with pytest.raises(ValueError, match="asks for a PNG grid, but this run's data are"):
    sample.write_samples(str(tmp_path), "samples", 8, out=str(tmp_path / "grid.png"))
  assert not os.path.exists(tmp_path / "grid.png")


def test_image_only_metric_on_vectors_is_refused_before_training(tmp_path):
  workdir = tmp_path / "run"
  result = run_trainer(workdir, "--config.dataset=synthetic",
                       "--config.evaluation.final_metrics=('latent','sharpness')")
  assert result.returncode == 2
  error = result.stderr.strip().splitlines()[-1]
  assert error.startswith("error: config.evaluation.final_metrics=('latent', 'sharpness') "
                          "needs sharpness, which only image data"), error
  assert "dataset 'synthetic' holds 1x1x8 examples" in error
  assert not os.path.exists(workdir / "config.json")


def test_best_metric_image_only_on_vectors_and_image_data_passes():
  from wae_jax import config_checks  # pylint: disable=g-import-not-at-top
  config = tiny_config()
  config.best_metric = "swd_image_avg"
  config_checks.check_metrics_for_data(config, (8, 8, 1))  # digits: fine
  config.dataset = "gmm2d"
  with pytest.raises(ValueError, match=r"config.best_metric='swd_image_avg' needs swd_image, "
                     r"which only image data .* dataset 'gmm2d' holds 1x1x2 examples"):
    config_checks.check_metrics_for_data(config, (1, 1, 2))
  config.best_metric = "latent_mmd"
  config.evaluation.final_metrics = ("full", "cheap")  # these keep what the data allow
  config_checks.check_metrics_for_data(config, (1, 1, 2))
