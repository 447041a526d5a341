"""Pure, jittable, differentiable loss functions of arrays.

Every loss takes arrays (and a PRNG key where random), computes in float32
(float32 or bfloat16 inputs) and returns a float32 scalar, except
`gaussian_log_density`, which returns one log density per row (B,), and
`cosine_momentum`, which has the shape of `step`, and `nearest_pseudo_input`,
which returns one int32 index per row. No Flax, no configs.
`cosine_momentum` (the EMA momentum schedule) lives in wae_jax/optim.py with
the other schedules and is re-exported here.
"""

from wae_jax.losses.adversarial import adversary_loss
from wae_jax.losses.adversarial import encoder_adversarial_loss
from wae_jax.losses.adversarial import gaussian_log_density
from wae_jax.losses.contrastive import contrastive_entropy
from wae_jax.losses.contrastive import moca_alignment_entropy_loss
from wae_jax.losses.contrastive import moca_loss
from wae_jax.losses.cramer_wold import cramer_wold_normality
from wae_jax.losses.cramer_wold import silverman_gamma
from wae_jax.losses.likelihood import bernoulli_nll
from wae_jax.losses.likelihood import gaussian_kl
from wae_jax.losses.likelihood import gaussian_nll
from wae_jax.losses.likelihood import squared_error
from wae_jax.losses.mmd import DEFAULT_IMQ_SCALES
from wae_jax.losses.mmd import mmd_penalty
from wae_jax.losses.sinkhorn import entropic_ot
from wae_jax.losses.sinkhorn import sinkhorn_divergence
from wae_jax.losses.sliced import sample_unit_directions
from wae_jax.losses.sliced import sliced_wasserstein
from wae_jax.losses.symmetric import nearest_pseudo_input
from wae_jax.losses.symmetric import swae_loss_terms
from wae_jax.losses.symmetric import swae_objective
from wae_jax.optim import cosine_momentum

__all__ = [
    "DEFAULT_IMQ_SCALES",
    "adversary_loss",
    "bernoulli_nll",
    "contrastive_entropy",
    "cosine_momentum",
    "cramer_wold_normality",
    "encoder_adversarial_loss",
    "entropic_ot",
    "gaussian_kl",
    "gaussian_log_density",
    "gaussian_nll",
    "mmd_penalty",
    "moca_alignment_entropy_loss",
    "moca_loss",
    "nearest_pseudo_input",
    "sample_unit_directions",
    "silverman_gamma",
    "sinkhorn_divergence",
    "sliced_wasserstein",
    "squared_error",
    "swae_loss_terms",
    "swae_objective",
]
