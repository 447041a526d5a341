"""The Symmetric Wasserstein Autoencoder (Sun & Guo, UAI 2021), with its learnable prior.

The prior p(z) = (1/K) sum_k N(mu_k, diag sigma_k^2) is parameterised by K
pseudo-inputs u_k in data space and a prior encoder E_p (the encoder's
architecture with its own weights and a Gaussian head, log sigma^2 clipped to
config.swae.prior_logvar_clip): (mu_k, log sigma_k^2) = E_p(clip(u_k, 0, 1)).
Both live in the params, params['prior'] = {'pseudo_inputs': (K, H, W, C),
'encoder': ...}, so one Adam updates them with the encoder and decoder (as the
authors' single optimizer does) and checkpoints hold them.

A step (losses/symmetric.py has the terms and the objective):
  1. codes E(x) and reconstructions G(E(x)) in training mode;
  2. each x is paired with its nearest pseudo-input (config.swae.pairing:
     'data' compares x with clip(u_k) in data space, 'latent' compares E(x)
     with E(clip(u_k)); config.swae.pairing_metric 'l2' or 'cosine');
  3. z_d = mu_k(x) + sigma_k(x) * eps, eps drawn per example;
  4. x_loss = ||G(z_d) - x||^2, z_loss = ||E(x) - z_d||^2, recon =
     ||G(E(x)) - x||^2, combined by config.swae.objective with beta and
     z_loss_weight (lambda).
Every term is a per-example mean, the pairing uses only the example and the
(replicated) pseudo-inputs, and eps comes from the global batch's noise, so the
step on N devices equals the step on one device with the global batch.

Generation: k uniform in [0, K), z ~ N(mu_k, sigma_k^2), x = G(z).
Pseudo-inputs start as K training images plus N(0, pseudo_input_init_std^2)
noise (`init_from_data`, which the trainer calls; `init` alone starts them
from the example batch, which is only right for shape tracing and tests).
The prior is part of the params rather than of `state.extras` because it is
trained by the same optimizer step as the encoder and decoder.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wae_jax import losses
from wae_jax import methods
from wae_jax import models
from wae_jax import parallel
from wae_jax.losses import symmetric
from wae_jax.methods.shared import autoencoder
from wae_jax.state import TrainState

PAIRINGS = ("data", "latent")

# The fields SWAE adds to the config: a prior of K pseudo-inputs and a prior
# encoder, objective beta * x_loss + (1 - beta) * recon + lambda * z_loss.
CONFIG = {"swae": {
    "num_pseudo_inputs": 100,       # K (the paper's runs: 4000)
    "objective": "xzrec",           # xzrec | xz | zrec
    "beta": 0.5,
    "z_loss_weight": 1.0,           # lambda
    "pairing": "data",              # data | latent: where the nearest pseudo-input is found
    "pairing_metric": "l2",         # l2 | cosine
    "prior_logvar_clip": (-6.0, 2.0),
    "clip_pseudo_inputs": True,     # pseudo-inputs pass through a clip to [0, 1]
    "pseudo_input_init_std": 0.01,  # noise added to the K training images they start from
    # Binarise the test images once (fixed seed) as the SWAE code's MNIST and
    # Fashion-MNIST evaluation does; the training images stay grey.
    "binarize_test": False,
}}
_INIT_NOISE_SALT = 0x5AE1


def check_config(config: ml_collections.ConfigDict) -> None:
  swae = config.swae
  if config.model.encoder != "deterministic":
    raise ValueError(
        "SWAE uses a deterministic encoder (the prior carries the noise); set "
        "config.model.encoder='deterministic'.")
  if int(swae.num_pseudo_inputs) <= 0:
    raise ValueError(
        f"config.swae.num_pseudo_inputs must be positive, got {swae.num_pseudo_inputs}.")
  if swae.objective not in symmetric.OBJECTIVES:
    raise ValueError(f"Unknown config.swae.objective {swae.objective!r}; use one of "
                     f"{symmetric.OBJECTIVES}.")
  if swae.pairing not in PAIRINGS:
    raise ValueError(f"Unknown config.swae.pairing {swae.pairing!r}; use one of {PAIRINGS}.")
  if swae.pairing_metric not in symmetric.PAIRING_METRICS:
    raise ValueError(f"Unknown config.swae.pairing_metric {swae.pairing_metric!r}; use "
                     f"one of {symmetric.PAIRING_METRICS}.")
  if not (float(swae.beta) >= 0 and float(swae.z_loss_weight) >= 0):
    raise ValueError(
        f"config.swae.beta ({swae.beta}) and config.swae.z_loss_weight "
        f"({swae.z_loss_weight}) must be >= 0.")
  if float(config.reconstruction_scale) != 1.0:
    raise ValueError(
        "SWAE weights its data-space terms with config.swae.beta; leave "
        "config.reconstruction_scale at 1.0.")
  low, high = (float(v) for v in swae.prior_logvar_clip)
  if not low < high:
    raise ValueError(
        f"config.swae.prior_logvar_clip must be (low, high) with low < high, got "
        f"{tuple(swae.prior_logvar_clip)}.")


def prior_encoder(config: ml_collections.ConfigDict,
                  image_shape: Tuple[int, int, int]):
  """E_p: the encoder network of `config` with a Gaussian head clipped to prior_logvar_clip."""
  # A fresh copy: ConfigDict(config) and FrozenConfigDict.as_configdict() share
  # nested blocks with `config`, which the changes below would then alter.
  prior_config = ml_collections.ConfigDict(config.to_dict())
  prior_config.model.encoder = "gaussian"
  prior_config.model.logvar_clip = tuple(float(v) for v in config.swae.prior_logvar_clip)
  prior_config.method = "wae_mmd"  # only the encoder is used: no adversary
  return models.build_networks(prior_config, image_shape).encoder


def init(config: ml_collections.ConfigDict, rng: jax.Array,
         example_batch: dict) -> TrainState:
  """The base state plus params['prior'] and batch_stats['prior'].

  The K pseudo-inputs are the example images repeated cyclically plus the
  init noise; the trainer replaces them by K training images (init_from_data).
  """
  check_config(config)
  state = autoencoder.create_state(config, rng, example_batch)
  prior_rng, noise_rng = jax.random.split(autoencoder.init_keys(rng)["method"])
  images = autoencoder.batch_images(example_batch)
  image_shape = tuple(int(s) for s in images.shape[1:])
  module = prior_encoder(config, image_shape)
  variables = dict(module.init(prior_rng, jnp.zeros((1,) + image_shape), train=False))
  num = int(config.swae.num_pseudo_inputs)
  pseudo_inputs = _noisy(images[jnp.arange(num) % images.shape[0]], noise_rng,
                         float(config.swae.pseudo_input_init_std))
  params = dict(state.params, prior={"pseudo_inputs": pseudo_inputs,
                                     "encoder": variables["params"]})
  batch_stats = dict(state.batch_stats, prior=variables.get("batch_stats", {}))
  return state.replace(params=params, batch_stats=batch_stats,
                       opt_state=state.tx.init(params))


def _noisy(images: jax.Array, key: jax.Array, std: float) -> jax.Array:
  return images + std * jax.random.normal(key, images.shape, images.dtype)


def pseudo_inputs_from_images(state: TrainState, images: np.ndarray) -> TrainState:
  """Pseudo-inputs <- the first K of `images` (training images) plus the init noise.

  The optimizer state is unchanged (Adam's moments do not depend on values).

  Args:
    state: a fresh state of `init`.
    images: (N, H, W, C) training images, N >= K.
  """
  num = int(state.config.swae.num_pseudo_inputs)
  images = np.asarray(images, np.float32)
  if images.shape[0] < num:
    raise ValueError(
        f"config.swae.num_pseudo_inputs={num} pseudo-inputs start from as many "
        f"training images, but the training split has {images.shape[0]}; lower "
        "config.swae.num_pseudo_inputs.")
  key = jax.random.fold_in(jax.random.PRNGKey(int(state.config.seed)), _INIT_NOISE_SALT)
  pseudo_inputs = _noisy(jnp.asarray(images[:num]), key,
                         float(state.config.swae.pseudo_input_init_std))
  prior = dict(state.params["prior"], pseudo_inputs=pseudo_inputs)
  return state.replace(params=dict(state.params, prior=prior))


def init_from_data(state: TrainState, source) -> TrainState:
  """The trainer's start: pseudo-inputs from K training images of `source`
  (a fixed random subset, `ArraySource.train_subset_batches`) plus the noise."""
  batches = source.train_subset_batches(int(state.config.swae.num_pseudo_inputs))
  return pseudo_inputs_from_images(state, np.concatenate([b["image"] for b in batches]))


# ----------------------------------------------------------------------------
# The prior.

def pseudo_inputs(config, prior_params) -> jax.Array:
  """The effective pseudo-inputs (K, H, W, C): clipped to [0, 1] when configured."""
  raw = prior_params["pseudo_inputs"]
  return jnp.clip(raw, 0.0, 1.0) if config.swae.clip_pseudo_inputs else raw


def _prior_apply(state: TrainState, prior_params, batch_stats, inputs, *, train: bool,
                 axis_name: Optional[str] = None):
  """E_p: inputs (n, H, W, C) -> ((mean (n, d), logvar (n, d)), new batch stats)."""
  module = prior_encoder(state.config, tuple(int(s) for s in inputs.shape[1:]))
  return autoencoder.apply_module(module, prior_params["encoder"], batch_stats, inputs,
                             train=train, axis_name=axis_name)


def prior_components(state: TrainState) -> Tuple[jax.Array, jax.Array]:
  """(means (K, d), logvars (K, d)) of the prior's components, in eval mode."""
  prior = state.params["prior"]
  (mean, logvar), _ = _prior_apply(state, prior, state.batch_stats["prior"],
                                   pseudo_inputs(state.config, prior), train=False)
  return mean, logvar


def sample_prior_with_components(state: TrainState, key: jax.Array,
                                 n: int) -> Tuple[jax.Array, jax.Array]:
  """n prior draws and their components: (z (n, d), k (n,) int32).

  Only the n chosen pseudo-inputs go through E_p (as the authors' code does),
  which draws from the same mixture as encoding all K first.
  """
  component_key, noise_key = jax.random.split(key)
  prior = state.params["prior"]
  inputs = pseudo_inputs(state.config, prior)
  components = jax.random.randint(component_key, (n,), 0, inputs.shape[0])
  (mean, logvar), _ = _prior_apply(state, prior, state.batch_stats["prior"],
                                   inputs[components], train=False)
  eps = jax.random.normal(noise_key, mean.shape, mean.dtype)
  return mean + jnp.exp(0.5 * logvar) * eps, components


def sample_prior(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  """(n, d) draws from the learned mixture prior."""
  return sample_prior_with_components(state, key, n)[0]


def sample(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  """n generated images (n, H, W, C): decoded draws of the learned prior."""
  return autoencoder.decode(state, sample_prior(state, key, n))


# ----------------------------------------------------------------------------
# The step.

def pair(state: TrainState, params, images: jax.Array, codes: jax.Array) -> jax.Array:
  """(b,) index of each example's nearest pseudo-input (no gradient)."""
  config = state.config
  inputs = pseudo_inputs(config, params["prior"])
  metric = config.swae.pairing_metric
  if config.swae.pairing == "data":
    return losses.nearest_pseudo_input(images.reshape(images.shape[0], -1),
                                       inputs.reshape(inputs.shape[0], -1), metric)
  # Latent pairing: E(u_k) in eval mode, so the K pseudo-inputs leave the
  # encoder's batch statistics alone.
  (pseudo_codes, _), _ = autoencoder.encoder_apply(
      state, params["encoder"], state.batch_stats["encoder"], inputs, train=False)
  return losses.nearest_pseudo_input(codes, pseudo_codes, metric)


def loss_fn(params, state: TrainState, images: jax.Array, key: jax.Array,
            axis_name: Optional[str] = None):
  """Per-device SWAE objective; returns (loss, (metrics, new_batch_stats)).

  images: (b, H, W, C), this device's part of the batch.
  """
  config = state.config
  _, codes, decoded, new_stats = autoencoder.autoencode(state, params, images,
                                                   axis_name=axis_name)
  index = pair(state, params, images, codes)
  chosen = pseudo_inputs(config, params["prior"])[index]       # (b, H, W, C)
  (prior_mean, prior_logvar), prior_stats = _prior_apply(
      state, params["prior"], state.batch_stats["prior"], chosen, train=True,
      axis_name=axis_name)
  eps = parallel.per_example_noise(key, prior_mean.shape, axis_name)
  prior_codes = prior_mean + jnp.exp(0.5 * prior_logvar) * eps
  prior_decoded, decoder_stats = autoencoder.decoder_apply(
      state, params["decoder"], new_stats["decoder"], prior_codes, train=True,
      axis_name=axis_name)
  terms = losses.swae_loss_terms(
      images, autoencoder.to_pixel_means(config, decoded),
      autoencoder.to_pixel_means(config, prior_decoded), codes, prior_codes)
  loss = losses.swae_objective(terms["x_loss"], terms["z_loss"], terms["reconstruction"],
                               config.swae.objective, float(config.swae.beta),
                               float(config.swae.z_loss_weight))
  metrics = dict(terms, regularizer=terms["z_loss"], loss=loss,
                 prior_logvar=jnp.mean(prior_logvar))
  new_stats = dict(new_stats, decoder=decoder_stats, prior=prior_stats)
  return loss, (metrics, new_stats)


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """One Adam step on the encoder, decoder, pseudo-inputs and prior encoder."""
  return autoencoder.gradient_step(loss_fn, state, batch, axis_name)


METHOD = methods.Method(
    name="swae", train_step=train_step, init=init, check_config=check_config, config=CONFIG,
    tiny_overrides=lambda batch_size: {"swae.num_pseudo_inputs": 24},
    sample=sample, sample_prior=sample_prior, init_from_data=init_from_data,
    description="symmetric WAE with a learned prior of pseudo-inputs (Sun & Guo 2021)")
