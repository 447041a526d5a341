"""Latent priors P_Z: sampling and log-density.

    prior = get_prior(config)
    z = prior.sample(key, n, d)        # (n, d)
    log_p = prior.log_density(z)       # (n,)
"""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import gammaln

PRIORS = ("gaussian", "sphere")


def to_unit_sphere(z: jax.Array) -> jax.Array:
  """Projects (..., d) rows onto the unit sphere: z / ||z||.

  The epsilon keeps the value and the gradient finite at the (measure-zero)
  origin.
  """
  return z / jnp.sqrt(jnp.sum(jnp.square(z), axis=-1, keepdims=True) + 1e-12)


@dataclasses.dataclass(frozen=True)
class GaussianPrior:
  """N(0, var * I)."""

  var: float = 1.0

  def __post_init__(self):
    if isinstance(self.var, (int, float)) and not self.var > 0:  # Traced values pass.
      raise ValueError(f"The Gaussian prior's variance must be positive, got {self.var}; "
                       "set config.prior_var > 0.")

  def sample(self, key: jax.Array, n: int, d: int) -> jax.Array:
    """(n, d) draws from N(0, var * I)."""
    return jnp.sqrt(jnp.float32(self.var)) * jax.random.normal(key, (n, d))

  def log_density(self, z: jax.Array) -> jax.Array:
    """(n, d) -> (n,) log N(z; 0, var * I)."""
    d = z.shape[-1]
    return -0.5 * (d * jnp.log(2 * jnp.pi * self.var) + jnp.sum(jnp.square(z), -1) / self.var)


@dataclasses.dataclass(frozen=True)
class SpherePrior:
  """The uniform distribution on the unit sphere S^{d-1} in R^d."""

  def sample(self, key: jax.Array, n: int, d: int) -> jax.Array:
    """(n, d) unit vectors: z / ||z|| with z ~ N(0, I) is uniform on the sphere."""
    return to_unit_sphere(jax.random.normal(key, (n, d)))

  def log_density(self, z: jax.Array) -> jax.Array:
    """(n, d) -> (n,) the constant -log|S^{d-1}| = -log(2 pi^{d/2} / Gamma(d/2)).

    This is the density with respect to the surface measure of the sphere;
    z is assumed to lie on it (it is not checked).
    """
    d = z.shape[-1]
    log_area = jnp.log(2.0) + 0.5 * d * jnp.log(jnp.pi) - gammaln(0.5 * d)
    return jnp.full(z.shape[:-1], -log_area, dtype=z.dtype)


def gaussian_mixture_log_density(z: jax.Array, means: jax.Array,
                                 logvars: jax.Array) -> jax.Array:
  """log p(z) of the equal-weight mixture (1/K) sum_k N(means_k, diag exp(logvars_k)).

  Args:
    z: (n, d) points; means, logvars: (K, d) components.

  Returns:
    (n,) log densities (a logsumexp over the K components).
  """
  inv_var = jnp.exp(-logvars)                                      # (K, d)
  # sum_d (z - mu_k)^2 / var_k as matmuls: no (n, K, d) intermediate.
  squared = (jnp.square(z) @ inv_var.T - 2.0 * z @ (means * inv_var).T
             + jnp.sum(jnp.square(means) * inv_var, -1)[None])       # (n, K)
  log_components = -0.5 * (squared + jnp.sum(logvars, -1)[None]
                           + z.shape[-1] * jnp.log(2.0 * jnp.pi))
  return jax.nn.logsumexp(log_components, axis=-1) - jnp.log(means.shape[0])


def get_prior(config: ml_collections.ConfigDict):
  """The prior named by config.prior ('gaussian' uses config.prior_var)."""
  if config.prior == "gaussian":
    var = config.prior_var  # A number, or a population member's traced value.
    return GaussianPrior(float(var) if isinstance(var, (int, float)) else var)
  if config.prior == "sphere":
    return SpherePrior()
  raise ValueError(f"config.prior={config.prior!r} is not one of {PRIORS}; pick one of them.")
