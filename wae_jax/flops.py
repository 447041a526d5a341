"""Model FLOPs of a train step, counted on its jaxpr (the same on every backend).

    flops = step_model_flops(config, methods.get(config.method), batch)
    mfu = flops / seconds_per_step / device_peak_flops

XLA's own count (`compiled.cost_analysis()['flops']`) misses the convolutions
on a GPU, where they are cuDNN custom calls (1 GFLOP for a full-width DCGAN step
of 309), and on a CPU it counts the padding work of the rewritten stride-2
layers. This counts the matrix work of the plain model, what MFU divides by the
device's matrix peak: 2 FLOPs per multiply-add of every `dot_general` and
`conv_general_dilated` in the step's jaxpr (forward, backward and optimizer),
without a convolution's taps that fall on padding or on the holes of a dilated
input (as XLA's cost analysis does). Elementwise work and reductions are left
out (1-2% of XLA's count for the conv nets).
"""

import math

import numpy as np


def _valid_taps(in_size: int, out_size: int, kernel_size: int, stride: int, pad_low: int,
                lhs_dilation: int, rhs_dilation: int) -> int:
  """(output position, kernel tap) pairs of one spatial dim that read a real input element."""
  out = np.arange(out_size)[:, None]
  tap = np.arange(kernel_size)[None, :]
  position = out * stride + tap * rhs_dilation - pad_low  # in the dilated, padded input
  real = ((position >= 0) & (position <= (in_size - 1) * lhs_dilation)
          & (position % lhs_dilation == 0))
  return int(real.sum())


def _conv_flops(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars)
  out = eqn.outvars[0].aval.shape
  params = eqn.params
  lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
  taps = 1
  for i, (low, _) in enumerate(params["padding"]):
    taps *= _valid_taps(lhs[lhs_spec[2 + i]], out[out_spec[2 + i]], rhs[rhs_spec[2 + i]],
                        params["window_strides"][i], low, params["lhs_dilation"][i],
                        params["rhs_dilation"][i])
  # Each output element of one (batch, feature) sums rhs's input features over its taps.
  return 2 * out[out_spec[0]] * out[out_spec[1]] * rhs[rhs_spec[1]] * taps


def _dot_flops(eqn) -> int:
  lhs = eqn.invars[0].aval.shape
  (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * math.prod(lhs[d] for d in lhs_contracting)


def _sub_jaxprs(value):
  for item in value if isinstance(value, (tuple, list)) else (value,):
    inner = getattr(item, "jaxpr", item)  # ClosedJaxpr -> Jaxpr
    if hasattr(inner, "eqns"):
      yield inner


def matmul_flops(jaxpr) -> int:
  """FLOPs of the dots and convolutions of a jaxpr and the jaxprs inside it.

  A scan's body counts `length` times; of a cond's branches, the largest;
  a while loop's body once (its trip count is not known).
  """
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif name == "cond":
      total += max(matmul_flops(branch.jaxpr) for branch in eqn.params["branches"])
    else:
      repeat = eqn.params["length"] if name == "scan" else 1
      for value in eqn.params.values():
        for inner in _sub_jaxprs(value):
          total += repeat * matmul_flops(inner)
  return total


def step_model_flops(config, method, host_batch) -> int:
  """Matrix FLOPs of one train step on the whole (global) batch, built with
  flax's plain stride-2 layers (what the model computes, whatever layers run).

  Args:
    config: the run's config (copied, not changed).
    method: the method's module (init, train_step).
    host_batch: {'image': (B, H, W, C) array, ...}, the global batch.
  """
  import jax  # pylint: disable=g-import-not-at-top
  plain = config.copy_and_resolve_references()
  plain.model.upsample = "transpose"
  state = jax.eval_shape(lambda rng: method.init(plain, rng, host_batch), jax.random.PRNGKey(0))
  return matmul_flops(jax.make_jaxpr(method.train_step)(state, host_batch).jaxpr)
