"""VAE (Kingma & Welling 2014) with a beta weight on the KL:
loss = reconstruction_scale * -log p(x | z) + beta * KL(q(z | x) || N(0, s I)),
z = mean + std * eps, s = config.prior_var (any s > 0).

config.vae.likelihood:
  bernoulli: the decoder outputs logits (config.model.decoder_output must be
    'logits'); the likelihood is losses.bernoulli_nll.
  gaussian: the decoder outputs pixel means (sigmoid, or logits squashed by a
    sigmoid); losses.gaussian_nll with variance config.vae.gaussian_var (the
    decoder variance sigma_G^2 of the WAE paper's VAE and the big-WAE sweep).
sample / reconstruct return pixel means in [0, 1] (sigmoid of the logits for
the Bernoulli decoder); reconstruct and encode use the encoder mean.
"""

from typing import Optional

import jax
import ml_collections

from wae_jax import fields
from wae_jax import losses
from wae_jax import methods
from wae_jax.methods.shared import autoencoder
from wae_jax.state import TrainState

LIKELIHOODS = ("bernoulli", "gaussian")

# The fields the VAE adds to the config.
CONFIG = {"vae": {"beta": 1.0,
                  "likelihood": "bernoulli",  # bernoulli | gaussian
                  "gaussian_var": 1.0}}

# A Gaussian encoder for the reparameterisation, the N(0, I) prior of the KL,
# and logits, which the Bernoulli likelihood takes and the Gaussian one
# squashes by a sigmoid (so either likelihood works with them).
REQUIRED = {"model.encoder": "gaussian", "model.decoder_output": "logits",
            "prior": "gaussian"}


def check_config(config: ml_collections.ConfigDict) -> None:
  """REQUIRED, a known likelihood, beta >= 0 and a positive Gaussian variance."""
  fields.check_number(config, "vae.beta", low=0)
  fields.check_number(config, "vae.gaussian_var", low=0, low_open=True)
  if config.model.encoder != "gaussian":
    raise ValueError(
        "The VAE needs a Gaussian encoder; set config.model.encoder='gaussian'.")
  if config.vae.likelihood not in LIKELIHOODS:
    raise ValueError(
        f"Unknown config.vae.likelihood {config.vae.likelihood!r}; use one of "
        f"{LIKELIHOODS}.")
  if config.vae.likelihood == "bernoulli" and config.model.decoder_output != "logits":
    raise ValueError(
        "The Bernoulli VAE needs decoder logits; set "
        "config.model.decoder_output='logits'.")
  if config.prior != "gaussian":
    raise ValueError(
        "The VAE's KL is to a Gaussian prior N(0, prior_var I); set "
        "config.prior='gaussian'.")
  if not float(config.vae.gaussian_var) > 0:
    raise ValueError(
        f"config.vae.gaussian_var must be > 0, got {config.vae.gaussian_var!r}.")


def negative_log_likelihood(config, decoded: jax.Array, images: jax.Array):
  """config.reconstruction_scale * -log p(x | z), summed over pixels and
  averaged over the batch."""
  if config.vae.likelihood == "bernoulli":
    nll = losses.bernoulli_nll(decoded, images)
  else:
    nll = losses.gaussian_nll(autoencoder.to_pixel_means(config, decoded), images,
                              float(config.vae.gaussian_var))
  return config.reconstruction_scale * nll


def loss_fn(params, state: TrainState, images: jax.Array, key: jax.Array,
            axis_name: Optional[str] = None):
  """Per-device negative ELBO (beta-weighted); returns (loss, (metrics,
  new_batch_stats, (mean, logvar)))."""
  config = state.config
  (mean, logvar), _, decoded, new_batch_stats = autoencoder.autoencode(
      state, params, images, axis_name=axis_name,
      to_latent=autoencoder.gaussian_latent(key, axis_name))
  nll = negative_log_likelihood(config, decoded, images)
  kl = losses.gaussian_kl(mean, logvar, float(config.prior_var))
  loss = nll + config.vae.beta * kl
  metrics = {"reconstruction": nll, "kl": kl, "regularizer": kl, "loss": loss}
  return loss, (metrics, new_batch_stats, (mean, logvar))


def train_step(state: TrainState, batch: dict, axis_name: Optional[str] = None):
  """One Adam step on the negative ELBO; returns (new_state, metrics)."""
  return autoencoder.gradient_step(loss_fn, state, batch, axis_name)


METHOD = methods.Method(
    name="vae", train_step=train_step, check_config=check_config, config=CONFIG,
    required=REQUIRED,
    description="VAE with a beta-weighted KL to N(0, s I) (Kingma & Welling 2014)")
