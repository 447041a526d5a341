"""Flax networks chosen by name: `build_networks(config, image_shape) -> Networks`.

    nets = build_networks(config, (28, 28, 1))
    (mean, logvar), updates = nets.encoder.apply(variables, x, train=True,
                                                 mutable=['batch_stats'])
    images = nets.decoder.apply(variables, z, train=False)
    adversary = build_adversary(config)                   # the WAE-GAN's latent critic
    logits = adversary.apply({'params': p}, z)

Every module has a field `axis_name` passed to all its BatchNorms, so
`net.clone(axis_name='data')` syncs batch statistics inside shard_map.
"""

from typing import Sequence, Tuple

import jax.numpy as jnp
import ml_collections

from wae_jax import priors
from wae_jax.models.adversary import Adversary
from wae_jax.models.layers import DECODER_OUTPUTS, DTYPES, ENCODER_TYPES
from wae_jax.models.conv_layers import use_stride1_rewrite
from wae_jax.models.dcgan import DCGANDecoder, DCGANEncoder, build_dcgan, dcgan_variant
from wae_jax.models.gated import GatedDecoder, GatedEncoder, check_gated_image_shape
from wae_jax.models.mlp import MLPDecoder, MLPEncoder
from wae_jax.models.resnet import (ARCHITECTURES, ResNetDecoder, ResNetEncoder,
                                   check_resnet_image_shape, final_upsamplings)
from wae_jax.state import Networks

NETWORKS = ("mlp", "dcgan", "gated") + tuple(ARCHITECTURES)


def _int_tuple(values: Sequence[int]) -> Tuple[int, ...]:
  # Module fields must be hashable (modules are static parts of the state).
  return tuple(int(v) for v in values)


def compute_dtype(config: ml_collections.ConfigDict) -> jnp.dtype:
  """config.model.dtype: what every network computes in (params stay float32)."""
  name = config.model.get("dtype", "float32")
  if name not in DTYPES:
    raise ValueError(f"config.model.dtype={name!r} is not one of {DTYPES}; pick one of them.")
  return jnp.dtype(name)


def build_adversary(config: ml_collections.ConfigDict) -> Adversary:
  """The WAE-GAN latent adversary, with log p_Z(z) added when config asks."""
  prior = None
  if config.adversary_log_prior:
    prior = priors.get_prior(config)
    if not isinstance(prior, priors.GaussianPrior):
      raise ValueError(
          f"config.adversary_log_prior adds a Gaussian log-density to the adversary's "
          f"logit, but config.prior={config.prior!r}; set config.adversary_log_prior=False "
          "or use the gaussian prior.")
  return Adversary(_int_tuple(config.adversary.hidden_sizes), prior,
                   dtype=compute_dtype(config))


def build_networks(config: ml_collections.ConfigDict,
                   image_shape: Tuple[int, int, int]) -> Networks:
  """The encoder and decoder a config names.

  Args:
    config: reads latent_dim and model.*.
    image_shape: (H, W, C) of the images, from the data source.

  Returns:
    Networks(encoder, decoder).
  """
  model = config.model
  image_shape = _int_tuple(image_shape)
  if len(image_shape) != 3:
    raise ValueError(f"image_shape must be (H, W, C), got {image_shape}.")
  if model.network not in NETWORKS:
    raise ValueError(f"config.model.network={model.network!r} is not one of {NETWORKS}; "
                     "pick one of them.")
  if model.encoder not in ENCODER_TYPES:
    raise ValueError(f"config.model.encoder={model.encoder!r} is not one of "
                     f"{ENCODER_TYPES}; pick one of them.")
  if model.decoder_output not in DECODER_OUTPUTS:
    raise ValueError(f"config.model.decoder_output={model.decoder_output!r} is not one of "
                     f"{DECODER_OUTPUTS}; pick one of them.")
  if not model.width_multiplier > 0:
    raise ValueError(f"config.model.width_multiplier must be positive, got "
                     f"{model.width_multiplier}.")
  latent_dim = int(config.latent_dim)
  logvar_clip = (float(model.logvar_clip[0]), float(model.logvar_clip[1]))
  fast_conv = use_stride1_rewrite(model.upsample)
  width = float(model.width_multiplier)
  dtype = compute_dtype(config)

  use_batch_norm = bool(model.batch_norm)
  if model.network == "mlp":
    hidden = _int_tuple(model.hidden_sizes)
    encoder = MLPEncoder(latent_dim, hidden, model.encoder, logvar_clip, dtype=dtype)
    decoder = MLPDecoder(image_shape, hidden, model.decoder_output, dtype=dtype)
  elif model.network == "dcgan":
    encoder, decoder = build_dcgan(latent_dim, image_shape, width, model.encoder,
                                   logvar_clip, model.decoder_output, fast_conv, dtype,
                                   use_batch_norm, bool(model.get("dense_batch_norm", False)))
  elif model.network == "gated":
    check_gated_image_shape(image_shape)
    encoder = GatedEncoder(latent_dim, width, model.encoder, logvar_clip, dtype=dtype)
    decoder = GatedDecoder(image_shape, width, model.decoder_output, dtype=dtype)
  else:
    check_resnet_image_shape(model.network, image_shape)
    encoder = ResNetEncoder(latent_dim, model.network, width, model.encoder, logvar_clip,
                            fast_conv, use_batch_norm, dtype=dtype)
    decoder = ResNetDecoder(image_shape, model.network, width, model.decoder_output,
                            final_upsamplings(model.network, image_shape), fast_conv,
                            use_batch_norm, dtype=dtype)
  return Networks(encoder=encoder, decoder=decoder)


__all__ = [
    "Adversary", "DCGANDecoder", "DCGANEncoder", "GatedDecoder", "GatedEncoder", "MLPDecoder",
    "MLPEncoder", "NETWORKS",
    "ResNetDecoder", "ResNetEncoder", "build_adversary", "build_networks", "dcgan_variant",
]
