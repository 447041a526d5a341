"""wae_jax.losses against plain numpy double-loop re-derivations (float64).

Every public function has at least one test in both chex variants (jitted and
not); all values come from float32 inputs and must match the reference to a
relative error of 1e-5.
"""

import functools
import math

import chex
import jax
import jax.test_util  # noqa: F401  (check_grads)
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest
from scipy import special
from scipy import stats

from wae_jax import losses

RTOL = 1e-5


def _normal(seed, shape, scale=1.0, shift=0.0):
  return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


def _unit_rows(seed, shape):
  x = _normal(seed, shape).astype(np.float64)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _sq_dist(a, b):
  return sum((float(a[k]) - float(b[k])) ** 2 for k in range(len(a)))


# ---------------------------------------------------------------- references


def mmd_reference(zq, zp, kernel, scales, prior_var, bandwidth):
  """The WAE estimator written out pair by pair."""
  n, d = zq.shape
  m = zp.shape[0]
  if kernel == "rbf":
    if bandwidth is None:
      half = (n * n - n) // 2
      cross = sorted((_sq_dist(zq[i], zp[j]) for i in range(n) for j in range(m)), reverse=True)
      within = sorted((_sq_dist(zq[i], zq[j]) for i in range(n) for j in range(n)), reverse=True)
      sigma2 = cross[half - 1] + within[half - 1]
    else:
      sigma2 = bandwidth
    k = lambda a, b: math.exp(-_sq_dist(a, b) / (2.0 * sigma2))
  else:
    cs = [2.0 * d * prior_var * s for s in scales]
    k = lambda a, b: sum(c / (c + _sq_dist(a, b)) for c in cs)
  qq = sum(k(zq[i], zq[j]) for i in range(n) for j in range(n) if i != j)
  pp = sum(k(zp[i], zp[j]) for i in range(m) for j in range(m) if i != j)
  qp = sum(k(zq[i], zp[j]) for i in range(n) for j in range(m))
  return qq / (n * (n - 1)) + pp / (m * (m - 1)) - 2.0 * qp / (n * m)


def moca_reference(q, k, queue, temperature):
  per_example = []
  for i in range(q.shape[0]):
    logits = [float(np.dot(q[i].astype(np.float64), k[i]))]
    logits += [float(np.dot(q[i].astype(np.float64), queue[j])) for j in range(queue.shape[0])]
    per_example.append(-special.log_softmax(np.array(logits) / temperature)[0])
  return np.mean(per_example)


def entropy_reference(z, keys, temperature):
  total = 0.0
  for i in range(z.shape[0]):
    inner = [math.exp(float(np.dot(z[i].astype(np.float64), keys[j])) / temperature)
             for j in range(keys.shape[0])]
    total += math.log(sum(inner) / keys.shape[0])
  return total / z.shape[0]


def sigmoid(t):
  return 1.0 / (1.0 + math.exp(-t))


def sliced_reference(x, y, directions):
  """Average over directions of W2^2 of the projections, equal sizes."""
  total = 0.0
  for theta in directions.astype(np.float64):
    px = sorted(float(np.dot(theta, row)) for row in x.astype(np.float64))
    py = sorted(float(np.dot(theta, row)) for row in y.astype(np.float64))
    total += sum((a - b) ** 2 for a, b in zip(px, py)) / len(px)
  return total / len(directions)


def entropic_ot_reference(x, y, eps, num_iters):
  n, m = len(x), len(y)
  cost = [[_sq_dist(x[i], y[j]) for j in range(m)] for i in range(n)]
  f, g = [0.0] * n, [0.0] * m
  for _ in range(num_iters):
    f = [-eps * special.logsumexp([(g[j] - cost[i][j]) / eps for j in range(m)], b=1.0 / m)
         for i in range(n)]
    g = [-eps * special.logsumexp([(f[i] - cost[i][j]) / eps for i in range(n)], b=1.0 / n)
         for j in range(m)]
  return sum(f) / n + sum(g) / m


def cramer_wold_reference(z, gamma):
  """The CWAE paper's formula, written with phi_D as in the paper."""
  n, dim = z.shape
  phi = lambda s: (1.0 + 4.0 * s / (2.0 * dim - 3.0)) ** -0.5
  within = sum(phi(_sq_dist(z[i], z[j]) / (4.0 * gamma)) / math.sqrt(gamma)
               for i in range(n) for j in range(n)) / n**2
  cross = sum(phi(_sq_dist(z[i], np.zeros(dim)) / (2.0 + 4.0 * gamma))
              for i in range(n)) / math.sqrt(gamma + 0.5)
  return (within + 1.0 / math.sqrt(1.0 + gamma) - 2.0 * cross / n) / (2.0 * math.sqrt(math.pi))


# -------------------------------------------------------------------- tests


class MMDTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_imq_matches_double_loop(self):
    zq, zp = _normal(0, (9, 5), shift=0.8), _normal(1, (9, 5))
    scales = (0.1, 1.0, 10.0)
    got = self.variant(functools.partial(losses.mmd_penalty, scales=scales, prior_var=2.0))(zq, zp)
    self.assertEqual(got.dtype, jnp.float32)
    np.testing.assert_allclose(got, mmd_reference(zq, zp, "imq", scales, 2.0, None), rtol=RTOL)

  def test_imq_unequal_sizes_and_default_scales(self):
    zq, zp = _normal(2, (7, 4), shift=1.0), _normal(3, (11, 4))
    got = jax.jit(losses.mmd_penalty)(zq, zp)
    np.testing.assert_allclose(
        got, mmd_reference(zq, zp, "imq", losses.DEFAULT_IMQ_SCALES, 1.0, None), rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_rbf_median_heuristic_matches_wae_definition(self):
    zq, zp = _normal(4, (10, 3), shift=0.7), _normal(5, (10, 3))
    got = self.variant(functools.partial(losses.mmd_penalty, kernel="rbf"))(zq, zp)
    np.testing.assert_allclose(got, mmd_reference(zq, zp, "rbf", None, None, None), rtol=RTOL)

  def test_rbf_given_bandwidth(self):
    zq, zp = _normal(6, (8, 3), shift=0.5), _normal(7, (6, 3))
    got = jax.jit(functools.partial(losses.mmd_penalty, kernel="rbf"))(zq, zp, bandwidth=1.7)
    np.testing.assert_allclose(got, mmd_reference(zq, zp, "rbf", None, None, 1.7), rtol=RTOL)

  def test_far_from_origin_is_still_accurate(self):
    # Centring inside the estimator keeps float32 Gram distances accurate.
    zq, zp = _normal(8, (8, 4), shift=300.0), _normal(9, (8, 4), shift=300.5)
    np.testing.assert_allclose(
        jax.jit(losses.mmd_penalty)(zq, zp),
        mmd_reference(zq, zp, "imq", losses.DEFAULT_IMQ_SCALES, 1.0, None), rtol=1e-4)

  def test_bad_inputs_raise(self):
    z = np.zeros((4, 3), np.float32)
    with self.assertRaisesRegex(ValueError, "kernel"):
      losses.mmd_penalty(z, z, kernel="gauss")
    with self.assertRaisesRegex(ValueError, "same last"):
      losses.mmd_penalty(z, np.zeros((4, 2), np.float32))
    with self.assertRaisesRegex(ValueError, "equal sample sizes"):
      losses.mmd_penalty(z, np.zeros((5, 3), np.float32), kernel="rbf")
    with self.assertRaisesRegex(ValueError, "at least 2"):
      losses.mmd_penalty(z[:1], z)


class ContrastiveTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_moca_loss_matches_log_softmax(self):
    q, k, queue = _unit_rows(10, (6, 8)), _unit_rows(11, (6, 8)), _unit_rows(12, (20, 8))
    got = self.variant(losses.moca_loss)(q, k, queue, 0.1)
    self.assertEqual(got.dtype, jnp.float32)
    np.testing.assert_allclose(got, moca_reference(q, k, queue, 0.1), rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_contrastive_entropy(self):
    z, keys = _unit_rows(13, (5, 8)), _unit_rows(14, (30, 8))
    got = self.variant(losses.contrastive_entropy)(z, keys, 0.2)
    np.testing.assert_allclose(got, entropy_reference(z, keys, 0.2), rtol=RTOL)

  def test_moca_gradient_matches_finite_differences(self):
    q, k, queue = _unit_rows(15, (4, 6)), _unit_rows(16, (4, 6)), _unit_rows(17, (10, 6))
    grad = jax.grad(losses.moca_loss)(q, k, queue, 0.1)
    self.assertTrue(np.all(np.isfinite(grad)))
    with jax.enable_x64(True):
      loss_of_q = jax.jit(
          lambda q64: losses.moca_loss(q64, k.astype(np.float64), queue.astype(np.float64), 0.1))
      jax.test_util.check_grads(loss_of_q, (q.astype(np.float64),), order=1, modes=["rev"],
                                atol=1e-6, rtol=1e-6)
      # And an explicit central difference along one coordinate.
      h = 1e-6
      bump = np.zeros(q.shape)
      bump[2, 3] = h
      numeric = (loss_of_q(q + bump) - loss_of_q(q - bump)) / (2 * h)
      np.testing.assert_allclose(jax.grad(loss_of_q)(q.astype(np.float64))[2, 3], numeric,
                                 rtol=1e-6)

  def test_mismatched_shapes_raise(self):
    with self.assertRaisesRegex(ValueError, "same shape"):
      losses.moca_loss(np.zeros((4, 3)), np.zeros((5, 3)), np.zeros((7, 3)), 0.1)


class AdversarialTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_adversary_loss(self):
    d_prior, d_encoded = _normal(20, (7,), 2.0), _normal(21, (5,), 2.0)
    got = self.variant(losses.adversary_loss)(d_prior, d_encoded)
    want = (np.mean([-math.log(sigmoid(float(t))) for t in d_prior])
            + np.mean([-math.log(1.0 - sigmoid(float(t))) for t in d_encoded]))
    np.testing.assert_allclose(got, want, rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_encoder_adversarial_loss_is_non_saturating(self):
    d_encoded = _normal(22, (9,), 2.0)
    got = self.variant(losses.encoder_adversarial_loss)(d_encoded)
    np.testing.assert_allclose(got, np.mean([-math.log(sigmoid(float(t))) for t in d_encoded]),
                               rtol=RTOL)
    # Non-saturating: a confident adversary (very negative logits) still
    # gives the encoder a gradient of about -1/B per logit.
    grad = jax.grad(losses.encoder_adversarial_loss)(jnp.full((4,), -30.0))
    np.testing.assert_allclose(grad, -0.25, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gaussian_log_density_is_per_sample(self):
    z = _normal(23, (6, 4), 1.5)
    got = self.variant(losses.gaussian_log_density)(z, 2.5)
    self.assertEqual(got.shape, (6,))
    self.assertEqual(got.dtype, jnp.float32)
    want = [stats.multivariate_normal.logpdf(row, np.zeros(4), 2.5 * np.eye(4)) for row in z]
    np.testing.assert_allclose(got, want, rtol=RTOL)


class LikelihoodTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_gaussian_kl(self):
    mean, logvar = _normal(30, (5, 3)), _normal(31, (5, 3), 0.7)
    got = self.variant(losses.gaussian_kl)(mean, logvar)
    total = 0.0
    for i in range(5):
      for k in range(3):
        sigma = math.exp(0.5 * float(logvar[i, k]))
        # KL(N(mu, sigma^2) || N(0, 1)) = -log sigma + (sigma^2 + mu^2) / 2 - 1/2
        total += -math.log(sigma) + (sigma**2 + float(mean[i, k])**2) / 2.0 - 0.5
    np.testing.assert_allclose(got, total / 5, rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_bernoulli_nll(self):
    logits = _normal(32, (3, 4, 4, 1), 2.0)
    x = np.random.default_rng(33).uniform(size=logits.shape).astype(np.float32)
    got = self.variant(losses.bernoulli_nll)(logits, x)
    total = 0.0
    for idx in np.ndindex(logits.shape):
      p = sigmoid(float(logits[idx]))
      total -= float(x[idx]) * math.log(p) + (1.0 - float(x[idx])) * math.log(1.0 - p)
    np.testing.assert_allclose(got, total / 3, rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gaussian_nll(self):
    mean, x = _normal(34, (3, 4, 4, 2)), _normal(35, (3, 4, 4, 2))
    got = self.variant(losses.gaussian_nll)(mean, x, 0.3)
    want = -np.sum(stats.norm.logpdf(x.astype(np.float64), mean, math.sqrt(0.3))) / 3
    np.testing.assert_allclose(got, want, rtol=RTOL)

  @chex.variants(with_jit=True, without_jit=True)
  def test_squared_error(self):
    x_rec, x = _normal(36, (4, 3, 3, 2)), _normal(37, (4, 3, 3, 2))
    got = self.variant(losses.squared_error)(x_rec, x)
    total = sum((float(x_rec[idx]) - float(x[idx])) ** 2 for idx in np.ndindex(x.shape))
    np.testing.assert_allclose(got, total / 4, rtol=RTOL)

  def test_shape_mismatch_raises(self):
    with self.assertRaisesRegex(ValueError, "same shape"):
      losses.squared_error(np.zeros((2, 3)), np.zeros((2, 4)))


class SlicedTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_double_loop_with_the_same_directions(self):
    x, y = _normal(40, (8, 5)), _normal(41, (8, 5), 1.5, 0.5)
    key = jax.random.PRNGKey(3)
    got = self.variant(functools.partial(losses.sliced_wasserstein, num_projections=16))(x, y, key)
    directions = np.asarray(losses.sample_unit_directions(key, 16, 5))
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got, sliced_reference(x, y, directions), rtol=RTOL)

  def test_unequal_sizes_equal_repeated_atoms(self):
    # An empirical measure is unchanged by repeating every atom the same
    # number of times, so sizes 6 and 4 must give the equal-size (12, 12) value.
    x, y = _normal(42, (6, 3)), _normal(43, (4, 3), 1.0, 1.0)
    key = jax.random.PRNGKey(4)
    sw = jax.jit(functools.partial(losses.sliced_wasserstein, num_projections=8))
    directions = np.asarray(losses.sample_unit_directions(key, 8, 3))
    want = sliced_reference(np.repeat(x, 2, axis=0), np.repeat(y, 3, axis=0), directions)
    np.testing.assert_allclose(sw(x, y, key), want, rtol=RTOL)


class SinkhornTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_log_domain_double_loop(self):
    x, y = _normal(50, (6, 3)), _normal(51, (5, 3), 1.0, 0.5)
    eps, iters = 0.5, 20
    got = self.variant(functools.partial(losses.sinkhorn_divergence, epsilon=eps,
                                         num_iters=iters))(x, y)
    want = (entropic_ot_reference(x, y, eps, iters) - 0.5 * entropic_ot_reference(x, x, eps, iters)
            - 0.5 * entropic_ot_reference(y, y, eps, iters))
    np.testing.assert_allclose(got, want, rtol=RTOL)

  def test_bad_arguments_raise(self):
    x = np.zeros((3, 2), np.float32)
    with self.assertRaisesRegex(ValueError, "num_iters"):
      losses.sinkhorn_divergence(x, x, 0.1, 0)
    with self.assertRaisesRegex(ValueError, "epsilon"):
      losses.sinkhorn_divergence(x, x, -1.0, 5)


class CramerWoldTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_paper_formula(self):
    z = _normal(60, (9, 6), 0.8, 0.3)
    got = self.variant(functools.partial(losses.cramer_wold_normality, gamma=0.35))(z)
    np.testing.assert_allclose(got, cramer_wold_reference(z, 0.35), rtol=RTOL)

  def test_default_gamma_is_silverman(self):
    z = _normal(61, (12, 5))
    silverman = (4.0 / (3.0 * 12)) ** 0.4
    want = cramer_wold_reference(z, silverman)
    # None, and gamma <= 0 (here traced), select the paper's rule.
    default, non_positive = jax.jit(lambda a, g: (
        losses.cramer_wold_normality(a), losses.cramer_wold_normality(a, g)))(z, -1.0)
    np.testing.assert_allclose(default, want, rtol=RTOL)
    np.testing.assert_allclose(non_positive, want, rtol=RTOL)

  def test_one_dimensional_latent_raises(self):
    with self.assertRaisesRegex(ValueError, "D >= 2"):
      losses.cramer_wold_normality(np.zeros((4, 1), np.float32))


class CosineMomentumTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_schedule_values(self):
    momentum = self.variant(losses.cosine_momentum)
    for step in (0, 1, 37, 50, 99, 100):
      want = 1.0 - (1.0 - 0.99) * (math.cos(math.pi * step / 100) + 1.0) / 2.0
      np.testing.assert_allclose(momentum(step, 100, 0.99), want, rtol=1e-6)
    np.testing.assert_allclose(momentum(0, 100, 0.99), 0.99, rtol=1e-7)
    np.testing.assert_allclose(momentum(50, 100, 0.99), 0.995, rtol=1e-7)
    np.testing.assert_allclose(momentum(250, 100, 0.99), 1.0, rtol=1e-7)  # clipped

  def test_non_positive_total_raises(self):
    with self.assertRaisesRegex(ValueError, "total_steps"):
      losses.cosine_momentum(0, 0, 0.99)


if __name__ == "__main__":
  absltest.main()
