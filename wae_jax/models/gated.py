"""The gated convolutional nets of the Symmetric WAE code (VampPrior style).

As github.com/sunsunyyl/SWAE models/conv_wae.py:27-170 builds them, with a
gate sigmoid(conv_g(x)) multiplying every layer's linear output conv_h(x):

* encoder: gated convs 7x7/1 -> 32, 3x3/2 -> 32, 5x5/1 -> 64, 3x3/2 -> 64,
  3x3/1 -> 6 (padding (k - 1) / 2, no activation, no normalisation), then a
  dense latent head on the (H/4)(W/4)6 features (294 for 28x28);
* decoder: gated dense z -> 300 -> H*W*C, reshaped to an image, four gated
  3x3/1 convs to 64 channels, then a 1x1 conv without bias to C channels and
  the output activation.

Each gated layer keeps the code's two layers as two submodules, `h` (the
linear part) and `g` (the gate), with their own kernel and bias tensors
(utils/nn.py:55-90, nn.Linear / nn.Conv2d each): the SWAE code's AdamNormGrad
(optimizer.normalize_gradients) divides every tensor's gradient by that
tensor's own norm, so fusing h and g into one tensor would change the optimiser.
`width_multiplier` scales the 32, 64 and 300 widths (not the 6-channel
bottleneck). Sides must be divisible by 4.
"""

from typing import Any, Optional, Tuple

import flax.linen as nn
import jax

from wae_jax.models.layers import LatentHead, decoder_output, scale_width

# (kernel, stride, channels) of the encoder's gated convs (conv_wae.py:47-53).
ENCODER_LAYERS = ((7, 1, 32), (3, 2, 32), (5, 1, 64), (3, 2, 64), (3, 1, 6))
DECODER_HIDDEN = 300
DECODER_CONV_CHANNELS = 64
NUM_DECODER_CONVS = 4


def check_gated_image_shape(image_shape: Tuple[int, int, int]) -> None:
  if image_shape[0] % 4 or image_shape[1] % 4:
    raise ValueError(
        f"The gated network halves the image twice, so its sides must be divisible by 4, "
        f"not {image_shape[0]}x{image_shape[1]}; set config.image_size (e.g. 28 or 32) or "
        "use another network.")


class GatedConv(nn.Module):
  """h(x) * sigmoid(g(x)) for two convs h, g; 'same'-style padding (k - 1) / 2.

  (B, H, W, C) -> (B, H / stride, W / stride, features); params {h, g}:
  {kernel (k, k, C, features), bias (features,)} each.
  """

  features: int
  kernel_size: int
  stride: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pad = (self.kernel_size - 1) // 2

    def conv(name):
      return nn.Conv(self.features, (self.kernel_size, self.kernel_size),
                     strides=(self.stride, self.stride), padding=((pad, pad), (pad, pad)),
                     dtype=self.dtype, name=name)(x)

    return conv("h") * nn.sigmoid(conv("g"))


class GatedDense(nn.Module):
  """h(x) * sigmoid(g(x)) for two dense layers h, g: (B, n) -> (B, features)."""

  features: int
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    linear = nn.Dense(self.features, dtype=self.dtype, name="h")(x)
    return linear * nn.sigmoid(nn.Dense(self.features, dtype=self.dtype, name="g")(x))


class GatedEncoder(nn.Module):
  latent_dim: int
  width_multiplier: float = 1.0
  encoder: str = "deterministic"
  logvar_clip: Tuple[float, float] = (-10.0, 5.0)
  axis_name: Optional[str] = None  # no BatchNorm; kept for the common interface
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """(B, H, W, C) -> (mean (B, d), logvar (B, d) or None)."""
    del train
    h = x
    for index, (kernel, stride, channels) in enumerate(ENCODER_LAYERS):
      last = index == len(ENCODER_LAYERS) - 1
      h = GatedConv(channels if last else scale_width(channels, self.width_multiplier),
                    kernel, stride, self.dtype)(h)
    return LatentHead(self.latent_dim, self.encoder, self.logvar_clip, self.dtype)(
        h.reshape(h.shape[0], -1))


class GatedDecoder(nn.Module):
  image_shape: Tuple[int, int, int]
  width_multiplier: float = 1.0
  output: str = "sigmoid"
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    """(B, d) -> (B, H, W, C)."""
    del train
    height, width, channels = self.image_shape
    h = GatedDense(scale_width(DECODER_HIDDEN, self.width_multiplier), self.dtype)(z)
    h = GatedDense(height * width * channels, self.dtype)(h)
    # The code reshapes to (C, H, W); in NHWC the same pixels are (H, W, C).
    h = h.reshape(z.shape[0], channels, height, width).transpose(0, 2, 3, 1)
    for _ in range(NUM_DECODER_CONVS):
      h = GatedConv(scale_width(DECODER_CONV_CHANNELS, self.width_multiplier), 3,
                    dtype=self.dtype)(h)
    h = nn.Conv(channels, (1, 1), use_bias=False, dtype=self.dtype)(h)
    return decoder_output(h, self.output)
