"""Latent classification probes: how much of the label the codes keep.

Both probes are fitted on the codes of (a subset of) the training split and
scored on the codes of the whole test split:

  * `latent_knn_accuracy`: a k-nearest-neighbour classifier (Euclidean,
    majority vote, k = `knn_neighbors`). The Symmetric WAE paper classifies
    its codes this way (its code reports k = 1, 3, 5, 10:
    github.com/sunsunyyl/SWAE utils/evaluation.py:141-151).
  * `latent_linear_accuracy`: multinomial logistic regression (L2, C = 1,
    L-BFGS) on codes standardised with the training codes' mean and std: a
    linear probe, insensitive to the scale of the latent space.

Both are deterministic (sklearn's brute-force/KD-tree search and L-BFGS).
"""

import importlib
import threading
from typing import Dict

import numpy as np

from wae_jax.evaluation import metric_names

DEFAULT_KNN_NEIGHBORS = metric_names.CONFIG["evaluation"]["probe_knn_neighbors"]
LINEAR_PROBE_MAX_ITER = 1000


def import_in_background() -> threading.Thread:
  """Imports the scikit-learn classifiers the probes use (0.6 s) in a daemon
  thread, so that a trainer's first evaluation finds them loaded while the
  training steps, which hold no Python lock, run meanwhile."""

  def load():
    for module in ("sklearn.linear_model", "sklearn.neighbors"):
      importlib.import_module(module)

  thread = threading.Thread(target=load, name="wae_jax-import-sklearn", daemon=True)
  thread.start()
  return thread


def _check(train_codes, train_labels, test_codes, test_labels):
  train_codes = np.asarray(train_codes, np.float64)
  test_codes = np.asarray(test_codes, np.float64)
  train_labels = np.asarray(train_labels).reshape(-1)
  test_labels = np.asarray(test_labels).reshape(-1)
  if train_codes.ndim != 2 or test_codes.ndim != 2 or (
      train_codes.shape[1] != test_codes.shape[1]):
    raise ValueError(
        f"Probes need (N, d) train and (M, d) test codes, got {train_codes.shape} "
        f"and {test_codes.shape}.")
  if len(train_labels) != len(train_codes) or len(test_labels) != len(test_codes):
    raise ValueError(
        f"Probes need one label per code: {len(train_codes)} train codes with "
        f"{len(train_labels)} labels, {len(test_codes)} test codes with "
        f"{len(test_labels)} labels.")
  if len(np.unique(train_labels)) < 2:
    raise ValueError("Probes need at least two classes among the training labels.")
  return train_codes, train_labels, test_codes, test_labels


def knn_accuracy(train_codes: np.ndarray, train_labels: np.ndarray,
                 test_codes: np.ndarray, test_labels: np.ndarray,
                 neighbors: int = DEFAULT_KNN_NEIGHBORS) -> float:
  """Test accuracy of k-NN on the codes.

  Args:
    train_codes: (N, d); train_labels: (N,) integers.
    test_codes: (M, d); test_labels: (M,).
    neighbors: k (at most N).

  Returns:
    the fraction of test codes whose k nearest train codes vote their label.
  """
  from sklearn.neighbors import KNeighborsClassifier  # pylint: disable=g-import-not-at-top
  train_codes, train_labels, test_codes, test_labels = _check(
      train_codes, train_labels, test_codes, test_labels)
  if not 1 <= neighbors <= len(train_codes):
    raise ValueError(f"The k-NN probe needs 1 <= k <= {len(train_codes)} training codes, "
                     f"got k={neighbors}; set config.evaluation.probe_knn_neighbors.")
  classifier = KNeighborsClassifier(n_neighbors=int(neighbors))
  classifier.fit(train_codes, train_labels)
  return float(classifier.score(test_codes, test_labels))


def linear_accuracy(train_codes: np.ndarray, train_labels: np.ndarray,
                    test_codes: np.ndarray, test_labels: np.ndarray) -> float:
  """Test accuracy of logistic regression on standardised codes (shapes as knn_accuracy)."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  train_codes, train_labels, test_codes, test_labels = _check(
      train_codes, train_labels, test_codes, test_labels)
  mean = train_codes.mean(axis=0)
  std = train_codes.std(axis=0)
  std = np.where(std > 0, std, 1.0)  # a constant coordinate carries nothing
  classifier = LogisticRegression(max_iter=LINEAR_PROBE_MAX_ITER)
  classifier.fit((train_codes - mean) / std, train_labels)
  return float(classifier.score((test_codes - mean) / std, test_labels))


def latent_probes(train_codes: np.ndarray, train_labels: np.ndarray,
                  test_codes: np.ndarray, test_labels: np.ndarray,
                  knn_neighbors: int = DEFAULT_KNN_NEIGHBORS) -> Dict[str, float]:
  """{'latent_knn_accuracy', 'latent_linear_accuracy'} (shapes as knn_accuracy)."""
  return {
      "latent_knn_accuracy": knn_accuracy(train_codes, train_labels, test_codes,
                                          test_labels, knn_neighbors),
      "latent_linear_accuracy": linear_accuracy(train_codes, train_labels, test_codes,
                                                test_labels),
  }
