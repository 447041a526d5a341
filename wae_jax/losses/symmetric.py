"""The Symmetric WAE (Sun & Guo, UAI 2021): pairing, loss terms, objective.

The prior is a mixture over K learnable pseudo-inputs u_k: component k is
N(mu_k, diag sigma_k^2) with (mu_k, log sigma_k^2) = E_p(u_k). Each data point
x is paired with its nearest pseudo-input u_k(x), and z_d ~ N(mu_k(x),
sigma_k(x)^2) is drawn by reparameterisation. With the encoder E and the
decoder G (as in the authors' code, github.com/sunsunyyl/SWAE
models/conv_wae.py:197-224):

  x_loss = mean_i ||G(z_d,i) - x_i||^2     (data space: the denoising term)
  z_loss = mean_i ||E(x_i) - z_d,i||^2     (latent space)
  recon  = mean_i ||G(E(x_i)) - x_i||^2    (reconstruction)

each a sum over pixels or latent dims and a mean over the batch
(`squared_error`), and the objective is one of

  xzrec: beta * x_loss + (1 - beta) * recon + lam * z_loss   (the default)
  xz:    beta * x_loss + lam * z_loss
  zrec:  beta * recon + lam * z_loss
"""

import jax
import jax.numpy as jnp

from wae_jax.losses import _util
from wae_jax.losses.likelihood import squared_error

OBJECTIVES = ("xzrec", "xz", "zrec")
PAIRING_METRICS = ("l2", "cosine")
COSINE_EPS = 1e-6  # torch.nn.CosineSimilarity's eps in the authors' code


def nearest_pseudo_input(points: jax.Array, pseudo_inputs: jax.Array,
                         metric: str = "l2") -> jax.Array:
  """The index of each point's nearest pseudo-input.

  Args:
    points: (B, D) flattened data (or their codes).
    pseudo_inputs: (K, D) flattened pseudo-inputs (or their codes).
    metric: 'l2' (smallest Euclidean distance) or 'cosine' (largest cosine
      similarity, each norm floored at 1e-6). Ties go to the smallest index.

  Returns:
    (B,) int32 indices in [0, K). Not differentiable (an argmin).
  """
  _util.check_rank("points", points, 2, "(B, D)")
  _util.check_rank("pseudo_inputs", pseudo_inputs, 2, "(K, D)")
  _util.check_same_dim("points", points, "pseudo_inputs", pseudo_inputs)
  points = jax.lax.stop_gradient(_util.as_float(points))
  pseudo_inputs = jax.lax.stop_gradient(_util.as_float(pseudo_inputs))
  if metric == "l2":
    # ||x - u||^2 = ||x||^2 - 2 x.u + ||u||^2; ||x||^2 is constant per row.
    scores = (jnp.sum(jnp.square(pseudo_inputs), axis=-1)[None, :]
              - 2.0 * points @ pseudo_inputs.T)
    return jnp.argmin(scores, axis=-1).astype(jnp.int32)
  if metric == "cosine":
    def unit(v):
      return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), COSINE_EPS)
    return jnp.argmax(unit(points) @ unit(pseudo_inputs).T, axis=-1).astype(jnp.int32)
  raise ValueError(f"Unknown pairing metric {metric!r}; use one of {PAIRING_METRICS}.")


def swae_loss_terms(images: jax.Array, reconstructions: jax.Array,
                    prior_decoded: jax.Array, codes: jax.Array,
                    prior_codes: jax.Array) -> dict:
  """The three terms, each summed over non-batch axes and averaged over the batch.

  Args:
    images: (B, ...) data x; reconstructions: G(E(x)), same shape;
      prior_decoded: G(z_d), same shape.
    codes: (B, d) E(x); prior_codes: (B, d) z_d, paired row by row.

  Returns:
    {'x_loss', 'z_loss', 'reconstruction'}: float32 scalars.
  """
  return {"x_loss": squared_error(prior_decoded, images),
          "z_loss": squared_error(codes, prior_codes),
          "reconstruction": squared_error(reconstructions, images)}


def swae_objective(x_loss: jax.Array, z_loss: jax.Array, reconstruction: jax.Array,
                   objective: str = "xzrec", beta: float = 0.5,
                   lam: float = 1.0) -> jax.Array:
  """Combines the three terms (float32 scalars) as `objective` says (see above)."""
  if objective == "xzrec":
    return beta * x_loss + (1.0 - beta) * reconstruction + lam * z_loss
  if objective == "xz":
    return beta * x_loss + lam * z_loss
  if objective == "zrec":
    return beta * reconstruction + lam * z_loss
  raise ValueError(f"Unknown SWAE objective {objective!r}; use one of {OBJECTIVES}.")
