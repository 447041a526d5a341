"""The fields that may differ between the members of a population: the one
list, in a leaf module so that the command line's checks (wae_jax/cli.py) and
the population code (wae_jax/hparams.py, which re-exports it) share it
without importing each other. Every other config field decides shapes or the
program and must be equal across the members.
"""

from typing import Callable, Hashable, Optional, Sequence, TypeVar

Item = TypeVar("Item")

# Fields that may differ between the members of a population (dotted names).
# Sources of the names: the shared config (wae_jax/config.py) and the method
# modules' blocks (wae_jax/methods/<name>.py).
PER_MEMBER = (
    "seed",                      # initial state and data order (outside the step)
    "lambda_reg",                # λ (WAE-MMD, WAE-GAN, MoCA)
    "optimizer.learning_rate",   # the encoder-decoder's Adam
    "adversary.learning_rate",   # WAE-GAN's adversary
    "prior_var",                 # σ² of the Gaussian prior
    "mmd.base_scale",            # IMQ base scale multiplier
    "encoder_input_noise",       # std of the WAE encoder's input noise
    "encoder_logvar_l1",         # L1 weight on a Gaussian encoder's log-variances
    "vae.beta",                  # β of the VAE and VampPrior
    "moca.temperature",          # τ
    "moca.momentum_base",        # m0 of the key encoder's cosine momentum
    "swae.beta",                 # SWAE's β
    "swae.z_loss_weight",        # SWAE's λ
)

POPULATION = "population"  # The config block of per-member value tuples.


def shared_field_message(config, prefix: str, field: str) -> Optional[str]:
  """The sentence for --config.population.<field> naming a field of the config
  that the members of a population must share; None for anything else."""
  head, _, rest = field.partition(".")
  if head != POPULATION or not rest or rest in PER_MEMBER:
    return None
  node = config
  for part in rest.split("."):
    if not hasattr(node, "keys") or part not in node:
      return None
    node = node[part]
  return (f"{prefix}{field}: config.{rest} changes shapes or the program, so the members of "
          f"a population must share it; vary only {', '.join(PER_MEMBER)}, and train "
          f"each {rest} as its own population.")


def group_by_program(items: Sequence[Item], program_of: Callable[[Item], Hashable],
                     size: int) -> list:
  """items in populations of at most `size`: [[item, ...], ...].

  The members of a population share `program_of(item)` (what they must not
  differ in: every field outside PER_MEMBER). Each program's items fill its
  populations in the items' order, and the populations are listed in the
  order of their first items.
  """
  populations, filling = [], {}
  for item in items:
    program = program_of(item)
    population = filling.get(program)
    if population is None or len(population) == size:
      population = filling[program] = []
      populations.append(population)
    population.append(item)
  return populations
