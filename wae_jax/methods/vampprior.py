"""VAE with a VampPrior (Tomczak & Welling, AISTATS 2018), one of the Symmetric
WAE paper's baselines: the prior is the mixture of the encoder's own
posteriors at K learned pseudo-inputs u_k,

  p(z) = (1/K) sum_k q(z | u_k),   q(z | x) = N(mean(x), diag exp(logvar(x))),

and the loss is the negative ELBO with the one-sample estimate of the KL that
the paper uses (the mixture has no closed-form KL):

  loss = reconstruction_scale * -log p(x | z) + beta * (log q(z | x) - log p(z)),
  z = mean(x) + std(x) * eps.

The likelihood, beta and the Gaussian decoder variance are the VAE's
(config.vae, see vae.py). The pseudo-inputs live in the params,
params['prior']['pseudo_inputs'] (K, H, W, C), so the one Adam step trains them
with the encoder and decoder; they pass through a clip to [0, 1] (the paper's
hard-tanh to the pixel range) and start as N(pseudo_input_mean,
pseudo_input_std^2) noise (the paper's MNIST runs: K = 500, mean 0.05, std
0.01; written from the paper's experiments section, which is not among the
papers shipped with this repository). The components q(z | u_k) use the
encoder in eval mode, so the K pseudo-inputs leave the batch statistics alone
and every device sees the same prior.

Generation: k uniform in [0, K), z ~ q(z | u_k), x = G(z).
"""

import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
from jax.scipy.special import logsumexp

from wae_jax import fields
from wae_jax import methods
from wae_jax.methods import vae
from wae_jax.methods.shared import autoencoder
from wae_jax.state import TrainState

CONFIG = {"vampprior": {
    "num_pseudo_inputs": 500,      # K
    "pseudo_input_mean": 0.05,     # the pseudo-inputs' initial values:
    "pseudo_input_std": 0.01,      # N(mean, std^2) per pixel
}}
# A Gaussian encoder for q(z | x) and the components; logits for the
# Bernoulli likelihood (the Gaussian one squashes them by a sigmoid).
REQUIRED = {"model.encoder": "gaussian", "model.decoder_output": "logits"}


def check_config(config: ml_collections.ConfigDict) -> None:
  """A Gaussian encoder, K >= 1, the VAE's likelihood values."""
  fields.check_number(config, "vampprior.num_pseudo_inputs", low=1, integer=True)
  fields.check_number(config, "vampprior.pseudo_input_std", low=0)
  fields.check_number(config, "vae.beta", low=0)
  fields.check_number(config, "vae.gaussian_var", low=0, low_open=True)
  fields.check_choice(config, "vae.likelihood", vae.LIKELIHOODS)
  if config.model.encoder != "gaussian":
    raise ValueError("The VampPrior VAE needs a Gaussian encoder; set "
                     "config.model.encoder='gaussian'.")
  if config.vae.likelihood == "bernoulli" and config.model.decoder_output != "logits":
    raise ValueError("The Bernoulli likelihood needs decoder logits; set "
                     "config.model.decoder_output='logits'.")


def init(config: ml_collections.ConfigDict, rng: jax.Array, example_batch: dict) -> TrainState:
  """The base state plus params['prior']['pseudo_inputs'] (K, H, W, C)."""
  check_config(config)
  state = autoencoder.create_state(config, rng, example_batch)
  image_shape = autoencoder.batch_images(example_batch).shape[1:]
  settings = config.vampprior
  noise = jax.random.normal(autoencoder.init_keys(rng)["method"],
                            (int(settings.num_pseudo_inputs),) + tuple(image_shape), jnp.float32)
  pseudo_inputs = float(settings.pseudo_input_mean) + float(settings.pseudo_input_std) * noise
  params = dict(state.params, prior={"pseudo_inputs": pseudo_inputs})
  return state.replace(params=params, opt_state=state.tx.init(params))


def prior_components(state: TrainState, params) -> Tuple[jax.Array, jax.Array]:
  """(means (K, d), logvars (K, d)) of q(z | clip(u_k, 0, 1)), encoder in eval mode."""
  inputs = jnp.clip(params["prior"]["pseudo_inputs"], 0.0, 1.0)
  (mean, logvar), _ = autoencoder.encoder_apply(
      state, params["encoder"], state.batch_stats["encoder"], inputs, train=False)
  return mean, logvar


def gaussian_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag exp(logvar)), summed over the last axis."""
  return -0.5 * jnp.sum(math.log(2 * math.pi) + logvar + jnp.square(z - mean) / jnp.exp(logvar),
                        axis=-1)


def log_prior(z: jax.Array, means: jax.Array, logvars: jax.Array) -> jax.Array:
  """log p(z) = logsumexp_k log q(z | u_k) - log K: z (b, d), components (K, d) -> (b,)."""
  per_component = gaussian_log_density(z[:, None, :], means[None], logvars[None])
  return logsumexp(per_component, axis=1) - math.log(means.shape[0])


def loss_fn(params, state: TrainState, images: jax.Array, key: jax.Array,
            axis_name: Optional[str] = None):
  """Per-device negative ELBO; returns (loss, (metrics, new_batch_stats))."""
  config = state.config
  (mean, logvar), z, decoded, new_batch_stats = autoencoder.autoencode(
      state, params, images, axis_name=axis_name,
      to_latent=autoencoder.gaussian_latent(key, axis_name))
  nll = vae.negative_log_likelihood(config, decoded, images)
  kl = jnp.mean(gaussian_log_density(z, mean, logvar)
                - log_prior(z, *prior_components(state, params)))
  loss = nll + config.vae.beta * kl
  metrics = {"reconstruction": nll, "kl": kl, "regularizer": kl, "loss": loss}
  return loss, (metrics, new_batch_stats)


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """One Adam step on the encoder, decoder and pseudo-inputs; returns (state, metrics)."""
  return autoencoder.gradient_step(loss_fn, state, batch, axis_name)


def sample_prior(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  """(n, d) draws of the mixture: a uniform component, then its Gaussian."""
  component_key, noise_key = jax.random.split(key)
  means, logvars = prior_components(state, state.params)
  k = jax.random.randint(component_key, (n,), 0, means.shape[0])
  eps = jax.random.normal(noise_key, (n, means.shape[1]), means.dtype)
  return means[k] + jnp.exp(0.5 * logvars[k]) * eps


def sample(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  """n generated images (n, H, W, C) in [0, 1]: decoded draws of the VampPrior."""
  return autoencoder.decode(state, sample_prior(state, key, n))


METHOD = methods.Method(
    name="vampprior", train_step=train_step, init=init, check_config=check_config,
    config=CONFIG, required=REQUIRED,
    tiny_overrides=lambda batch_size: {"vampprior.num_pseudo_inputs": 8},
    sample=sample, sample_prior=sample_prior,
    description="VAE whose prior is a mixture over K learned pseudo-inputs "
                "(Tomczak & Welling 2018)")
