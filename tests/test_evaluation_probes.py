"""Latent classification probes against brute-force references, and their
place in the Evaluator (digits codes of a real, untrained state)."""

import jax
import numpy as np
import pytest

from configs import default
from wae_jax import data
from wae_jax import methods
from wae_jax.evaluation import evaluator as evaluator_lib
from wae_jax.evaluation import probes


def _brute_force_knn(train, train_labels, test, k):
  distances = ((test[:, None, :] - train[None, :, :]) ** 2).sum(-1)
  nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
  votes = train_labels[nearest]
  # Majority vote; a tie goes to the smallest label (sklearn's rule).
  predicted = np.array([np.bincount(v, minlength=10).argmax() for v in votes])
  return predicted


def test_knn_accuracy_equals_brute_force():
  rng = np.random.default_rng(0)
  train = rng.standard_normal((300, 5))
  train_labels = rng.integers(0, 4, 300)
  train[:, 0] += train_labels  # some signal, far from chance and from 1
  test = rng.standard_normal((120, 5))
  test_labels = rng.integers(0, 4, 120)
  test[:, 0] += test_labels
  for k in (1, 3, 5, 10):
    expected = np.mean(_brute_force_knn(train, train_labels, test, k) == test_labels)
    assert probes.knn_accuracy(train, train_labels, test, test_labels, k) == pytest.approx(
        expected, abs=1e-12)
  assert 0.4 < probes.knn_accuracy(train, train_labels, test, test_labels, 5) < 0.95


def test_linear_probe_separable_chance_and_scale_invariant():
  rng = np.random.default_rng(1)
  weights = rng.standard_normal((6, 3))
  train, test = rng.standard_normal((600, 6)), rng.standard_normal((300, 6))
  train_labels, test_labels = (train @ weights).argmax(1), (test @ weights).argmax(1)
  accuracy = probes.linear_accuracy(train, train_labels, test, test_labels)
  assert accuracy > 0.95  # linearly separable classes
  # Standardised inside: the scale and offset of the latent space do not matter.
  assert probes.linear_accuracy(1e3 * train + 7, train_labels, 1e3 * test + 7,
                                test_labels) == pytest.approx(accuracy, abs=1e-9)
  shuffled = rng.permutation(train_labels)
  assert probes.linear_accuracy(train, shuffled, test, test_labels) < 0.6  # ~1/3


def test_probe_input_errors():
  codes, labels = np.zeros((10, 2)), np.arange(10) % 2
  with pytest.raises(ValueError, match="one label per code"):
    probes.knn_accuracy(codes, labels[:5], codes, labels)
  with pytest.raises(ValueError, match="two classes"):
    probes.linear_accuracy(codes, np.zeros(10), codes, labels)
  with pytest.raises(ValueError, match="probe_knn_neighbors"):
    probes.knn_accuracy(codes, labels, codes, labels, neighbors=11)
  with pytest.raises(ValueError, match=r"\(N, d\)"):
    probes.knn_accuracy(codes, labels, np.zeros((10, 3)), labels)


def _config(**evaluation):
  config = default.base_config()
  config.batch_size = 50
  config.latent_dim = 4
  config.model.hidden_sizes = (16,)
  config.evaluation.probe_train_examples = 500
  for name, value in evaluation.items():
    config.evaluation[name] = value
  return config


def test_train_subset_is_fixed_and_labelled():
  source = data.build(_config())
  batches = list(source.train_subset_batches(500, 64))
  assert [len(b["image"]) for b in batches] == [64] * 7 + [52]
  again = list(data.build(_config()).train_subset_batches(500, 100))
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]),
                                np.concatenate([b["label"] for b in again]))
  everything = list(source.train_subset_batches(10**6, 1000))
  assert sum(len(b["image"]) for b in everything) == source.num_train_examples
  first = next(source.train_batches(0))  # not the probe subset's business
  assert first["image"].shape == (50, 8, 8, 1)
  with pytest.raises(ValueError, match="num_examples > 0"):
    next(source.train_subset_batches(0))


@pytest.mark.slow
def test_evaluator_probes_match_direct_computation():
  config = _config()
  method = methods.get(config.method)
  source = data.build(config)
  example = {"image": np.zeros((config.batch_size,) + source.image_shape, np.float32)}
  state = method.init(config, jax.random.PRNGKey(0), example)
  results = evaluator_lib.Evaluator(method, source, config)(state, ("latent_probes",))
  assert set(results) == {"latent_knn_accuracy", "latent_linear_accuracy"}
  train = list(source.train_subset_batches(500))
  test = list(source.test_batches(100))
  encode = lambda batches: np.concatenate(
      [np.asarray(method.encode(state, b["image"])) for b in batches])
  labels = lambda batches: np.concatenate([b["label"] for b in batches])
  expected = probes.latent_probes(encode(train), labels(train), encode(test), labels(test))
  assert results == pytest.approx(expected, abs=1e-9)
  # Even random 4-d MLP codes of digits carry the label, far above 1/10.
  assert results["latent_knn_accuracy"] > 0.3 and results["latent_linear_accuracy"] > 0.2


def test_unlabelled_data_skips_probes():
  class Unlabelled:
    has_labels = False
    image_shape = (8, 8, 1)
  evaluator = evaluator_lib.Evaluator.__new__(evaluator_lib.Evaluator)
  evaluator.data_source, evaluator.fid_weights = Unlabelled(), None
  evaluator.config = _config()
  assert "latent_probes" not in evaluator.check_metrics(("cheap",))
  assert "latent_probes" in evaluator_lib.CHEAP_METRICS
