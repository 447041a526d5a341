"""What every method shares: building the state, applying the networks,
one optimizer step and the generation helpers. The data-parallel collectives
a step uses (gather, per_device, average_grads, ...) are in wae_jax/parallel.py.
"""

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import optax

from wae_jax import fields
from wae_jax import losses
from wae_jax import models
from wae_jax import optim
from wae_jax import parallel
from wae_jax import priors
from wae_jax.state import TrainState


def step_key(state: TrainState) -> jax.Array:
  """The step's key: fold_in(state.rng, state.step), the same on every device."""
  return jax.random.fold_in(state.rng, state.step)


# ----------------------------------------------------------------------------
# Networks.

def apply_module(module, params, batch_stats, inputs, *, train: bool,
                 axis_name: Optional[str] = None):
  """Applies a network; returns (outputs, new_batch_stats).

  batch_stats is {} for a network without BatchNorm. In training mode the
  batch statistics are updated (and synced over `axis_name` via
  `module.clone(axis_name=...)`); in eval mode they are returned unchanged.
  """
  if axis_name is not None:
    module = module.clone(axis_name=axis_name)
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  if train and batch_stats:
    outputs, updates = module.apply(
        variables, inputs, train=True, mutable=["batch_stats"])
    return outputs, updates["batch_stats"]
  return module.apply(variables, inputs, train=train), batch_stats


def encoder_apply(state: TrainState, params, batch_stats, images, *,
                  train: bool, axis_name: Optional[str] = None):
  """Encoder: images (B,H,W,C) -> ((mean (B,d), logvar (B,d) or None), stats)."""
  return apply_module(state.networks.encoder, params, batch_stats, images,
                      train=train, axis_name=axis_name)


def decoder_apply(state: TrainState, params, batch_stats, z, *, train: bool,
                  axis_name: Optional[str] = None):
  """Decoder: z (B,d) -> (raw output (B,H,W,C), stats); raw output is pixel
  means in [0, 1] or logits, per config.model.decoder_output."""
  return apply_module(state.networks.decoder, params, batch_stats, z,
                      train=train, axis_name=axis_name)


def autoencode(state: TrainState, params, encoder_input: jax.Array, *,
               axis_name: Optional[str] = None, to_latent: Callable = None):
  """The training-mode pass E then G that every method's loss starts with.

  encoder_input (b,H,W,C) -> ((mean, logvar), z (b,d), decoder output
  (b,H,W,C), new batch stats {'encoder', 'decoder'}). `to_latent(mean,
  logvar) -> z` is what the method decodes (default: the mean).
  """
  (mean, logvar), encoder_stats = encoder_apply(
      state, params["encoder"], state.batch_stats["encoder"], encoder_input,
      train=True, axis_name=axis_name)
  z = mean if to_latent is None else to_latent(mean, logvar)
  decoded, decoder_stats = decoder_apply(
      state, params["decoder"], state.batch_stats["decoder"], z,
      train=True, axis_name=axis_name)
  return (mean, logvar), z, decoded, {"encoder": encoder_stats, "decoder": decoder_stats}


# The encoder options of the WAEs (WAE-MMD and WAE-GAN add them to their config):
# truncated Gaussian noise on the encoder's input, and with
# model.encoder="gaussian" (codes z = mean + std * eps) this weight times the L1
# norm of the log-variances (Rubenstein et al. 2018).
WAE_ENCODER_CONFIG = {"encoder_input_noise": 0.0, "encoder_logvar_l1": 0.0}


def check_wae_encoder(config: ml_collections.ConfigDict) -> None:
  """cli.UserError unless both WAE_ENCODER_CONFIG values are finite and >= 0."""
  for field in WAE_ENCODER_CONFIG:
    fields.check_number(config, field, low=0)


def noisy_encoder_input(config: ml_collections.ConfigDict, images: jax.Array,
                        key: jax.Array, axis_name: Optional[str]) -> jax.Array:
  """images plus truncated Gaussian noise of std config.encoder_input_noise.

  The WAE code's 'add_noise' encoder (tf.truncated_normal: cut at 2 std), per
  example; the images themselves when the std is 0.
  """
  std = float(config.encoder_input_noise)
  if std <= 0:
    return images
  sampler = lambda k, shape: std * jax.random.truncated_normal(
      k, -2.0, 2.0, shape, jnp.float32)
  return images + parallel.per_example_noise(key, images.shape, axis_name, sampler=sampler)


def gaussian_latent(key: jax.Array, axis_name: Optional[str]) -> Callable:
  """to_latent for `autoencode`: z = mean + exp(logvar / 2) * eps, eps ~ N(0, I)
  per example (reparameterisation); the mean itself for encoders without a
  variance."""
  def to_latent(mean, logvar):
    if logvar is None:
      return mean
    return mean + jnp.exp(0.5 * logvar) * parallel.per_example_noise(key, mean.shape, axis_name)
  return to_latent


def logvar_penalty(config: ml_collections.ConfigDict, logvar) -> jax.Array:
  """config.encoder_logvar_l1 * mean over the batch of sum_k |logvar_k|.

  Rubenstein et al. (2018)'s L1 penalty that keeps a WAE's Gaussian encoder
  from collapsing its variances to zero; 0 without a Gaussian encoder.
  """
  if logvar is None:
    return jnp.zeros((), jnp.float32)
  return config.encoder_logvar_l1 * jnp.mean(jnp.sum(jnp.abs(logvar), axis=-1))


def to_pixel_means(config: ml_collections.ConfigDict, decoder_output: jax.Array):
  """Decoder output -> pixel means in [0, 1] (sigmoid of logits; linear outputs as they are)."""
  if config.model.decoder_output == "logits":
    return jax.nn.sigmoid(decoder_output)
  return decoder_output


def _variables(init_out) -> Tuple[Any, Any]:
  init_out = dict(init_out)
  return init_out["params"], init_out.get("batch_stats", {})


def init_keys(rng: jax.Array) -> dict:
  """The init keys of a run: {'encoder', 'decoder', 'method', 'state'}.

  'method' is the key a method's own state (state.extras) starts from.
  """
  names = ("encoder", "decoder", "method", "state")
  return dict(zip(names, jax.random.split(rng, len(names))))


BATCH_FORMAT = "{'image': float32 array (B, H, W, C) in [0, 1]}"


def batch_images(batch) -> jax.Array:
  """batch['image'] as float32 (B, H, W, C); a TypeError naming the batch
  format for anything else (e.g. a plain array where the dict belongs)."""
  if not (hasattr(batch, "keys") and "image" in batch):
    what = (f"an array of shape {tuple(batch.shape)}" if hasattr(batch, "shape")
            else f"a {type(batch).__name__}")
    raise TypeError(f"A batch is a dict {BATCH_FORMAT}, got {what}; pass "
                    "{'image': images}.")
  images = batch["image"]
  if getattr(images, "ndim", None) != 4:
    raise TypeError(f"batch['image'] must be (B, H, W, C), got shape "
                    f"{tuple(getattr(images, 'shape', ()))}; a batch is {BATCH_FORMAT}.")
  return jnp.asarray(images, jnp.float32)


def create_state(config: ml_collections.ConfigDict, rng: jax.Array,
                 example_batch: dict) -> TrainState:
  """Builds the networks, their variables, the optimizer and the base state.

  example_batch['image'] (B,H,W,C) fixes the image shape (any B >= 1). The
  state's `extras` is None; a method that adds state sets it.
  """
  image_shape = tuple(int(s) for s in batch_images(example_batch).shape[1:])
  networks = models.build_networks(config, image_shape)
  keys = init_keys(rng)
  example_images = jnp.zeros((1,) + image_shape, jnp.float32)
  example_z = jnp.zeros((1, int(config.latent_dim)), jnp.float32)
  encoder_params, encoder_stats = _variables(
      networks.encoder.init(keys["encoder"], example_images, train=False))
  decoder_params, decoder_stats = _variables(
      networks.decoder.init(keys["decoder"], example_z, train=False))
  params = {"encoder": encoder_params, "decoder": decoder_params}
  batch_stats = {"encoder": encoder_stats, "decoder": decoder_stats}
  tx = optim.make_optimizer(config)
  frozen = (config if isinstance(config, ml_collections.FrozenConfigDict)
            else ml_collections.FrozenConfigDict(config))
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      rng=keys["state"],
      config=frozen,
      networks=networks,
      tx=tx)


def apply_updates(state: TrainState, grads, new_batch_stats) -> TrainState:
  """One optimizer step of the encoder-decoder; step + 1."""
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state.replace(step=state.step + 1, params=params,
                       batch_stats=new_batch_stats, opt_state=opt_state)


def gradient_step(loss_fn: Callable, state: TrainState, batch: dict,
                  axis_name: Optional[str]) -> Tuple[TrainState, dict]:
  """One optimizer step of the encoder-decoder on `loss_fn`.

  `loss_fn(params, state, images, key, axis_name)` returns
  (loss, (metrics, new_batch_stats, ...)); the gradient is that of the global
  batch on any number of devices.
  """
  images = batch_images(batch)
  grads, aux = jax.grad(loss_fn, has_aux=True)(
      parallel.per_device(state.params, axis_name), state, images, step_key(state),
      axis_name)
  metrics, new_batch_stats = aux[0], aux[1]
  metrics["learning_rate"] = learning_rate(state)
  new_state = apply_updates(state, parallel.average_grads(grads, axis_name),
                            new_batch_stats)
  return new_state, parallel.mean_metrics(metrics, axis_name)


def learning_rate(state: TrainState) -> jax.Array:
  return optim.learning_rate_schedule(state.config)(state.step)


RECONSTRUCTION_COSTS = ("squared_error",)  # config.reconstruction


def reconstruction_cost(config: ml_collections.ConfigDict, pixel_means, images):
  """c(x, G(E(x))): config.reconstruction_scale times the batch mean of a
  per-example cost."""
  if config.reconstruction == "squared_error":
    return config.reconstruction_scale * losses.squared_error(pixel_means, images)
  raise ValueError(
      f"Unknown config.reconstruction {config.reconstruction!r}; use one of "
      f"{RECONSTRUCTION_COSTS}.")


# ----------------------------------------------------------------------------
# Inference helpers (eval mode, single device). A method may post-process the
# latent (MoCA projects onto the sphere) through `latent_map`.

def identity(z):
  return z


def encode(state: TrainState, images: jax.Array,
           latent_map: Callable = identity) -> jax.Array:
  """images (B,H,W,C) -> codes (B,d): the encoder mean, in eval mode."""
  (mean, _), _ = encoder_apply(state, state.params["encoder"],
                               state.batch_stats["encoder"],
                               jnp.asarray(images, jnp.float32), train=False)
  return latent_map(mean)


def decode(state: TrainState, z: jax.Array) -> jax.Array:
  """codes (B,d) -> pixel means (B,H,W,C) in [0, 1], in eval mode."""
  output, _ = decoder_apply(state, state.params["decoder"],
                            state.batch_stats["decoder"],
                            jnp.asarray(z, jnp.float32), train=False)
  return to_pixel_means(state.config, output)


def sample_prior(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  return priors.get_prior(state.config).sample(key, n, int(state.config.latent_dim))


def mmd_settings(config) -> dict:
  """`losses.mmd_penalty`'s kernel, scales and prior_var for a run: the scales
  are config.mmd.scales times base_scale, prior_var the prior's per-coordinate
  variance (1/d on the unit sphere), which sets the IMQ base scale."""
  prior_var = (1.0 / int(config.latent_dim) if config.prior == "sphere"
               else float(config.prior_var))
  return {"kernel": config.mmd.kernel,
          "scales": tuple(float(s) * float(config.mmd.base_scale) for s in config.mmd.scales),
          "prior_var": prior_var}


def sample(state: TrainState, key: jax.Array, n: int) -> jax.Array:
  """n prior samples decoded: (n,H,W,C) in [0, 1]."""
  return decode(state, sample_prior(state, key, n))


def reconstruct(state: TrainState, images: jax.Array,
                latent_map: Callable = identity) -> jax.Array:
  """images -> G(E(x)) pixel means in [0, 1], same shape."""
  return decode(state, encode(state, images, latent_map))


def interpolate(state: TrainState, images_a: jax.Array, images_b: jax.Array,
                num_steps: int, latent_map: Callable = identity) -> jax.Array:
  """Decodes (1-t) E(a) + t E(b) for t in linspace(0, 1, num_steps).

  Returns (B, num_steps, H, W, C); `latent_map` is applied to the codes and to
  each mixed code (MoCA renormalises onto the sphere).
  """
  z_a = encode(state, images_a, latent_map)
  z_b = encode(state, images_b, latent_map)
  t = jnp.linspace(0.0, 1.0, num_steps, dtype=jnp.float32)[None, :, None]
  mixed = latent_map((1.0 - t) * z_a[:, None, :] + t * z_b[:, None, :])
  batch = z_a.shape[0]
  images = decode(state, mixed.reshape(batch * num_steps, -1))
  return images.reshape((batch, num_steps) + images.shape[1:])
