"""Priors: sample moments and log-densities against closed forms and scipy."""

import math

import jax
import ml_collections
import numpy as np
import pytest
from scipy import stats

from wae_jax import priors


def test_gaussian_sample_moments():
  prior = priors.GaussianPrior(var=2.5)
  z = np.asarray(prior.sample(jax.random.PRNGKey(0), 20_000, 4), np.float64)
  assert z.shape == (20_000, 4)
  np.testing.assert_allclose(z.mean(0), 0.0, atol=4 * math.sqrt(2.5 / 20_000))
  np.testing.assert_allclose(np.cov(z.T), 2.5 * np.eye(4), atol=0.1)


def test_gaussian_log_density_matches_scipy():
  prior = priors.GaussianPrior(var=0.7)
  z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  expected = stats.multivariate_normal(np.zeros(3), 0.7 * np.eye(3)).logpdf(z)
  np.testing.assert_allclose(np.asarray(prior.log_density(z)), expected, rtol=1e-5)


def test_sphere_samples_unit_norm_and_uniform_moments():
  d = 5
  z = np.asarray(priors.SpherePrior().sample(jax.random.PRNGKey(1), 20_000, d), np.float64)
  np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
  # Uniform on S^{d-1}: mean 0, covariance I / d.
  np.testing.assert_allclose(z.mean(0), 0.0, atol=4 * math.sqrt(1 / (d * 20_000)))
  np.testing.assert_allclose(np.cov(z.T), np.eye(d) / d, atol=0.01)


@pytest.mark.parametrize("d,area", [(2, 2 * math.pi), (3, 4 * math.pi),
                                    (4, 2 * math.pi ** 2)])
def test_sphere_log_density_is_minus_log_surface_area(d, area):
  z = np.asarray(priors.SpherePrior().sample(jax.random.PRNGKey(2), 3, d))
  np.testing.assert_allclose(np.asarray(priors.SpherePrior().log_density(z)),
                             np.full(3, -math.log(area)), rtol=1e-6)


def test_get_prior():
  config = ml_collections.ConfigDict({"prior": "gaussian", "prior_var": 3.0})
  assert priors.get_prior(config) == priors.GaussianPrior(3.0)
  config.prior = "sphere"
  assert isinstance(priors.get_prior(config), priors.SpherePrior)
  config.prior = "laplace"
  with pytest.raises(ValueError, match="config.prior"):
    priors.get_prior(config)
  with pytest.raises(ValueError, match="prior_var"):
    priors.GaussianPrior(0.0)
