"""ResNet encoders and mirrored decoders.

* resnet18 (MoCA's A2): 3x3 first conv at stride 1, four stages of two basic
  blocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), global average
  pool, dense to the latent. The decoder is its mirror, block by block: dense
  to an (H/8)x(W/8)x512 map, the stages in reverse, each block run backwards
  (the last block of a stage upsamples to the previous stage's channels), then
  a 3x3 conv to C. For 64x64 images (MoCA's CelebA) it starts from 4x4, like
  32x32, and ends with one more x2 up-block: 24.0M parameters at latent 128.
* resnet6: six basic blocks, each at stride 2 (64, 128, 256, 512, 512, 512
  channels), for 256x256 CelebA-HQ: 256 -> 4; the 4x4x512 map is flattened
  (not pooled) into the latent layer, and the decoder mirrors it from 4x4.
* resnet50v2: pre-activation bottleneck blocks (He et al., 2016), stages of
  3, 4, 6, 3 blocks (bottleneck widths 64..512, outputs 4x), 3x3 stem at stride
  1 for 64x64 images; the decoder mirrors it from an (H/8)x(W/8)x2048 map.

Channels are multiplied by `width_multiplier`. With `fast_conv` the stride-2
layers run as the exact stride-1 rewrites of conv_layers.py; with
`use_batch_norm=False` every batch norm is the identity.
"""

import functools
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from wae_jax.models.layers import LatentHead, batch_norm, decoder_output, scale_width
from wae_jax.models.conv_layers import Conv2x, ConvTranspose2x

# name -> (block kind, blocks per stage, channels per stage, stride per stage)
ARCHITECTURES = {
    "resnet18": ("basic", (2, 2, 2, 2), (64, 128, 256, 512), (1, 2, 2, 2)),
    "resnet6": ("basic", (1,) * 6, (64, 128, 256, 512, 512, 512), (2,) * 6),
    "resnet50v2": ("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)),
}
STEM_CHANNELS = 64
# Encoders that flatten their last feature map (MoCA's CelebA-HQ net: 4x4x512)
# instead of average-pooling it.
FLATTENED = ("resnet6",)


def _norm(module: nn.Module, train: bool):
  """The module's batch norm (the identity when module.use_batch_norm is off)."""
  return batch_norm(train, module.axis_name, dtype=module.dtype,
                    enabled=module.use_batch_norm)


def _conv(features: int, kernel_size: int, stride: int, fast_conv: bool, dtype: Any):
  if stride == 2:
    return Conv2x(features, kernel_size, space_to_depth=fast_conv, use_bias=False, dtype=dtype)
  return nn.Conv(features, (kernel_size, kernel_size), padding="SAME", use_bias=False,
                 dtype=dtype)


def _up_conv(features: int, kernel_size: int, upsample: bool, fast_conv: bool, dtype: Any):
  if upsample:
    return ConvTranspose2x(features, kernel_size, phase=fast_conv, use_bias=False, dtype=dtype)
  return nn.Conv(features, (kernel_size, kernel_size), padding="SAME", use_bias=False,
                 dtype=dtype)


class BasicBlock(nn.Module):
  """Two 3x3 convs with a residual; stride 2 downsamples, `up` upsamples instead.

  The `up` block is the encoder block run backwards: its first conv keeps the
  input's channels and its second upsamples and changes them to `features`.
  """

  features: int
  stride: int = 1
  up: bool = False
  fast_conv: bool = False
  use_batch_norm: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    resize = self.stride == 2
    if self.up:
      first = nn.Conv(x.shape[-1], (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)
      second = _up_conv(self.features, 3, resize, self.fast_conv, self.dtype)
    else:
      first = _conv(self.features, 3, self.stride, self.fast_conv, self.dtype)
      second = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)
    y = nn.relu(_norm(self, train)(first(x)))
    y = _norm(self, train)(second(y))
    shortcut = x
    if resize or x.shape[-1] != self.features:
      # A 2x2 stride-2 transposed conv gives each output pixel one input pixel:
      # the mirror of the 1x1 stride-2 projection.
      project = (
          _up_conv(self.features, 2 if resize else 1, resize, self.fast_conv, self.dtype)
          if self.up else _conv(self.features, 1, self.stride, self.fast_conv, self.dtype))
      shortcut = _norm(self, train)(project(x))
    return nn.relu(y + shortcut)


class BottleneckV2Block(nn.Module):
  """Pre-activation bottleneck: BN-ReLU-1x1, BN-ReLU-3x3 (stride), BN-ReLU-1x1 (4x)."""

  features: int
  stride: int = 1
  up: bool = False
  fast_conv: bool = False
  use_batch_norm: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    resize = self.stride == 2
    out_features = 4 * self.features
    preact = nn.relu(_norm(self, train)(x))
    shortcut = x
    if resize or x.shape[-1] != out_features:
      project = (
          _up_conv(out_features, 2 if resize else 1, resize, self.fast_conv, self.dtype)
          if self.up else _conv(out_features, 1, self.stride, self.fast_conv, self.dtype))
      shortcut = project(preact)
    y = nn.Conv(self.features, (1, 1), use_bias=False, dtype=self.dtype)(preact)
    y = nn.relu(_norm(self, train)(y))
    middle = (_up_conv(self.features, 3, resize, self.fast_conv, self.dtype) if self.up
              else _conv(self.features, 3, self.stride, self.fast_conv, self.dtype))
    y = nn.relu(_norm(self, train)(middle(y)))
    y = nn.Conv(out_features, (1, 1), use_bias=False, dtype=self.dtype)(y)
    return y + shortcut


_BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckV2Block}


def downsampling_factor(architecture: str) -> int:
  """How many times smaller than the image the last feature map is."""
  _, _, _, strides = ARCHITECTURES[architecture]
  factor = 1
  for stride in strides:
    factor *= stride
  return factor


class ResNetEncoder(nn.Module):
  """3x3 stem, residual stages, global average pool (or flatten), latent head."""

  latent_dim: int
  architecture: str = "resnet18"
  width_multiplier: float = 1.0
  encoder: str = "deterministic"
  logvar_clip: Tuple[float, float] = (-10.0, 5.0)
  fast_conv: bool = False
  use_batch_norm: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False):
    """(B, H, W, C) -> (mean (B, d), logvar (B, d) or None)."""
    kind, stage_sizes, stage_channels, strides = ARCHITECTURES[self.architecture]
    block = _BLOCKS[kind]
    h = nn.Conv(scale_width(STEM_CHANNELS, self.width_multiplier), (3, 3), padding="SAME",
                use_bias=False, dtype=self.dtype)(x)
    if kind == "basic":  # pre-activation nets normalise inside each block instead
      h = nn.relu(_norm(self, train)(h))
    for num_blocks, channels, stride in zip(stage_sizes, stage_channels, strides):
      for i in range(num_blocks):
        h = block(scale_width(channels, self.width_multiplier), stride if i == 0 else 1,
                  fast_conv=self.fast_conv, use_batch_norm=self.use_batch_norm,
                  axis_name=self.axis_name, dtype=self.dtype)(h, train)
    if kind == "bottleneck":
      h = nn.relu(_norm(self, train)(h))
    if self.architecture in FLATTENED:
      h = h.reshape(h.shape[0], -1)
    else:
      h = jnp.mean(h, axis=(1, 2))
    return LatentHead(self.latent_dim, self.encoder, self.logvar_clip, self.dtype)(h)


class ResNetDecoder(nn.Module):
  """Dense to an (H/f)x(W/f) map, residual stages that upsample, 3x3 conv to C."""

  image_shape: Tuple[int, int, int]
  architecture: str = "resnet18"
  width_multiplier: float = 1.0
  output: str = "sigmoid"
  final_upsamplings: int = 0
  fast_conv: bool = False
  use_batch_norm: bool = True
  axis_name: Optional[str] = None
  dtype: Any = None  # computation dtype (params stay float32)

  @nn.compact
  def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
    """(B, d) -> (B, H, W, C)."""
    kind, stage_sizes, stage_channels, strides = ARCHITECTURES[self.architecture]
    block = functools.partial(_BLOCKS[kind], up=True, fast_conv=self.fast_conv,
                              use_batch_norm=self.use_batch_norm, axis_name=self.axis_name,
                              dtype=self.dtype)
    height, width, out_channels = self.image_shape
    factor = downsampling_factor(self.architecture) * 2 ** self.final_upsamplings
    start_channels = scale_width(stage_channels[-1], self.width_multiplier) * (
        4 if kind == "bottleneck" else 1)
    start_h, start_w = height // factor, width // factor
    h = nn.Dense(start_h * start_w * start_channels, dtype=self.dtype)(z)
    h = h.reshape(z.shape[0], start_h, start_w, start_channels)
    if kind == "basic":
      h = nn.relu(_norm(self, train)(h))
    # The encoder's stages in reverse, each block mirrored: the last block of a
    # stage that downsampled (and changed the channels) on its way in
    # upsamples to the channels of the stage before it on its way out.
    stages = list(zip(stage_sizes, stage_channels, strides))
    for s in reversed(range(len(stages))):
      num_blocks, channels, stride = stages[s]
      previous = stage_channels[s - 1] if s > 0 else (
          stage_channels[0] if kind == "bottleneck" else STEM_CHANNELS)
      for i in range(num_blocks):
        last = i == num_blocks - 1
        h = block(scale_width(previous if last else channels, self.width_multiplier),
                  stride if last else 1)(h, train)
    # Images larger than the encoder's factor allows for (MoCA's 64x64 CelebA
    # A2) get residual x2 up-blocks at the first stage's width.
    for _ in range(self.final_upsamplings):
      h = block(scale_width(stage_channels[0] if kind == "bottleneck" else STEM_CHANNELS,
                            self.width_multiplier), 2)(h, train)
    if kind == "bottleneck":
      h = nn.relu(_norm(self, train)(h))
    h = nn.Conv(out_channels, (3, 3), padding="SAME", dtype=self.dtype)(h)
    return decoder_output(h, self.output)


def check_resnet_image_shape(architecture: str, image_shape: Tuple[int, int, int]) -> None:
  """ValueError unless the image sides are multiples of the downsampling factor."""
  factor = downsampling_factor(architecture)
  height, width = image_shape[0], image_shape[1]
  if height % factor or width % factor:
    raise ValueError(
        f"The {architecture} network needs image sides divisible by {factor}, not "
        f"{height}x{width}; resize the images (config.image_size) or use another network.")


def final_upsamplings(architecture: str, image_shape: Tuple[int, int, int]) -> int:
  """How many x2 up-blocks end the decoder.

  MoCA's A2 decoder is the mirror of ResNet-18 for 32x32 images (a 4x4 start)
  with a final x2 for 64x64 CelebA: one per doubling of the side above 32.
  Other architectures and sizes: 0.
  """
  side = min(image_shape[0], image_shape[1])
  if architecture != "resnet18" or side <= 32 or side % 32:
    return 0
  doublings = (side // 32).bit_length() - 1
  return doublings if 32 * 2 ** doublings == side else 0
