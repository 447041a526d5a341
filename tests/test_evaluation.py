"""Fréchet distance, KID, sharpness, image SWD and latent diagnostics against
independent references (scipy, closed forms, numpy re-derivations)."""

import jax
import ml_collections
import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from wae_jax.evaluation import fid
from wae_jax.evaluation import latent
from wae_jax.evaluation import sharpness
from wae_jax.evaluation import swd


def _random_covariance(rng, d, n=None):
  a = rng.standard_normal((n or 2 * d, d))
  return a.T @ a / a.shape[0]


def _scipy_frechet(mu1, s1, mu2, s2):
  """TTUR / pytorch-fid's formula with scipy.linalg.sqrtm."""
  covmean = scipy.linalg.sqrtm(s1 @ s2)
  covmean = np.real(covmean)
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [1, 5, 64])
def test_frechet_matches_scipy_sqrtm(d):
  rng = np.random.default_rng(d)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  s1, s2 = _random_covariance(rng, d), _random_covariance(rng, d)
  expected = _scipy_frechet(mu1, s1, mu2, s2)
  np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), expected,
                             rtol=1e-8, atol=1e-8)


def test_frechet_closed_form_diagonal():
  rng = np.random.default_rng(0)
  d = 16
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  v1, v2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  np.testing.assert_allclose(
      fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)), expected, rtol=1e-10)


def test_frechet_commuting_covariances_closed_form():
  # Same eigenvectors: tr sqrt(S1 S2) = sum sqrt(l1 l2).
  rng = np.random.default_rng(1)
  d = 8
  q, _ = np.linalg.qr(rng.standard_normal((d, d)))
  l1, l2 = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
  s1, s2 = (q * l1) @ q.T, (q * l2) @ q.T
  expected = np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
  np.testing.assert_allclose(fid.frechet_distance(np.zeros(d), s1, np.zeros(d), s2),
                             expected, rtol=1e-9, atol=1e-12)


def test_frechet_of_a_set_with_itself_is_zero_even_when_singular():
  rng = np.random.default_rng(2)
  features = rng.standard_normal((50, 200))  # N < d: singular covariance
  assert fid.frechet_distance_from_features(features, features) == pytest.approx(0, abs=1e-8)
  shifted = features + 0.5
  assert fid.frechet_distance_from_features(features, shifted) == pytest.approx(
      200 * 0.25, rel=1e-6)


def test_frechet_bad_shapes_raise():
  with pytest.raises(ValueError, match="same d"):
    fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_kid_zero_for_same_distribution_positive_when_shifted():
  rng = np.random.default_rng(3)
  x, y = rng.standard_normal((400, 16)), rng.standard_normal((400, 16))
  mean, std = fid.kernel_inception_distance(x, y, num_subsets=20, subset_size=200)
  assert abs(mean) < 3 * std + 1e-3
  shifted, _ = fid.kernel_inception_distance(x, y + 1.0, num_subsets=20, subset_size=200)
  assert shifted > 10 * max(abs(mean), std)


def test_kid_matches_double_loop_reference():
  rng = np.random.default_rng(4)
  x, y = rng.standard_normal((7, 3)), rng.standard_normal((6, 3)) + 0.3
  k = lambda a, b: (a @ b / 3 + 1) ** 3
  xx = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / 42
  yy = sum(k(y[i], y[j]) for i in range(6) for j in range(6) if i != j) / 30
  xy = sum(k(x[i], y[j]) for i in range(7) for j in range(6)) / 42
  mean, std = fid.kernel_inception_distance(x, y, num_subsets=3, subset_size=100)
  # Subsets of the capped size 6 from x differ; check the full-set estimator.
  np.testing.assert_allclose(fid._unbiased_mmd2(x, y), xx + yy - 2 * xy, rtol=1e-12)
  assert np.isfinite(mean) and std >= 0


def test_sharpness_matches_scipy_convolve2d():
  rng = np.random.default_rng(5)
  images = rng.uniform(size=(6, 12, 10, 3))
  laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
  grey = images @ np.array([0.2989, 0.5870, 0.1140])
  expected = np.mean([scipy.signal.convolve2d(g, laplace, mode="valid").var() for g in grey])
  assert sharpness.sharpness(images) == pytest.approx(expected, rel=1e-12)
  single = images[..., :1]
  expected_single = np.mean([scipy.signal.convolve2d(g[..., 0], laplace, mode="valid").var()
                             for g in single])
  assert sharpness.sharpness(single) == pytest.approx(expected_single, rel=1e-12)


def test_sharpness_blur_is_less_sharp():
  rng = np.random.default_rng(6)
  images = rng.uniform(size=(4, 16, 16, 1))
  blurred = (images + np.roll(images, 1, 1) + np.roll(images, 1, 2)) / 3
  assert sharpness.sharpness(blurred) < sharpness.sharpness(images)


def test_pyramid_resolutions():
  assert swd.pyramid_resolutions(64) == [64, 32, 16]
  assert swd.pyramid_resolutions(28) == [28]
  assert swd.pyramid_resolutions(8) == [8]


def test_laplacian_pyramid_reconstructs_the_image():
  rng = np.random.default_rng(7)
  images = rng.uniform(size=(2, 3, 32, 32)).astype(np.float32)
  levels = swd.laplacian_pyramid(images, 3)
  assert [level.shape[-1] for level in levels] == [32, 16, 8]
  rebuilt = levels[-1]
  for band in reversed(levels[:-1]):
    rebuilt = band + swd._pyr_up(rebuilt)
  np.testing.assert_allclose(rebuilt, images, atol=1e-5)


def test_image_swd_zero_for_identical_sets_and_monotone_in_noise():
  rng = np.random.default_rng(8)
  base = np.clip(rng.uniform(size=(40, 32, 32, 3)) * 0.2
                 + np.linspace(0, 0.8, 32)[None, :, None, None], 0, 1)
  same = swd.sliced_wasserstein_images(base, base.copy(), seed=1)
  assert set(same) == {"swd_32", "swd_16", "swd_avg"}
  assert same["swd_avg"] == pytest.approx(0.0, abs=1e-9)
  values = []
  for noise in (0.02, 0.1, 0.3):
    noisy = np.clip(base + noise * rng.standard_normal(base.shape), 0, 1)
    values.append(swd.sliced_wasserstein_images(base, noisy, seed=1)["swd_avg"])
  assert 0 < values[0] < values[1] < values[2]


def test_image_swd_bad_input_raises():
  with pytest.raises(ValueError, match="same H"):
    swd.sliced_wasserstein_images(np.zeros((2, 8, 8, 1)), np.zeros((2, 16, 16, 1)))


def test_code_singular_values_match_covariance_eigenvalues():
  rng = np.random.default_rng(9)
  codes = rng.standard_normal((500, 4)) * np.array([3.0, 1.0, 0.5, 0.1])
  values = latent.code_singular_values(codes)
  eig = np.sort(np.linalg.eigvalsh(np.cov(codes, rowvar=False, bias=True)))[::-1]
  np.testing.assert_allclose(values ** 2, eig, rtol=1e-10)
  summary = latent.singular_value_summary(codes)
  assert summary["latent_sv_max"] == pytest.approx(values[0])
  assert summary["latent_sv_min_over_max"] == pytest.approx(values[-1] / values[0])


def _latent_config(prior="gaussian"):
  config = ml_collections.ConfigDict()
  config.prior, config.prior_var, config.latent_dim = prior, 1.0, 4
  config.mmd = ml_collections.ConfigDict(
      {"kernel": "imq", "scales": (0.1, 1.0, 10.0), "base_scale": 1.0})
  return config


def test_latent_distances_small_for_prior_codes_and_grow_when_shifted():
  config = _latent_config()
  codes = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (500, 4)))
  key = jax.random.PRNGKey(0)
  settings = {"kernel": "imq", "scales": (0.1, 1.0, 10.0), "prior_var": 1.0}
  near = latent.latent_distances(codes, config, key, mmd_settings=settings)
  far = latent.latent_distances(codes + 2.0, config, key, mmd_settings=settings)
  assert far["latent_mmd"] > 20 * abs(near["latent_mmd"])
  assert far["latent_swd"] > 20 * near["latent_swd"]
  # The shift of 2 in all 4 coordinates: SW2^2 ~ |shift|^2 / d + noise.
  assert far["latent_swd"] == pytest.approx(4.0, rel=0.2)


def test_reconstruction_error_is_summed_squared_error():
  rng = np.random.default_rng(10)
  a, b = rng.uniform(size=(3, 4, 4, 2)), rng.uniform(size=(3, 4, 4, 2))
  expected = [np.sum((a[i] - b[i]) ** 2) for i in range(3)]
  np.testing.assert_allclose(latent.reconstruction_error(a, b), expected)
