"""Fréchet distance and the kernel inception distance between feature sets.

Both work on features from any network (InceptionV3 pool3 for FID, the
library's digit classifier for `fd_<dataset>_classifier`) and run in numpy
float64 on the host: the (d, d) covariance algebra is where float32 loses the
digits that FID differences live in.

Matrix square root. The Fréchet distance needs tr((S1 S2)^{1/2}). We use

  tr((S1 S2)^{1/2}) = tr((S1^{1/2} S2 S1^{1/2})^{1/2}) = sum_i sqrt(lambda_i),

with lambda_i the eigenvalues of the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}
(S1 S2 is similar to it, so they share eigenvalues). Both square roots come
from `numpy.linalg.eigh` of symmetric matrices, with eigenvalues that rounding
pushes below zero clipped to 0. This never produces an imaginary part and
needs no diagonal offset for singular covariances (fewer samples than
dimensions), unlike the `scipy.linalg.sqrtm(S1 @ S2)` of TTUR / pytorch-fid;
the two agree to rounding on well-conditioned inputs (tested).
"""

from typing import Tuple

import numpy as np


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of a feature set.

  Args:
    features: (N, d) array, N >= 2.

  Returns:
    mu (d,) and sigma (d, d), float64.
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(
        f"feature_statistics needs an (N, d) array with N >= 2, got shape "
        f"{features.shape}; pass at least two feature vectors.")
  return features.mean(axis=0), np.cov(features, rowvar=False).reshape(
      features.shape[1], features.shape[1])


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric PSD matrix by eigendecomposition."""
  matrix = 0.5 * (matrix + matrix.T)
  eigenvalues, eigenvectors = np.linalg.eigh(matrix)
  eigenvalues = np.clip(eigenvalues, 0.0, None)
  return (eigenvectors * np.sqrt(eigenvalues)) @ eigenvectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr((sigma1 sigma2)^{1/2}) for symmetric PSD sigma1, sigma2 of shape (d, d)."""
  sqrt_sigma1 = _symmetric_sqrt(np.asarray(sigma1, np.float64))
  inner = sqrt_sigma1 @ np.asarray(sigma2, np.float64) @ sqrt_sigma1
  eigenvalues = np.linalg.eigvalsh(0.5 * (inner + inner.T))
  return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
  """Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

  d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2}).

  Args:
    mu1, mu2: (d,) means.
    sigma1, sigma2: (d, d) symmetric PSD covariances.

  Returns:
    The squared distance d^2 as a float (this is what "FID" reports), >= 0.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0]
  if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(
        f"frechet_distance got means {mu1.shape}, {mu2.shape} and covariances "
        f"{sigma1.shape}, {sigma2.shape}; pass (d,) means and (d, d) covariances "
        "of the same d.")
  mean_term = float(np.sum((mu1 - mu2) ** 2))
  trace_term = float(np.trace(sigma1) + np.trace(sigma2)
                     - 2.0 * trace_sqrt_product(sigma1, sigma2))
  # Rounding can leave a tiny negative value for identical statistics.
  return max(mean_term + trace_term, 0.0)


def frechet_distance_from_features(features1: np.ndarray,
                                   features2: np.ndarray) -> float:
  """Fréchet distance between the Gaussians fitted to two (N_i, d) feature sets."""
  return frechet_distance(*feature_statistics(features1),
                          *feature_statistics(features2))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """k(x, y) = (x.y / d + 1)^3 for x (n, d), y (m, d) -> (n, m)."""
  return (x @ y.T / x.shape[1] + 1.0) ** 3


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with the cubic polynomial kernel (diagonals excluded)."""
  n, m = x.shape[0], y.shape[0]
  k_xx = polynomial_kernel(x, x)
  k_yy = polynomial_kernel(y, y)
  k_xy = polynomial_kernel(x, y)
  return float((k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
               + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
               - 2.0 * k_xy.mean())


def kernel_inception_distance(features1: np.ndarray, features2: np.ndarray,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> Tuple[float, float]:
  """KID (Binkowski et al. 2018): unbiased polynomial-kernel MMD^2 over subsets.

  As in the KID paper's code: `num_subsets` times draw `subset_size` rows
  (without replacement) from each set, compute the unbiased MMD^2 with
  k(x, y) = (x.y/d + 1)^3, and report the mean and the standard deviation
  over subsets. The subset size is capped by the smaller set.

  Args:
    features1: (N1, d) features.
    features2: (N2, d) features.
    num_subsets: number of random subsets.
    subset_size: rows per subset (capped at min(N1, N2)); must end >= 2.
    seed: seed of the subset draws.

  Returns:
    (mean, std) of the subset estimates. The mean is unbiased: ~0 (and
    possibly slightly negative) for two samples of one distribution.
  """
  x = np.asarray(features1, np.float64)
  y = np.asarray(features2, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(
        f"kernel_inception_distance got features {x.shape} and {y.shape}; pass "
        "two (N, d) arrays with the same d.")
  size = min(subset_size, x.shape[0], y.shape[0])
  if size < 2:
    raise ValueError(
        "kernel_inception_distance needs at least 2 feature vectors in each "
        f"set, got {x.shape[0]} and {y.shape[0]}.")
  rng = np.random.RandomState(seed)
  estimates = np.array([
      _unbiased_mmd2(x[rng.choice(x.shape[0], size, replace=False)],
                     y[rng.choice(y.shape[0], size, replace=False)])
      for _ in range(num_subsets)])
  return float(estimates.mean()), float(estimates.std())
