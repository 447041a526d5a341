"""Convolutions rewritten for XLA:CPU, exactly (flax's functions and gradients).

On the CPU, XLA lowers a stride-2 transposed convolution (which is also the
input gradient of a stride-2 convolution) to a convolution with a dilated
input that runs at a few GFLOP/s, against 150-350 GFLOP/s for a plain one.
And it computes every weight gradient as a convolution over the batch whose
operand it first copies to batch-minor, reading it with no cache reuse (about
1 GB/s). The layers here avoid both, each with its own backward pass
(`jax.custom_vjp`):

* `conv_transpose_phase`: a stride-2 'SAME' transposed convolution as its
  phase (sub-pixel) decomposition. Output pixel (2q + a, 2r + b) only sees
  kernel taps of parity matching (a, b), so one small VALID convolution to
  4 * O channels computes all four phases, which are then interleaved
  (depth-to-space). Its input gradient is a strided conv of the incoming
  gradient (XLA's, at full speed), its weight gradient that conv's weight
  gradient. (Autodiff through the phase form would run the gradients over its
  extra border row and column and turn the kernel gather into a scatter-add:
  XLA counts 10.2 GFLOP per 1/8-width WAE MNIST step, the model 8.56.)
* `conv_stride2_space_to_depth`: a stride-2 'SAME' convolution (XLA's
  strided conv) whose input gradient runs through its space-to-depth form: a
  stride-1 VALID convolution of the padded input regrouped by pixel parity
  with the kernel regrouped by tap parity, whose input gradient is put back
  depth-to-space.
* `conv_same_by_matmul`: a stride-1 'SAME' convolution to few channels
  (the dcgan decoders' last layer) as matrix products: the backward pass as two
  against the im2col of the small incoming gradient, the forward pass as one
  and a shifted sum where that is faster.
* The weight gradients of the first two (`_weight_grad`) are one convolution
  along the merged (W C) axis of a plain 2-D transpose of the input, with the
  kernel dilated by stride * C: the same sums, without the batch-minor copy.

All take kernels stored exactly as flax stores them ((kh, kw, C, O), NHWC),
and the modules `ConvTranspose2x`, `Conv2x` and `ConvSame` own parameters
named 'kernel' and 'bias' with flax's shapes and initialisers, so the plain
and the rewritten implementations are interchangeable with identical weights.
"""

import math
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
UPSAMPLE_CHOICES = ("auto", "phase", "transpose")


def use_stride1_rewrite(upsample: str) -> bool:
  """Resolves config.model.upsample to 'use the rewritten layers or not'.

  'auto' picks the rewrite on the CPU (where it is several times faster) and
  the plain XLA layers on GPU and TPU.
  """
  if upsample not in UPSAMPLE_CHOICES:
    raise ValueError(
        f"config.model.upsample={upsample!r} is not one of {UPSAMPLE_CHOICES}; "
        "pick one of them.")
  if upsample == "auto":
    return jax.default_backend() == "cpu"
  return upsample == "phase"


# ----------------------------------------------------------------------------
# Reference implementations (what flax nn.Conv / nn.ConvTranspose compute).


def conv_stride2_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """What nn.Conv(strides=2, padding='SAME') computes (without bias)."""
  return lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=_NHWC)


def conv_transpose_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """What nn.ConvTranspose(strides=2, padding='SAME') computes (without bias)."""
  return lax.conv_transpose(x, kernel, (2, 2), "SAME", dimension_numbers=_NHWC)


def _conv_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The stride-1 VALID convolution every rewrite runs (NHWC, HWIO)."""
  return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)


def _as_kernel_cotangent(d_kernel: jax.Array, kernel: jax.Array, dy: jax.Array) -> jax.Array:
  """d_kernel summed over the devices across which `kernel` is the same (what
  JAX's own backward pass does for the implicit broadcast of a replicated
  kernel under shard_map), so that a custom backward returns the kernel's
  type; the identity outside shard_map and for per-device kernels."""
  one = jnp.ones_like(dy, shape=())  # as device-varying as the batch
  _, broadcast_vjp = jax.vjp(lambda k: k * one, kernel)
  return broadcast_vjp(d_kernel)[0]


def _weight_grad(a: jax.Array, g: jax.Array, stride: int) -> jax.Array:
  """The gradient of <conv(a, K, stride, VALID), g> with respect to K, as one
  convolution that needs no batch-minor copy of `a`.

  Autodiff's weight gradient is a convolution over the batch for which
  XLA:CPU first copies `a` to (C, H, W, N), reading it with no cache reuse
  (about 1 GB/s). Here `a` goes to (H, W C, N) instead, a plain 2-D
  transpose, and the convolution runs along the merged (W C) axis with the
  kernel dilated by stride * C: output x = j C + c meets a[:, s q + j, c] at
  kernel tap q. Same FLOPs and the same sums; it made the 1/8-width WAE MNIST
  step 7% faster and the full-width one 5%.

  Args:
    a: (N, s (H - 1) + J, s (W - 1) + L, C) input of the convolution.
    g: (N, H, W, O) gradient of its output.
    stride: s.

  Returns:
    (J, L, C, O), the kernel's gradient.
  """
  n, a_h, a_w, c = a.shape
  _, g_h, g_w, o = g.shape
  rows = a.reshape(n, a_h * a_w * c).T.reshape(1, a_h, a_w * c, n)
  out = lax.conv_general_dilated(rows, g.transpose(1, 2, 0, 3), (1, 1), "VALID",
                                 rhs_dilation=(stride, stride * c), dimension_numbers=_NHWC)
  return out.reshape(a_h - stride * (g_h - 1), a_w - stride * (g_w - 1), c, o)


# ----------------------------------------------------------------------------
# Transposed convolution as a phase decomposition.


def _transpose_front_pad(k: int) -> int:
  """p: how far lax.conv_transpose ('SAME', stride 2) pads the dilated input
  in front (of k + s - 2 = k in all)."""
  return k - 1 if 2 > k - 1 else int(math.ceil(k / 2))


def _transpose_phase_taps(k: int) -> Tuple[np.ndarray, Tuple[int, int], int, int]:
  """1-D plan of a stride-2 'SAME' transposed conv with a k-tap kernel.

  lax.conv_transpose pads the stride-dilated input by p = ceil(k / 2) in front
  (k + s - 2 = k in all, s = 2) and correlates with the unflipped kernel, so
  y[n] = sum_m x[m] W[2m - n + p]. For output phase a (n = 2q + a) and
  m = q + j this is y[2q + a] = sum_j x[q + j] W[2j + p - a].

  Returns:
    tap: (2, J) int array; tap[a, i] is the kernel index multiplying
      x[q + jmin_a + i] for phase a, or k (a zero row) where there is none.
    shift: (shift_0, shift_1), jmin_a - base: where phase a's outputs start in
      the VALID convolution's output.
    pad_lo: padding before x (negative crops).
    num_taps: J, the length of the stride-1 kernel.
  """
  p = _transpose_front_pad(k)
  windows = []
  for a in (0, 1):
    jmin = -((p - a) // 2)                # ceil((a - p) / 2)
    jmax = (k - 1 + a - p) // 2           # floor((k - 1 + a - p) / 2)
    windows.append((jmin, jmax))
  nonempty = [w for w in windows if w[1] >= w[0]]
  base = min(w[0] for w in nonempty)
  num_taps = max(w[1] - w[0] + 1 for w in nonempty)
  tap = np.full((2, num_taps), k, dtype=np.int32)
  shift = []
  for a, (jmin, jmax) in enumerate(windows):
    if jmax < jmin:  # a phase no tap reaches (k = 1): zero kernel
      shift.append(0)
      continue
    shift.append(jmin - base)
    for i in range(jmax - jmin + 1):
      tap[a, i] = 2 * (jmin + i) + p - a
  return tap, (shift[0], shift[1]), -base, num_taps


def _transpose_phase_fn(x_shape: Tuple[int, ...], kernel_shape: Tuple[int, ...]):
  """conv_transpose_phase for fixed shapes, with its own backward pass."""
  n, h, w, c = x_shape
  kh, kw, _, o = kernel_shape
  tap_h, shift_h, lo_h, jh = _transpose_phase_taps(kh)
  tap_w, shift_w, lo_w, jw = _transpose_phase_taps(kw)
  out_h, out_w = h + max(shift_h), w + max(shift_w)
  hi_h = out_h + jh - 1 - lo_h - h
  hi_w = out_w + jw - 1 - lo_w - w
  pad_config = ((0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0))
  aligned = shift_h == (0, 0) and shift_w == (0, 0)

  def phase_kernel(kernel):
    # K[i, j, c, (2a + b) * O + o] = W[tap_h[a, i], tap_w[b, j], c, o], zero
    # where phase a has no tap i.
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    k = padded[tap_h[:, :, None, None], tap_w[None, None, :, :]]  # (2, J, 2, J, C, O)
    return k.transpose(1, 3, 4, 0, 2, 5).reshape(jh, jw, c, 4 * o)

  def interleave(z):
    """(N, out_h, out_w, 4O) phases -> (N, 2H, 2W, O)."""
    z = z.reshape(n, out_h, out_w, 2, 2, o)
    if aligned:
      phases = z.transpose(0, 1, 3, 2, 4, 5)  # (N, H, a, W, b, O)
    else:
      phases = jnp.stack([
          jnp.stack([z[:, shift_h[a]:shift_h[a] + h, shift_w[b]:shift_w[b] + w, a, b]
                     for b in (0, 1)], axis=3)
          for a in (0, 1)], axis=2)
    return phases.reshape(n, 2 * h, 2 * w, o)

  def forward(x, kernel):
    x_padded = lax.pad(x, jnp.zeros((), x.dtype), pad_config)
    z = _conv_valid(x_padded, phase_kernel(kernel))
    return interleave(z), (x, kernel)

  @jax.custom_vjp
  def conv(x, kernel):
    return forward(x, kernel)[0]

  # <conv_transpose(x, W), dy> = <x, strided_conv(dy, V)> with V[s, t, o, c] =
  # W[kh-1-s, kw-1-t, c, o] and dy padded by k-1-p in front and p-1 behind:
  # the input gradient is that strided conv (XLA runs a strided conv at full
  # speed, unlike a transposed one), the weight gradient its weight gradient
  # against x. Both run over exactly the model's FLOPs (the phase form's extra
  # border row and column do not occur).
  p_h, p_w = _transpose_front_pad(kh), _transpose_front_pad(kw)
  dy_padding = ((kh - 1 - p_h, p_h - 1), (kw - 1 - p_w, p_w - 1))

  def backward(residuals, dy):
    x, kernel = residuals
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    dy_padded = jnp.pad(dy, ((0, 0),) + dy_padding + ((0, 0),))
    d_x = lax.conv_general_dilated(dy_padded, flipped, (2, 2), "VALID", dimension_numbers=_NHWC)
    d_flipped = _weight_grad(dy_padded, x, stride=2)
    return d_x, _as_kernel_cotangent(d_flipped[::-1, ::-1].transpose(0, 1, 3, 2), kernel, dy)

  conv.defvjp(forward, backward)
  return conv


def conv_transpose_phase(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 'SAME' transposed conv via stride-1 convs (= conv_transpose_reference).

  Forward: one stride-1 conv to 4 * O channels and a depth-to-space
  interleave. Backward: the input gradient is a strided conv of the incoming
  gradient and the weight gradient that conv's weight gradient against x
  (`_weight_grad`).

  Args:
    x: (N, H, W, C) input.
    kernel: (kh, kw, C, O) kernel, as nn.ConvTranspose stores it.

  Returns:
    (N, 2H, 2W, O).
  """
  if kernel.shape[2] != x.shape[3]:
    raise ValueError(
        f"Kernel has {kernel.shape[2]} input channels but the input has {x.shape[3]}.")
  return _transpose_phase_fn(tuple(x.shape), tuple(kernel.shape))(x, kernel)


# ----------------------------------------------------------------------------
# Strided convolution as space-to-depth.


def _stride2_same_plan(size: int, k: int) -> Tuple[int, int]:
  """1-D plan of a stride-2 'SAME' conv: (out, pad_lo).

  lax's 'SAME' pads (out - 1) * 2 + k - size in all, half (rounded down) in
  front.
  """
  out = -(-size // 2)
  return out, max((out - 1) * 2 + k - size, 0) // 2


def _space_to_depth_fn(x_shape: Tuple[int, ...], kernel_shape: Tuple[int, ...]):
  """conv_stride2_space_to_depth for fixed shapes, with its own backward pass."""
  n, h, w, c = x_shape
  kh, kw, _, o = kernel_shape
  out_h, lo_h = _stride2_same_plan(h, kh)
  out_w, lo_w = _stride2_same_plan(w, kw)
  padding = ((0, 0), (lo_h, 2 * (out_h - 1) + kh - h - lo_h),
             (lo_w, 2 * (out_w - 1) + kw - w - lo_w), (0, 0))
  # The space-to-depth form: S[n, q, r, (2a + b) C + c] = x_padded[n, 2q + a,
  # 2r + b, c] (padded at the end to 2 (out + J - 1), J = ceil(k / 2); the
  # extra zeros only meet zero taps) and K2[i, j, (2a + b) C + c, o] =
  # W[2i + a, 2j + b, c, o] (zero past the kernel) give the same outputs as a
  # stride-1 VALID conv.
  jh, jw = -(-kh // 2), -(-kw // 2)
  rows, cols = out_h + jh - 1, out_w + jw - 1

  def regroup(kernel):
    k2 = jnp.pad(kernel, ((0, 2 * jh - kh), (0, 2 * jw - kw), (0, 0), (0, 0)))
    return k2.reshape(jh, 2, jw, 2, c, o).transpose(0, 2, 1, 3, 4, 5).reshape(
        jh, jw, 4 * c, o)

  def input_grad(dy, kernel):
    # The stride-1 conv is linear in S, so its vjp at any point (zeros, as
    # device-varying as dy) is its transpose; then S's gradient goes back
    # depth-to-space.
    k2 = regroup(kernel)
    _, s2d_vjp = jax.vjp(lambda s: _conv_valid(s, k2),
                         jnp.zeros_like(dy, shape=(n, rows, cols, 4 * c)))
    (d_s2d,) = s2d_vjp(dy)
    d = d_s2d.reshape(n, rows, cols, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    return d.reshape(n, 2 * rows, 2 * cols, c)[:, lo_h:lo_h + h, lo_w:lo_w + w]

  def forward(x, kernel):
    x_padded = jnp.pad(x, padding)
    y = lax.conv_general_dilated(x_padded, kernel, (2, 2), "VALID", dimension_numbers=_NHWC)
    return y, (x_padded, kernel)

  @jax.custom_vjp
  def conv(x, kernel):
    return forward(x, kernel)[0]

  def backward(residuals, dy):
    x_padded, kernel = residuals
    d_kernel = _weight_grad(x_padded, dy, stride=2)
    return input_grad(dy, kernel), _as_kernel_cotangent(d_kernel, kernel, dy)

  conv.defvjp(forward, backward)
  return conv


def conv_stride2_space_to_depth(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-2 'SAME' conv (= conv_stride2_reference) with a backward pass of
  stride-1 convs.

  Forward: XLA's strided conv of the padded input. Backward: the input
  gradient is the space-to-depth form's input gradient (a stride-1 conv of
  the incoming gradient) put back depth-to-space, the weight gradient
  `_weight_grad`.

  Args:
    x: (N, H, W, C) input.
    kernel: (kh, kw, C, O) kernel, as nn.Conv stores it.

  Returns:
    (N, ceil(H / 2), ceil(W / 2), O).
  """
  if kernel.shape[2] != x.shape[3]:
    raise ValueError(
        f"Kernel has {kernel.shape[2]} input channels but the input has {x.shape[3]}.")
  if kernel.shape[:2] == (1, 1):  # SAME with a 1x1 kernel just reads the even pixels
    return _conv_valid(x[:, ::2, ::2], kernel)
  return _space_to_depth_fn(tuple(x.shape), tuple(kernel.shape))(x, kernel)


# ----------------------------------------------------------------------------
# Stride-1 'SAME' convolution to few channels as matrix products.


def conv_same_reference(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """What nn.Conv(padding='SAME') computes (stride 1, without bias)."""
  return lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_NHWC)


def matmul_pays(kernel_shape: Tuple[int, ...]) -> bool:
  """Whether conv_same_by_matmul is faster on the CPU than XLA's conv and its
  autodiff for a (kh, kw, C, O) kernel: when the incoming gradient's im2col
  (kh * kw * O columns) is no wider than the input (C channels). Measured
  (ms per forward and backward, batch 100, with the backward alone as matrix
  products, against XLA's): 9.2 vs 19.1 for (4, 4, 32, 1) on 28x28, 122 vs
  220 for (4, 4, 256, 1), 64 vs 85 for (4, 4, 64, 3) on 32x32, 641 vs 1032
  for (5, 5, 128, 3) on 64x64; 173 vs 140 for (5, 5, 16, 3), where it does
  not hold."""
  kh, kw, c, o = kernel_shape
  return kh * kw * o <= c


def _same_by_matmul_fn(x_shape: Tuple[int, ...], kernel_shape: Tuple[int, ...]):
  """conv_same_by_matmul for fixed shapes, with its own backward pass."""
  n, h, w, c = x_shape
  kh, kw, _, o = kernel_shape
  # lax's stride-1 'SAME' pads k - 1 in all, half (rounded down) in front.
  lo_h, lo_w = (kh - 1) // 2, (kw - 1) // 2
  hi_h, hi_w = kh - 1 - lo_h, kw - 1 - lo_w

  def gradient_columns(dy):
    # cols[(n, q, r), (a, b, o)] = dy[n, q + lo_h - a, r + lo_w - b, o] (zero outside)
    dy_padded = jnp.pad(dy, ((0, 0), (hi_h, lo_h), (hi_w, lo_w), (0, 0)))
    windows = [dy_padded[:, kh - 1 - a:kh - 1 - a + h, kw - 1 - b:kw - 1 - b + w]
               for a in range(kh) for b in range(kw)]
    return jnp.concatenate(windows, axis=-1).reshape(n * h * w, kh * kw * o)

  def by_matmul(x, kernel):
    # z[n, p, (a, b, o)] = x[n, p] W[a, b] (one matrix product), and
    # y[n, q] = sum_{a, b} z[n, q - lo + (a, b), (a, b)] (a shifted sum).
    z = x.reshape(n * h * w, c) @ kernel.transpose(2, 0, 1, 3).reshape(c, kh * kw * o)
    z = jnp.pad(z.reshape(n, h, w, kh, kw, o), ((0, 0), (lo_h, hi_h), (lo_w, hi_w), (0, 0),
                                                (0, 0), (0, 0)))
    return sum(z[:, a:a + h, b:b + w, a, b] for a in range(kh) for b in range(kw))

  # The forward pass is a matrix product where its (N, H, W, kh kw O) product
  # is at most half the input's size, else XLA's conv: 8.8 vs 9.4 ms forward
  # and backward for (4, 4, 32, 1) on 28x28, 95 vs 127 for (4, 4, 256, 1);
  # 694 vs 655 for (5, 5, 128, 3), which keeps XLA's conv.
  forward_conv = by_matmul if 2 * kh * kw * o <= c else conv_same_reference

  @jax.custom_vjp
  def conv(x, kernel):
    return forward_conv(x, kernel)

  def forward(x, kernel):
    return forward_conv(x, kernel), (x, kernel)

  # y[n, q] = sum_{a, b} x[n, q - lo + (a, b)] W[a, b], so with the columns
  # above dx = cols @ W (as (kh kw O, C)) and dW = cols^T @ x (as (kh kw O, C);
  # the narrow operand first runs 8% faster than x^T @ cols).
  def backward(residuals, dy):
    x, kernel = residuals
    cols = gradient_columns(dy)
    d_x = cols @ kernel.transpose(0, 1, 3, 2).reshape(kh * kw * o, c)
    d_kernel = lax.dot_general(cols, x.reshape(n * h * w, c), (((0,), (0,)), ((), ())))
    d_kernel = d_kernel.reshape(kh, kw, o, c).transpose(0, 1, 3, 2)
    return d_x.reshape(x_shape), _as_kernel_cotangent(d_kernel, kernel, dy)

  conv.defvjp(forward, backward)
  return conv


def conv_same_by_matmul(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Stride-1 'SAME' conv (= conv_same_reference) as matrix products: the
  backward pass as two against the im2col of the incoming gradient, the
  forward pass as one and a shifted sum where that is faster.

  Args:
    x: (N, H, W, C) input.
    kernel: (kh, kw, C, O) kernel, as nn.Conv stores it.

  Returns:
    (N, H, W, O).
  """
  if kernel.shape[2] != x.shape[3]:
    raise ValueError(
        f"Kernel has {kernel.shape[2]} input channels but the input has {x.shape[3]}.")
  return _same_by_matmul_fn(tuple(x.shape), tuple(kernel.shape))(x, kernel)


# ----------------------------------------------------------------------------
# Modules with flax's parameter layout.


def _pair(kernel_size: int | Sequence[int]) -> Tuple[int, int]:
  if isinstance(kernel_size, int):
    return (kernel_size, kernel_size)
  return tuple(kernel_size)


def _conv_with_flax_params(module: nn.Module, x: jax.Array, conv) -> jax.Array:
  """conv(x, kernel) + bias, with 'kernel' (kh, kw, C, O) and 'bias' (O,)
  created inside `module` exactly as flax's conv layers create them, computed
  in module.dtype (None: the promoted dtype of x and the params, as flax does)."""
  kh, kw = _pair(module.kernel_size)
  kernel = module.param("kernel", module.kernel_init, (kh, kw, x.shape[-1], module.features))
  dtype = module.dtype or jnp.result_type(x, kernel)
  y = conv(x.astype(dtype), kernel.astype(dtype))
  if module.use_bias:
    y = y + module.param("bias", module.bias_init, (module.features,)).astype(dtype)
  return y


class _FlaxConvFields(nn.Module):
  """The fields of flax's conv layers, which the layers below take too (each
  adds the switch to its rewrite)."""

  features: int
  kernel_size: int | Tuple[int, int]
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  dtype: Any = None  # computation dtype (params stay float32); None: promote as flax does


class ConvTranspose2x(_FlaxConvFields):
  """nn.ConvTranspose(features, kernel_size, strides=2, padding='SAME').

  Same parameters ('kernel' (kh, kw, C, O) and 'bias' (O,)), initialisers and
  function as the flax layer; `phase=True` computes it with stride-1 convs.
  """

  phase: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, 2H, 2W, features)."""
    conv = conv_transpose_phase if self.phase else conv_transpose_reference
    return _conv_with_flax_params(self, x, conv)


class Conv2x(_FlaxConvFields):
  """nn.Conv(features, kernel_size, strides=2, padding='SAME').

  Same parameters, initialisers and function as the flax layer;
  `space_to_depth=True` computes its gradients with stride-1 convs.
  """

  space_to_depth: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, ceil(H/2), ceil(W/2), features)."""
    conv = conv_stride2_space_to_depth if self.space_to_depth else conv_stride2_reference
    return _conv_with_flax_params(self, x, conv)


class ConvSame(_FlaxConvFields):
  """nn.Conv(features, kernel_size, padding='SAME') (stride 1).

  Same parameters, initialisers and function as the flax layer;
  `by_matmul=True` computes it with conv_same_by_matmul where `matmul_pays`
  says that is faster.
  """

  by_matmul: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C) -> (N, H, W, features)."""
    kernel_shape = _pair(self.kernel_size) + (x.shape[-1], self.features)
    use_matmul = self.by_matmul and matmul_pays(kernel_shape)
    conv = conv_same_by_matmul if use_matmul else conv_same_reference
    return _conv_with_flax_params(self, x, conv)
