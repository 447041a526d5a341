"""relu(BatchNorm(x)) with its backward pass written out, for XLA:CPU.

Autodiff of flax's nn.BatchNorm followed by a ReLU makes XLA:CPU pass over the
activations several more times than the closed-form gradient needs (it keeps
x - mean from the forward pass and reduces a product for the variance's path
besides the two sums the gradient needs). On the WAE MNIST decoder's
28x28x32 and 14x14x64 activations each pass costs about as much as a
convolution's memory traffic, so `BatchNormReLU` computes the same function
with one custom backward for the normalise-and-ReLU step:

  u = (x - mean) * mul + bias,  y = relu(u),  mul = rsqrt(var + eps) * scale
  g = dy * [u > 0]
  dx = g * mul,  dmean = -mul * sum(g),  dmul = sum(g * (x - mean)),  dbias = sum(g)

while the batch statistics (mean and E[x^2], synced over `axis_name`) and the
per-channel algebra from them to `mul` keep JAX's autodiff, which turns their
gradients into per-channel terms that XLA fuses into the dx pass. Variables,
names, initialisers and the function are flax's (tests/test_norm_layers.py
checks values and gradients against nn.BatchNorm + nn.relu in float64 and
float32, also inside shard_map); only the training path of float32 inputs is
rewritten, everything else (evaluation, initialisation, bfloat16) is computed
as flax computes it.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from wae_jax.models.conv_layers import replicated_cotangent


@jax.custom_vjp
def normalize_relu(x: jax.Array, mean: jax.Array, mul: jax.Array, bias: jax.Array) -> jax.Array:
  """relu((x - mean) * mul + bias) for x (..., C) and per-channel (C,) rest,
  with a backward pass of two reductions and two elementwise passes."""
  return nn.relu((x - mean) * mul + bias)


def _normalize_relu_forward(x, mean, mul, bias):
  # x - mean is kept (written in the same pass as the output) for the
  # backward's sum(g * (x - mean)).
  centered = x - mean
  return nn.relu(centered * mul + bias), (centered, mean, mul, bias)


def _normalize_relu_backward(residuals, dy):
  centered, mean, mul, bias = residuals
  axes = tuple(range(dy.ndim - 1))
  g = jnp.where(centered * mul + bias > 0, dy, 0)  # relu's derivative, 0 at 0 as jax's
  sum_g = jnp.sum(g, axis=axes)
  sum_g_centered = jnp.sum(g * centered, axis=axes)
  # mean, mul and bias are the same on every device of a shard_map when the
  # statistics are synced: their cotangents are then summed over the devices.
  as_cotangent = lambda d, primal: replicated_cotangent(d, primal, dy)
  return (g * mul, as_cotangent(-mul * sum_g, mean), as_cotangent(sum_g_centered, mul),
          as_cotangent(sum_g, bias))


normalize_relu.defvjp(_normalize_relu_forward, _normalize_relu_backward)


class BatchNormReLU(nn.Module):
  """nn.relu(nn.BatchNorm(...)(x)) over the last axis, with flax's variables:
  params 'scale' (ones) and 'bias' (zeros), batch_stats 'mean' (zeros) and
  'var' (ones), all (C,) float32. Give it the name the nn.BatchNorm it
  replaces would have (e.g. name="BatchNorm_0") to keep the variable tree.

  Training on float32 (or float64) inputs, computed in their dtype, runs
  `normalize_relu`;
  evaluation, initialisation and other dtypes compute exactly what flax does.
  """

  use_running_average: Optional[bool] = None
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: Optional[bool] = None) -> jax.Array:
    """(..., C) -> (..., C)."""
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    channels = x.shape[-1]
    params = self.param_tree(channels)
    ra_mean, ra_var = self.stats(channels)
    full_precision = x.dtype in (jnp.float32, jnp.float64)
    fast = (not use_running_average and not self.is_initializing() and full_precision
            and (self.dtype is None or jnp.dtype(self.dtype) == x.dtype))
    if not fast:  # flax's own module on this module's variables
      norm = nn.BatchNorm(use_running_average=use_running_average, momentum=self.momentum,
                          epsilon=self.epsilon, dtype=self.dtype, parent=None,
                          axis_name=None if self.is_initializing() else self.axis_name)
      variables = {"params": params, "batch_stats": {"mean": ra_mean.value, "var": ra_var.value}}
      if use_running_average:
        return nn.relu(norm.apply(variables, x))
      y, updates = norm.apply(variables, x, mutable=["batch_stats"])
      if not self.is_initializing():  # (flax leaves the averages alone in init)
        ra_mean.value = updates["batch_stats"]["mean"]
        ra_var.value = updates["batch_stats"]["var"]
      return nn.relu(y)

    # flax's _compute_stats with use_fast_variance: E[x] and E[x^2], one pmean.
    axes = tuple(range(x.ndim - 1))
    mean, mean2 = jnp.mean(x, axis=axes), jnp.mean(lax.square(x), axis=axes)
    if self.axis_name is not None:
      mean, mean2 = lax.pmean(jnp.stack([mean, mean2]), self.axis_name)
    var = jnp.maximum(0.0, mean2 - lax.square(mean))
    ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
    ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    # flax's _normalize: (x - mean) * (rsqrt(var + eps) * scale) + bias.
    mul = lax.rsqrt(var + self.epsilon) * params["scale"]
    return normalize_relu(x, mean, mul, params["bias"])

  def param_tree(self, channels: int) -> dict:
    return {"scale": self.param("scale", nn.initializers.ones, (channels,), jnp.float32),
            "bias": self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)}

  def stats(self, channels: int):
    return (self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32)),
            self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32)))
