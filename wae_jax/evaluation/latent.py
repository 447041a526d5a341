"""Latent-space diagnostics: how close the encoded test set is to the prior.

  * `latent_mmd`: the WAE IMQ/RBF MMD^2 (wae_jax.losses.mmd_penalty, with the
    run's kernel and scales) between encoded test codes and as many prior
    samples (the config's fixed prior, or a learned one's draws), on at most `max_mmd_points` codes (the n^2 kernel matrices).
  * `latent_swd`: sliced squared 2-Wasserstein distance
    (wae_jax.losses.sliced_wasserstein) over all codes, 256 directions.
  * singular values of the centred code matrix divided by sqrt(N), i.e. the
    square roots of the eigenvalues of the code covariance (MoCA's isotropy
    check: a flat spectrum = isotropic codes; for the unit sphere in d
    dimensions every value should be 1/sqrt(d)). Summarised as
    `latent_sv_max`, `latent_sv_min`, `latent_sv_min_over_max`.
  * `test_reconstruction`: per-image summed squared error between a test
    image and its reconstruction, averaged over the test split.
"""

import functools
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from wae_jax import losses
from wae_jax import priors

LATENT_SWD_PROJECTIONS = 256
MAX_MMD_POINTS = 2000


def code_singular_values(codes: np.ndarray) -> np.ndarray:
  """(N, d) codes -> (min(N, d),) singular values of (codes - mean) / sqrt(N), descending."""
  codes = np.asarray(codes, np.float64)
  centred = codes - codes.mean(axis=0, keepdims=True)
  return np.linalg.svd(centred / np.sqrt(codes.shape[0]), compute_uv=False)


def singular_value_summary(codes: np.ndarray) -> Dict[str, float]:
  """{'latent_sv_max', 'latent_sv_min', 'latent_sv_min_over_max'} of `code_singular_values`."""
  values = code_singular_values(codes)
  return {"latent_sv_max": float(values[0]), "latent_sv_min": float(values[-1]),
          "latent_sv_min_over_max": float(values[-1] / max(values[0], 1e-30))}


def latent_distances(codes: np.ndarray, config, key: jax.Array, *, mmd_settings: dict,
                     max_mmd_points: int = MAX_MMD_POINTS,
                     sample_prior: Optional[Callable] = None) -> Dict[str, float]:
  """MMD^2 and sliced W2^2 between codes (N, d) and N prior samples.

  Args:
    codes: (N, d) encoded test set, N >= 2.
    config: the run config (prior, prior_var: the fixed prior's samples).
    key: PRNG key for the prior samples and the directions.
    mmd_settings: losses.mmd_penalty's kernel, scales and prior_var (the
      method record's `mmd_settings(config)`: the run's own kernel).
    max_mmd_points: MMD uses the first min(N, this) codes.
    sample_prior: (key, n) -> (n, d) draws of a learned prior (SWAE); default
      the fixed prior config.prior names.

  Returns:
    {'latent_mmd', 'latent_swd'}.
  """
  codes = jnp.asarray(codes, jnp.float32)
  if codes.ndim != 2 or codes.shape[0] < 2:
    raise ValueError(f"latent_distances needs (N >= 2, d) codes, got {codes.shape}.")
  num, dim = codes.shape
  prior_key, direction_key = jax.random.split(key)
  if sample_prior is None:
    prior_samples = priors.get_prior(config).sample(prior_key, num, dim)
  else:
    prior_samples = jnp.asarray(sample_prior(prior_key, num), jnp.float32)
  mmd, swd = _mmd_and_swd(codes, prior_samples, direction_key,
                          mmd_count=min(num, max_mmd_points), **mmd_settings)
  return {"latent_mmd": float(mmd), "latent_swd": float(swd)}


@functools.partial(jax.jit, static_argnames=("kernel", "scales", "prior_var", "mmd_count"))
def _mmd_and_swd(codes: jax.Array, prior_samples: jax.Array, direction_key: jax.Array, *,
                 kernel: str, scales: Tuple[float, ...], prior_var: float,
                 mmd_count: int) -> Tuple[jax.Array, jax.Array]:
  """One compiled program for both distances: run op by op they are ~30 tiny
  programs, each traced and loaded from the compilation cache every run."""
  mmd = losses.mmd_penalty(codes[:mmd_count], prior_samples[:mmd_count], kernel=kernel,
                           scales=scales, prior_var=prior_var)
  swd = losses.sliced_wasserstein(codes, prior_samples, direction_key,
                                  num_projections=LATENT_SWD_PROJECTIONS)
  return mmd, swd


def reconstruction_error(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
  """(N, H, W, C) pairs -> (N,) summed squared error per image, float64."""
  diff = np.asarray(reconstructions, np.float64) - np.asarray(images, np.float64)
  return np.sum(diff * diff, axis=tuple(range(1, diff.ndim)))
