"""Populations (wae_jax/population.py): member i of a vmapped population
equals the same run trained alone, for every registered method, on 1 and on
8 devices; the population trainer writes each member as a solo run.

Member against solo run. vmap turns each matmul of the step into a batched
one, which XLA:CPU may sum in another order (measured here: up to 3e-8
absolute, a few ulps, in some leaves of some methods after 3 steps; other
methods and meshes came out bit-identical). The comparison is therefore the
one tests/test_parallel.py makes for 8 devices against 1, for the same
reason: under SGD (a state moves by lr * gradient; Adam divides an entry with
a true gradient of 0 by its own rounding noise, so no tolerance on it is
both safe and meaningful), float32 sums of n terms in another order differ by
at most ~n * 2^-24 of the sum of their magnitudes; with n <= 64 (batch 16,
widths <= 32, 64 pixels, the 3 x 16 latent gathers of the estimators) that is
below 1e-5 of a leaf's largest entry, the tolerance used. The trainer-level
tests below (kill and resume) are exact: they compare a program with itself.
"""

import jax
import numpy as np
import optax
import pytest

from methods_testlib import digits_batch, init_state, tiny_config
from wae_jax import fields
from wae_jax import hparams
from wae_jax import methods
from wae_jax import optim
from wae_jax import parallel
from wae_jax import population
from wae_jax import valued_step

BATCH = 16
STEPS = 3


@pytest.fixture
def sgd_optimizers(monkeypatch):
  """Every optimizer a method builds is SGD at the (valued) configured rate."""
  monkeypatch.setattr(optim, "make_optimizer",
                      lambda config: optax.sgd(optim.learning_rate_schedule(config)))
  monkeypatch.setattr(optim, "make_adversary_optimizer", lambda config: optax.sgd(
      optim.learning_rate_schedule(config, config.adversary.learning_rate)))

# Each method's own per-member field and two more values for it (the first
# member keeps the default); every population also varies seed, λ and the
# learning rate.
OWN_FIELD = {"vae": ("vae.beta", (0.5, 2.0)), "vampprior": ("vae.beta", (0.5, 2.0)),
             "moca": ("moca.temperature", (0.1, 0.5)),
             "swae": ("swae.z_loss_weight", (0.5, 2.0)),
             "wae_gan": ("adversary.learning_rate", (1e-3, 1e-4)),
             "wae_mmd": ("encoder_input_noise", (0.1, 0.0))}


def member_configs(method_name: str) -> list:
  configs = []
  for i in range(3):
    config = tiny_config(method_name, BATCH, seed=i, lambda_reg=[1.0, 3.0, 0.3][i],
                         **{"optimizer.learning_rate": [3e-3, 1e-3, 1e-2][i]})
    if method_name in OWN_FIELD and i:
      field, values = OWN_FIELD[method_name]
      fields.set_value(config, field, values[i - 1])
    configs.append(config)
  return configs


def member_batches(i: int) -> list:
  """Member i's batches: its own slice of the digits per step."""
  return [digits_batch(BATCH, offset=BATCH * (3 * step + i)) for step in range(STEPS)]


def test_every_method_has_an_own_field_or_none():
  """The table above names only per-member fields of registered methods."""
  assert set(OWN_FIELD) <= set(methods.names())
  assert all(field in hparams.PER_MEMBER for field, _ in OWN_FIELD.values())


@pytest.mark.slow
@pytest.mark.parametrize("num_devices", [1, 8])
@pytest.mark.parametrize("method_name", methods.names())
def test_member_equals_solo_run(method_name, num_devices, sgd_optimizers):
  """STEPS steps of a 3-member population (seeds, λ, learning rates and the
  method's own value differ) leave member i's state and metrics those of
  member i's run stepped alone with the same batches, to float32 summation
  order (the module doc)."""
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  configs = member_configs(method_name)
  states = [init_state(config, seed=config.seed)[1] for config in configs]
  method = methods.get(method_name)
  step = valued_step.valued_step(method)
  solo = parallel.make_parallel_step(step, mesh, donate_state=False, with_hparams=True)
  pop = parallel.make_parallel_step(step, mesh, donate_state=False, with_hparams=True,
                                    population=True)
  names = hparams.step_fields(configs)
  values = hparams.values(configs)
  assert {"lambda_reg", "optimizer.learning_rate"} <= set(names)

  stacked = population.stack(states)
  pop_metrics = []
  for s in range(STEPS):
    batch = {k: np.stack([member_batches(i)[s][k] for i in range(3)]) for k in ("image",)}
    stacked, metrics = pop(stacked, values, parallel.shard_batch(batch, mesh, 1))
    pop_metrics.append(jax.device_get(metrics))

  for i, (config, state) in enumerate(zip(configs, states)):
    own = {name: values[name][i] for name in names}
    for s, batch in enumerate(member_batches(i)):
      state, metrics = solo(state, own, parallel.shard_batch({"image": batch["image"]}, mesh))
      for name, value in jax.device_get(metrics).items():
        np.testing.assert_allclose(pop_metrics[s][name][i], value, rtol=1e-5, atol=1e-6,
                                   err_msg=f"{name} step {s}")
    got = population.member(stacked, i, jax.tree.structure(state))
    for (path, want), have in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                                  jax.tree.leaves(got)):
      want = np.asarray(want)
      scale = float(np.max(np.abs(want))) if want.size and want.dtype.kind == "f" else 0.0
      np.testing.assert_allclose(np.asarray(have), want, rtol=1e-5, atol=1e-5 * scale + 1e-7,
                                 err_msg=f"member {i} {jax.tree_util.keystr(path)}")


def test_readme_lists_the_per_member_fields():
  """The README's list of per-member fields is hparams.PER_MEMBER, in order."""
  import os
  import re
  with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "README.md"), encoding="utf-8") as f:
    text = " ".join(f.read().split())
  listed = re.search(r"Per member \(`hparams.PER_MEMBER`, the one list\): (.+?)\. Every other",
                     text)
  assert listed is not None
  names = [name.strip() for name in listed.group(1).split(",")]
  assert tuple(names) == hparams.PER_MEMBER


def test_members_of_a_population_config():
  """config.population tuples -> members with those values and an empty block;
  fields outside PER_MEMBER that differ are refused by name."""
  from wae_jax import config as wae_config
  config = wae_config.base_config()
  config.population.seed = (3, 4)
  config.population.optimizer.learning_rate = (1e-3, 2e-3)
  members = hparams.member_configs(config)
  assert [(m.seed, m.optimizer.learning_rate) for m in members] == [(3, 1e-3), (4, 2e-3)]
  assert all(hparams.member_configs(m) == [] for m in members)
  hparams.check_same_program(members)
  np.testing.assert_array_equal(hparams.values(members)["optimizer.learning_rate"],
                                np.float32([1e-3, 2e-3]))
  assert "encoder_input_noise" not in hparams.values(members)  # 0 everywhere: static
  members[1].model.encoder = "gaussian"
  with pytest.raises(ValueError, match="config.model.encoder differs"):
    hparams.check_same_program(members)


def test_runs_group_into_populations_by_program_in_order():
  """Equal program keys fill populations of at most `size` in the runs' order;
  the program key ignores exactly the PER_MEMBER fields."""
  from wae_jax import config as wae_config
  from wae_jax import per_member
  runs = ["a0", "b0", "a1", "a2", "b1", "c0", "a3"]
  assert per_member.group_by_program(runs, lambda r: r[0], 2) == [
      ["a0", "a1"], ["b0", "b1"], ["a2", "a3"], ["c0"]]
  assert per_member.group_by_program(runs, lambda r: r[0], 1) == [[r] for r in runs]
  base, other = wae_config.base_config(), wae_config.base_config()
  for field in hparams.PER_MEMBER:
    fields.set_value(other, field, type(fields.get(base, field))(2) + fields.get(base, field))
  assert hparams.program_key(other) == hparams.program_key(base)
  other.latent_dim += 1
  assert hparams.program_key(other) != hparams.program_key(base)


@pytest.mark.slow
@pytest.mark.parametrize("num_devices", [1, 8])
def test_population_of_one_runs_the_solo_program(num_devices):
  """A population of one member runs unbatched (parallel.make_parallel_step): the
  solo run's operations, so two calls of two steps each give its states and
  metrics bit for bit, with the member axis kept on the outputs."""
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  config = member_configs("wae_mmd")[1]
  state = init_state(config, seed=config.seed)[1]
  step = valued_step.valued_step(methods.get("wae_mmd"))
  kwargs = dict(donate_state=False, steps_per_call=2, with_hparams=True)
  solo = parallel.make_parallel_step(step, mesh, **kwargs)
  pop = parallel.make_parallel_step(step, mesh, population=True, **kwargs)
  values = hparams.values([config])
  own = {name: value[0] for name, value in values.items()}
  stacked = population.stack([state])
  for call in range(2):
    images = np.stack([b["image"] for b in member_batches(0)[call:call + 2]])  # (2, B, ...)
    state, metrics = solo(state, own, parallel.shard_batch({"image": images}, mesh, 1))
    stacked, pop_metrics = pop(stacked, values,
                               parallel.shard_batch({"image": images[:, None]}, mesh, 2))
    for name, value in jax.device_get(metrics).items():
      assert pop_metrics[name].shape == (2, 1)
      np.testing.assert_array_equal(np.asarray(pop_metrics[name])[:, 0], value, err_msg=name)
  for (path, want), have in zip(jax.tree_util.tree_flatten_with_path(state)[0],
                                jax.tree.leaves(stacked)):
    assert have.shape == (1,) + want.shape
    np.testing.assert_array_equal(np.asarray(have)[0], np.asarray(want),
                                  err_msg=jax.tree_util.keystr(path))
