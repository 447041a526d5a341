"""wae_jax.flops counts the matrix FLOPs of a jaxpr: closed forms, a brute-force
count of a convolution's taps, and XLA's own cost analysis (on the CPU)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import methods_testlib as lib
from wae_jax import flops, methods

_NHWC = ("NHWC", "HWIO", "NHWC")


def _count(fn, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  return flops.matmul_flops(jax.make_jaxpr(fn)(*args).jaxpr)


# XLA's cost analysis of a lowered program is the reference where it exists:
# the CPU backend has it, a GPU's gives none.
ON_CPU = jax.default_backend() == "cpu"


def _xla_flops(fn, *shapes):
  args = [jax.ShapeDtypeStruct(s, jnp.float32) for s in shapes]
  return jax.jit(fn).lower(*args).cost_analysis()["flops"]


def test_dot_and_batched_dot():
  assert _count(jnp.dot, (5, 7), (7, 3)) == 2 * 5 * 7 * 3
  assert _count(lambda a, b: jnp.einsum("bij,bjk->bik", a, b), (4, 5, 7), (4, 7, 3)) == (
      2 * 4 * 5 * 7 * 3)


def test_scan_counts_its_body_length_times():
  def three_dots(a, b):
    return lax.scan(lambda c, _: (c @ b, None), a, None, length=3)[0]
  assert _count(three_dots, (5, 6), (6, 6)) == 3 * 2 * 5 * 6 * 6


def _brute_force_macs(in_hw, kernel_hw, strides, padding, lhs_dilation):
  """Multiply-adds per (batch, in feature, out feature) that read a real input element."""
  (ih, iw), (kh, kw) = in_hw, kernel_hw
  dilated = [(ih - 1) * lhs_dilation[0] + 1, (iw - 1) * lhs_dilation[1] + 1]
  out = [(dilated[d] + sum(padding[d]) - kernel_hw[d]) // strides[d] + 1 for d in range(2)]
  macs = 0
  for oy, ox, ky, kx in itertools.product(range(out[0]), range(out[1]), range(kh), range(kw)):
    y = oy * strides[0] + ky - padding[0][0]
    x = ox * strides[1] + kx - padding[1][0]
    if (0 <= y < dilated[0] and 0 <= x < dilated[1]
        and y % lhs_dilation[0] == 0 and x % lhs_dilation[1] == 0):
      macs += 1
  return macs


@pytest.mark.parametrize("in_hw,kernel_hw,strides,padding,lhs_dilation", [
    ((7, 7), (4, 4), (2, 2), ((1, 2), (1, 2)), (1, 1)),   # stride-2 SAME conv
    ((7, 5), (4, 4), (1, 1), ((2, 3), (2, 3)), (2, 2)),   # stride-2 transposed conv
    ((6, 6), (3, 3), (1, 1), ((1, 1), (1, 1)), (1, 1)),   # stride-1 SAME conv
    ((9, 6), (5, 3), (3, 2), ((0, 0), (4, 1)), (1, 3)),   # everything uneven
])
def test_conv_counts_only_taps_on_real_input(in_hw, kernel_hw, strides, padding, lhs_dilation):
  batch, in_features, out_features = 2, 3, 5

  def conv(x, k):
    return lax.conv_general_dilated(x, k, strides, padding, lhs_dilation=lhs_dilation,
                                    dimension_numbers=_NHWC)
  shapes = ((batch,) + in_hw + (in_features,), kernel_hw + (in_features, out_features))
  expected = 2 * batch * in_features * out_features * _brute_force_macs(
      in_hw, kernel_hw, strides, padding, lhs_dilation)
  assert _count(conv, *shapes) == expected
  if ON_CPU:
    assert _xla_flops(conv, *shapes) == expected  # XLA's cost analysis agrees


@pytest.mark.skipif(not ON_CPU, reason="XLA's lowered cost analysis is the CPU backend's")
def test_conv_gradients_match_xla_cost_analysis():
  """The transposed convolutions autodiff makes (batch-grouped, dilated kernels)."""
  def loss(x, k):
    y = lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=_NHWC)
    return jnp.sum(y * y)
  shapes = ((3, 9, 8, 4), (4, 4, 4, 6))
  grads = jax.grad(loss, argnums=(0, 1))
  assert _count(grads, *shapes) == _xla_flops(
      lambda x, k: [lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=_NHWC)
                    for _ in range(3)], *shapes)  # forward, input and kernel gradient


def test_train_step_is_the_plain_models_flops():
  """The WAE MNIST net's step (1/8 width): the same count whichever stride-2
  layers run, and within 2% of XLA's count of the plain step (which adds the
  elementwise work)."""
  counts = {}
  for upsample in ("phase", "transpose"):
    config = lib.tiny_config("wae_mmd", **{
        "model.network": "dcgan", "model.width_multiplier": 1 / 8,
        "model.upsample": upsample})
    method = methods.get("wae_mmd")
    batch = {"image": np.zeros((config.batch_size, 28, 28, 1), np.float32)}
    counts[upsample] = flops.step_model_flops(config, method, batch)
  assert counts["phase"] == counts["transpose"]
  if ON_CPU:
    state = jax.eval_shape(lambda r: method.init(config, r, batch), jax.random.PRNGKey(0))
    xla = jax.jit(method.train_step).lower(state, batch).cost_analysis()["flops"]
    assert 0.98 * xla <= counts["transpose"] <= xla
