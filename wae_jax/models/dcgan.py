"""The WAE paper's convolutional encoder and decoder (Tolstikhin et al., 2018).

Two variants, picked from the image size:

* MNIST style, for H and W divisible by 4 and at most 32 (28x28, 32x32, and
  the 8x8 digits): encoder four 4x4 stride-2 convs with 128, 256, 512, 1024
  channels (BatchNorm, ReLU) then a dense layer to the latent; decoder dense to
  (H/4)x(W/4)x1024, 4x4 stride-2 transposed convs to 512 and 256 channels, then
  a 4x4 stride-1 conv to C channels.
* CelebA style, for H and W divisible by 8 and larger than 32 (64x64): 5x5
  filters, encoder 128-256-512-1024, decoder dense to (H/8)x(W/8)x1024, 5x5
  stride-2 transposed convs to 512, 256 and 128, then a stride-1 conv to C.

The decoder's dense layer has no batch norm, as in the WAE code
(models.py:220-224); `dense_batch_norm` adds one after it (MoCA's A1: "batch
norm in every layer", moca.txt appendix A, as Ghosh et al. 2019's nets).

Channel counts are multiplied by `width_multiplier`. With `fast_conv` the
stride-2 layers run as the exact rewrites of conv_layers.py, and the last conv
as matrix products where that is faster.
"""

from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax

from wae_jax.models.layers import LatentHead, batch_norm, decoder_output, scale_width
from wae_jax.models.conv_layers import Conv2x, ConvSame, ConvTranspose2x

ENCODER_CHANNELS = (128, 256, 512, 1024)
MNIST_DECODER_CHANNELS = (1024, 512, 256)
CELEBA_DECODER_CHANNELS = (1024, 512, 256, 128)


def dcgan_variant(image_shape: Tuple[int, int, int]) -> str:
  """'mnist' or 'celeba' for an (H, W, C) image shape; ValueError if neither fits."""
  height, width = image_shape[0], image_shape[1]
  if height % 4 == 0 and width % 4 == 0 and max(height, width) <= 32:
    return "mnist"
  if height % 8 == 0 and width % 8 == 0 and min(height, width) > 32:
    return "celeba"
  raise ValueError(
      f"The dcgan network takes images with sides divisible by 4 and at most 32 "
      f"(MNIST style) or divisible by 8 and above 32 (CelebA style), not "
      f"{height}x{width}; resize the images (config.image_size) or use another network.")


class DCGANEncoder(nn.Module):
  """Stride-2 convs + BatchNorm + ReLU, then the latent head."""

  latent_dim: int
  kernel_size: int = 4
  channels: Sequence[int] = ENCODER_CHANNELS
  encoder: str = "deterministic"
  logvar_clip: Tuple[float, float] = (-10.0, 5.0)
  fast_conv: bool = False
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)
  use_batch_norm: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """(B, H, W, C) -> (mean (B, d), logvar (B, d) or None)."""
    h = x
    for channels in self.channels:
      h = Conv2x(channels, self.kernel_size, space_to_depth=self.fast_conv, dtype=self.dtype)(h)
      h = nn.relu(batch_norm(train, self.axis_name, dtype=self.dtype, enabled=self.use_batch_norm)(h))
    h = h.reshape(h.shape[0], -1)
    return LatentHead(self.latent_dim, self.encoder, self.logvar_clip, self.dtype)(h)


class DCGANDecoder(nn.Module):
  """Dense to a small feature map, stride-2 transposed convs, stride-1 conv to C."""

  image_shape: Tuple[int, int, int]
  kernel_size: int = 4
  channels: Sequence[int] = MNIST_DECODER_CHANNELS
  output: str = "sigmoid"
  fast_conv: bool = False
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)
  use_batch_norm: bool = True
  dense_batch_norm: bool = False  # also after the dense layer (MoCA A1)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    """(B, d) -> (B, H, W, C)."""
    height, width, out_channels = self.image_shape
    scale = 2 ** (len(self.channels) - 1)
    start_h, start_w = height // scale, width // scale
    h = nn.Dense(start_h * start_w * self.channels[0], dtype=self.dtype)(z)
    h = h.reshape(z.shape[0], start_h, start_w, self.channels[0])
    # Named, so the other norms keep the names of a net without this one.
    h = nn.relu(batch_norm(train, self.axis_name, name="BatchNorm_dense", dtype=self.dtype,
                           enabled=self.use_batch_norm and self.dense_batch_norm)(h))
    for channels in self.channels[1:]:
      h = ConvTranspose2x(channels, self.kernel_size, phase=self.fast_conv, dtype=self.dtype)(h)
      h = nn.relu(batch_norm(train, self.axis_name, dtype=self.dtype, enabled=self.use_batch_norm)(h))
    # Named as the nn.Conv it replaces, so the param tree is flax's.
    h = ConvSame(out_channels, self.kernel_size, by_matmul=self.fast_conv, dtype=self.dtype,
                 name="Conv_0")(h)
    return decoder_output(h, self.output)


def build_dcgan(latent_dim: int, image_shape: Tuple[int, int, int], width_multiplier: float,
                encoder: str, logvar_clip: Tuple[float, float], output: str,
                fast_conv: bool, dtype: Any = None, use_batch_norm: bool = True,
                dense_batch_norm: bool = False) -> Tuple[DCGANEncoder, DCGANDecoder]:
  """The encoder and decoder of the dcgan variant that fits image_shape."""
  variant = dcgan_variant(image_shape)
  kernel_size = 4 if variant == "mnist" else 5
  decoder_channels = MNIST_DECODER_CHANNELS if variant == "mnist" else CELEBA_DECODER_CHANNELS
  scale = lambda chans: tuple(scale_width(c, width_multiplier) for c in chans)
  enc = DCGANEncoder(latent_dim, kernel_size, scale(ENCODER_CHANNELS), encoder,
                     logvar_clip, fast_conv, dtype=dtype, use_batch_norm=use_batch_norm)
  dec = DCGANDecoder(tuple(image_shape), kernel_size, scale(decoder_channels), output,
                     fast_conv, dtype=dtype, use_batch_norm=use_batch_norm,
                     dense_batch_norm=dense_batch_norm)
  return enc, dec
