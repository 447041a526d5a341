"""Scalar hyper-parameters as values: the fields one compiled step reads as
arguments, so runs that differ only in them share the program.

`PER_MEMBER` (wae_jax/per_member.py, a leaf) is the one list of such fields
(the README's population section copies it). Every other config field decides
shapes or the program (method, network, widths, latent dim, batch size, image
size, encoder type, the regularizer, the schedule, the loop's cadence) and
must be equal across the members of a population (`first_mismatch`).

wae_jax/valued_step.py's step reads them from a config whose fields hold
traced float32 scalars. A population is asked for with the config's
`population` block (`population_block`, `member_configs`):
--config.population.lambda_reg='(1, 10)' trains two members.

`seed` is per member but never reaches the step: it picks the member's initial
state and its data order, both built outside the compiled step.
"""

import json
from typing import Sequence

import ml_collections
import numpy as np

from wae_jax import cli
from wae_jax import fields
from wae_jax.per_member import PER_MEMBER  # The one list, re-exported here.
from wae_jax.per_member import POPULATION

# Per-member fields outside the compiled step.
HOST_ONLY = ("seed",)

# A value of 0 here switches a term off: where every member has 0 the field
# stays a static 0 (no noise drawn); otherwise it is a value and a member
# with 0 adds 0 * noise, exactly its images.
ZERO_SWITCHES = ("encoder_input_noise",)


def step_fields(configs: Sequence[ml_collections.ConfigDict]) -> tuple:
  """The fields the compiled step of these members reads as values."""
  names = []
  for name in PER_MEMBER:
    if name in HOST_ONLY or not fields.has(configs[0], name):
      continue
    if name in ZERO_SWITCHES and all(float(fields.get(c, name)) == 0 for c in configs):
      continue
    names.append(name)
  return tuple(names)


def values(configs: Sequence[ml_collections.ConfigDict]) -> dict:
  """{field: float32 (P,)} of the members' step values (`step_fields`)."""
  return {name: np.asarray([float(fields.get(c, name)) for c in configs], np.float32)
          for name in step_fields(configs)}


def solo_values(config: ml_collections.ConfigDict) -> dict:
  """{field: float32 scalar} of one run (`values` of a population of one)."""
  return {name: v[0] for name, v in values([config]).items()}


def _flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  out = {}
  for key in sorted(config.keys()):
    value = config[key]
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
  return out


def program_key(config: ml_collections.ConfigDict) -> str:
  """What the members of a population must share: the config's fields outside
  PER_MEMBER, as one string (equal strings: one compiled step serves both)."""
  shared = {name: value for name, value in _flat(config).items() if name not in PER_MEMBER}
  return json.dumps(shared, sort_keys=True, default=repr)


def first_mismatch(configs: Sequence[ml_collections.ConfigDict]):
  """(field, value of member 0, member i, its value) for the first field outside
  PER_MEMBER that differs between the members, else None."""
  reference = _flat(configs[0])
  for i, config in enumerate(configs[1:], start=1):
    flat = _flat(config)
    for name in sorted(set(reference) | set(flat)):
      if name in PER_MEMBER:
        continue
      if reference.get(name) != flat.get(name):
        return name, reference.get(name), i, flat.get(name)
  return None


def population_block() -> ml_collections.ConfigDict:
  """config.population: each PER_MEMBER field as an empty tuple (not varied);
  --config.population.<field>='(v1, v2, ...)' gives member i the value v_i."""
  block = ml_collections.ConfigDict()
  for name in PER_MEMBER:
    node = block
    *parents, leaf = name.split(".")
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[leaf] = ()
  return block


def member_configs(config: ml_collections.ConfigDict) -> list:
  """The members config.population asks for, each a solo run's config with its
  values and an empty population block; [] when no field is varied.

  Raises:
    cli.UserError: the varied fields' tuples differ in length.
  """
  varied = {name: tuple(fields.get(config, f"{POPULATION}.{name}", ()) or ())
            for name in PER_MEMBER}
  varied = {name: values for name, values in varied.items() if values}
  if not varied:
    return []
  sizes = {name: len(values) for name, values in varied.items()}
  if len(set(sizes.values())) > 1:
    raise cli.UserError(
        "the config.population tuples must have one value per member, got "
        + ", ".join(f"{n} for {name}" for name, n in sizes.items())
        + "; give every varied field the same number of values.")
  members = []
  for i in range(next(iter(sizes.values()))):
    member = ml_collections.ConfigDict(config.to_dict())
    member[POPULATION] = population_block()
    for name, values in varied.items():
      kind = type(fields.get(config, name))
      try:
        fields.set_value(member, name, kind(values[i]))
      except (TypeError, ValueError) as error:
        raise cli.UserError(f"config.population.{name}[{i}] = {values[i]!r} is not a "
                            f"{kind.__name__}; give {kind.__name__} values.") from error
    members.append(member)
  return members


def check_same_program(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """cli.UserError naming the first field outside PER_MEMBER on which the
  members differ (it changes shapes or the program)."""
  mismatch = first_mismatch(configs)
  if mismatch is not None:
    name, first, i, other = mismatch
    raise cli.UserError(
        f"config.{name} differs between the members of a population ({first!r} in member 0, "
        f"{other!r} in member {i}); members may differ only in {', '.join(PER_MEMBER)}: "
        "train the others as another population.")
