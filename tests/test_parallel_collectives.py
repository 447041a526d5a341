"""The per-step collectives: one all-reduce for gradients and metrics, one
all-gather for the loss, nothing else (across processes each collective
operand is a round trip over gloo), with the numbers of the unfused ones."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import PartitionSpec as P

from wae_jax import parallel

from benchmarks import step as step_benchmark

NUM_DEVICES = 8


def _on_mesh(fn, in_specs, out_specs):
  mesh = parallel.make_mesh(jax.devices()[:NUM_DEVICES])
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs))


def test_fused_pmean_equals_a_pmean_per_leaf_bitwise():
  rng = np.random.default_rng(0)
  tree = {"w": rng.normal(size=(NUM_DEVICES, 3, 5)).astype(np.float32),
          "b": rng.normal(size=(NUM_DEVICES, 5)).astype(np.float32),
          "half": rng.normal(size=(NUM_DEVICES, 4)).astype(jnp.bfloat16),
          "scalar": rng.normal(size=(NUM_DEVICES,)).astype(np.float32)}
  shared = np.float32(0.1)  # replicated: its own mean

  def both(local, shared):
    local = jax.tree.map(lambda x: x[0], local)  # this device's values
    tree = dict(local, shared=shared)
    return parallel.fused_pmean(tree, "data"), lax.pmean(local, "data")

  fused, plain = _on_mesh(both, (P("data"), P()), P())(tree, shared)
  assert fused["shared"] == shared
  for name, value in plain.items():
    assert fused[name].dtype == value.dtype and fused[name].shape == value.shape
    np.testing.assert_array_equal(np.asarray(fused[name]), np.asarray(value), err_msg=name)
  # And against numpy's mean over devices (float64), to float32 rounding.
  np.testing.assert_allclose(np.asarray(fused["w"]), tree["w"].astype(np.float64).mean(0),
                             rtol=1e-6, atol=1e-7)


def _shared_loss(all_codes, prior):
  """A global-batch estimator of the gathered codes (same value on every device)."""
  return jnp.mean(jnp.exp(-jnp.sum((all_codes[:, None] - prior[None]) ** 2, -1))) + jnp.sum(
      jnp.mean(all_codes, 0) ** 2)


@pytest.mark.parametrize("num_devices", [2, 6, 8])
def test_gather_for_shared_loss_has_the_gradient_of_gather(num_devices):
  """Its gradient equals `gather`'s (a reduce-scatter of the devices' cotangents)
  and the single-device gradient of the global loss, in float64 to 1e-12."""
  rng = np.random.default_rng(1)
  codes = rng.normal(size=(3 * num_devices, 4))
  prior = rng.normal(size=(5, 4))
  mesh = parallel.make_mesh(jax.devices()[:num_devices])

  def per_device_grad(gather):
    def grad(local, prior):
      # Each device's share of the loss is the shared term, as in the methods.
      return jax.grad(lambda c: _shared_loss(gather(c, "data"), prior))(local) / num_devices
    return jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=(P("data"), P()),
                                 out_specs=P("data")))

  with jax.enable_x64():
    expected = jax.grad(_shared_loss)(codes, prior)
    for gather in (parallel.gather, parallel.gather_for_shared_loss):
      got = per_device_grad(gather)(codes, prior)
      np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-12, atol=1e-15)


def _collectives(hlo: str) -> dict:
  names = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
  counts = {name: 0 for name in names}
  operands = 0
  for line in hlo.splitlines():
    for name in names:
      match = re.search(rf"\) {name}(-start)?\((.*?)\)", line) or re.search(
          rf"\S+ {name}(-start)?\(([^)]*)\)", line)
      if match:
        counts[name] += 1
        if name == "all-reduce":
          operands += match.group(2).count("%")
  return counts, operands


@pytest.mark.slow
@pytest.mark.parametrize("method", ["wae_mmd", "vae", "moca"])
def test_the_step_runs_one_all_reduce_and_at_most_one_gather(method):
  """The compiled 8-device step of the default MLP: one all-reduce whose
  operands are one vector of gradients and one of metrics, one all-gather
  (the codes, MoCA's keys) or none (the VAE), and no reduce-scatter."""
  config = step_benchmark.make_config(method, "mlp", 16)
  batch = step_benchmark.random_batch(16, "mlp")
  step, state, sharded = step_benchmark.build_step(config, batch, num_devices=NUM_DEVICES)
  counts, operands = _collectives(step.lower(state, sharded).compile().as_text())
  assert counts["all-reduce"] == 1 and operands == 2, (counts, operands)
  assert counts["all-gather"] == (0 if method == "vae" else 1), counts
  assert counts["reduce-scatter"] == counts["all-to-all"] == counts["collective-permute"] == 0
