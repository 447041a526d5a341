"""The Symmetric WAE's pure pieces: loss terms and objectives by hand, the
nearest pseudo-input against numpy brute force, the mixture prior's density
against scipy (sampling is tested on the method, test_swae.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from wae_jax import losses
from wae_jax import priors


def test_loss_terms_and_objectives_by_hand():
  images = jnp.array([[[0.0, 1.0]], [[0.5, 0.5]]])           # (B=2, 1, 2)
  reconstructions = jnp.array([[[0.1, 0.8]], [[0.5, 0.2]]])
  prior_decoded = jnp.array([[[1.0, 1.0]], [[0.0, 0.0]]])
  codes = jnp.array([[1.0, -1.0, 0.0], [2.0, 0.0, 0.0]])      # (B=2, d=3)
  prior_codes = jnp.array([[0.0, 0.0, 0.0], [2.0, 1.0, -2.0]])
  terms = losses.swae_loss_terms(images, reconstructions, prior_decoded, codes,
                                 prior_codes)
  # x_loss: ((1-0)^2 + 0^2 + (0-.5)^2 + (0-.5)^2) / 2 = 1.5 / 2
  # z_loss: (1 + 1 + 0 + 0 + 1 + 4) / 2; recon: (.01 + .04 + 0 + .09) / 2
  assert float(terms["x_loss"]) == pytest.approx(0.75)
  assert float(terms["z_loss"]) == pytest.approx(3.5)
  assert float(terms["reconstruction"]) == pytest.approx(0.07)
  x, z, r = 0.75, 3.5, 0.07
  assert float(losses.swae_objective(x, z, r)) == pytest.approx(0.5 * x + 0.5 * r + z)
  assert float(losses.swae_objective(x, z, r, "xzrec", beta=0.2, lam=3.0)) == pytest.approx(
      0.2 * x + 0.8 * r + 3 * z)
  assert float(losses.swae_objective(x, z, r, "xz", 0.3, 2.0)) == pytest.approx(0.3 * x + 2 * z)
  assert float(losses.swae_objective(x, z, r, "zrec", 0.3, 2.0)) == pytest.approx(0.3 * r + 2 * z)
  with pytest.raises(ValueError, match="xzrec"):
    losses.swae_objective(x, z, r, "x")


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_nearest_pseudo_input_equals_brute_force(metric):
  rng = np.random.default_rng(0)
  points = rng.uniform(size=(64, 20))
  pseudo = rng.uniform(size=(300, 20))
  if metric == "l2":
    expected = np.array([np.argmin(np.linalg.norm(pseudo - p, axis=1)) for p in points])
  else:
    expected = np.array([np.argmax(pseudo @ p / np.linalg.norm(pseudo, axis=1)
                                   / np.linalg.norm(p)) for p in points])
  got = np.asarray(jax.jit(losses.nearest_pseudo_input, static_argnums=2)(
      jnp.asarray(points, jnp.float32), jnp.asarray(pseudo, jnp.float32), metric))
  np.testing.assert_array_equal(got, expected)
  assert got.dtype == np.int32


def test_nearest_pseudo_input_exact_copies_and_errors():
  pseudo = jnp.eye(4)
  np.testing.assert_array_equal(
      losses.nearest_pseudo_input(pseudo[::-1] * 0.9, pseudo), [3, 2, 1, 0])
  with pytest.raises(ValueError, match="same last"):
    losses.nearest_pseudo_input(jnp.zeros((2, 3)), pseudo)
  with pytest.raises(ValueError, match="l2"):
    losses.nearest_pseudo_input(pseudo, pseudo, "manhattan")


def test_mixture_log_density_matches_scipy():
  rng = np.random.default_rng(1)
  means, logvars = rng.normal(size=(5, 3)), rng.uniform(-2, 1, size=(5, 3))
  z = rng.normal(size=(7, 3)) * 2
  components = np.stack([stats.multivariate_normal(means[k], np.diag(np.exp(logvars[k])))
                         .pdf(z) for k in range(5)])
  expected = np.log(components.mean(0))
  with jax.enable_x64(True):
    got = priors.gaussian_mixture_log_density(jnp.asarray(z), jnp.asarray(means),
                                              jnp.asarray(logvars))
  np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10)
