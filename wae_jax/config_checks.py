"""Checks a config before any compute: one clear sentence per mistake.

`validate(config, image_shape, num_devices)` raises ValueError on the first
invalid value it finds. It runs after the dataset is opened (so the image shape
is known) and before the state is initialised or a step compiled. The network
check traces the encoder and decoder with `jax.eval_shape` (no FLOPs) on the
data's image shape, so "the network cannot take this image size" is found by
the networks themselves, not by a table here that could drift from them.
"""

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from wae_jax import cli

METHODS = ("wae_mmd", "wae_gan", "vae", "moca")
NETWORKS = ("mlp", "dcgan", "resnet18", "resnet6", "resnet50v2")
DATASETS = ("digits", "mnist_idx", "synthetic", "gmm2d", "mnist", "fashion_mnist",
            "cifar10", "celeb_a", "celeb_a_hq")
REGULARIZERS = ("mmd", "sliced", "sinkhorn", "cramer_wold")
ENCODERS = ("deterministic", "gaussian", "sphere")
PRIORS = ("gaussian", "sphere")
DECODER_OUTPUTS = ("sigmoid", "logits")
MMD_KERNELS = ("imq", "rbf")
SCHEDULES = ("constant", "wae_piecewise", "step")
VAE_LIKELIHOODS = ("bernoulli", "gaussian")


# The evaluator's lower-is-better metrics and the group that computes each
# (wae_jax/evaluation/evaluator.py): the candidates for config.best_metric.
BEST_METRIC_GROUPS = {
    "test_reconstruction": "test_reconstruction",
    "latent_mmd": "latent",
    "latent_swd": "latent",
    "fid_inception": "fid_inception",
    "kid_inception": "kid_inception",
    "swd_image_avg": "swd_image",
}


def metric_group(name: str) -> str:
  """The evaluator group computing best-metric candidate `name`, else ValueError."""
  if name in BEST_METRIC_GROUPS:
    return BEST_METRIC_GROUPS[name]
  if name.startswith("swd_image_"):
    return "swd_image"
  if name.startswith("fd_") and name.endswith("_classifier"):
    return "fd_classifier"
  raise cli.UserError(
      f"config.best_metric={name!r} is not a lower-is-better metric of the evaluator; "
      f"use one of {', '.join(BEST_METRIC_GROUPS)}, swd_image_<resolution> or "
      "fd_<dataset>_classifier.")


def _check_choice(value, allowed: Sequence[str], field: str) -> None:
  if value not in allowed:
    raise cli.UserError(
        f"Unknown config.{field} {value!r}; use one of {', '.join(allowed)}.")


def _check_positive(value, field: str) -> None:
  if not value > 0:
    raise cli.UserError(f"config.{field} must be > 0, got {value!r}.")


def check_values(config: ml_collections.ConfigDict, num_devices: Optional[int] = None,
                 weights: bool = True) -> None:
  """The checks that need neither the data nor the networks (nor, when
  num_devices is None, the devices; nor, when weights is False, the FID
  weights file)."""
  _check_choice(config.method, METHODS, "method")
  _check_choice(config.dataset, DATASETS, "dataset")
  _check_choice(config.model.network, NETWORKS, "model.network")
  _check_choice(config.model.encoder, ENCODERS, "model.encoder")
  _check_choice(config.model.decoder_output, DECODER_OUTPUTS, "model.decoder_output")
  _check_choice(config.prior, PRIORS, "prior")
  _check_choice(config.regularizer, REGULARIZERS, "regularizer")
  _check_choice(config.mmd.kernel, MMD_KERNELS, "mmd.kernel")
  _check_choice(config.optimizer.schedule, SCHEDULES, "optimizer.schedule")
  _check_choice(config.vae.likelihood, VAE_LIKELIHOODS, "vae.likelihood")

  if not config.latent_dim > 0:
    raise cli.UserError(
        f"config.latent_dim must be a positive integer, got {config.latent_dim!r}.")
  if config.lambda_reg < 0:
    raise cli.UserError(
        f"config.lambda_reg must be >= 0 (it weights the latent regularizer), "
        f"got {config.lambda_reg!r}.")
  if not config.reconstruction_scale >= 0:
    raise cli.UserError(
        f"config.reconstruction_scale must be >= 0 (0 switches the reconstruction "
        f"term off), got {config.reconstruction_scale!r}.")
  if config.vae.beta < 0:
    raise cli.UserError(f"config.vae.beta must be >= 0, got {config.vae.beta!r}.")
  if config.prior == "gaussian" and not config.prior_var > 0:
    raise cli.UserError(f"config.prior_var must be > 0, got {config.prior_var!r}.")

  _check_positive(config.batch_size, "batch_size")
  if num_devices is not None and config.batch_size % num_devices:
    raise cli.UserError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices; use a multiple of {num_devices}.")
  if config.method == "moca":
    queue_size = config.moca.queue_size
    if queue_size <= 0 or queue_size % config.batch_size:
      raise cli.UserError(
          f"config.moca.queue_size (K={queue_size}) must be a positive multiple "
          f"of the global batch size {config.batch_size}, so each step writes "
          f"whole batches of keys; use e.g. "
          f"{max(1, queue_size // config.batch_size) * config.batch_size}.")
    _check_positive(config.moca.temperature, "moca.temperature")
    if not 0.0 <= config.moca.momentum_base <= 1.0:
      raise cli.UserError(
          f"config.moca.momentum_base must be in [0, 1], got {config.moca.momentum_base!r}.")

  if config.pretrain.enabled:
    _check_positive(config.pretrain.max_steps, "pretrain.max_steps")
    sample_size = config.pretrain.sample_size
    if sample_size < 2:
      raise cli.UserError(
          f"config.pretrain.sample_size must be at least 2, got {sample_size!r}.")
    if num_devices is not None and sample_size % num_devices:
      raise cli.UserError(
          f"config.pretrain.sample_size={sample_size} is not divisible by the "
          f"{num_devices} devices; use a multiple of {num_devices}.")

  _check_positive(config.num_train_steps, "num_train_steps")
  _check_positive(config.log_every_steps, "log_every_steps")
  _check_positive(config.checkpoint_every_steps, "checkpoint_every_steps")
  _check_positive(config.eval_every_steps, "eval_every_steps")
  _check_positive(config.keep_checkpoints, "keep_checkpoints")
  _check_positive(config.num_eval_images, "num_eval_images")
  _check_positive(config.optimizer.learning_rate, "optimizer.learning_rate")
  groups = {metric_group(config.best_metric)}
  if "evaluation" in config:
    groups |= set(config.evaluation.final_metrics)
  if weights and groups & {"fid_inception", "kid_inception"}:
    # A missing Inception weights file fails now, not at the first evaluation.
    from wae_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
    inception.resolve_weights_path(None, config)


def check_networks(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> None:
  """Traces the networks on the data's shape; raises if they cannot take it."""
  from wae_jax import models  # Imported here: the value checks need no Flax.
  image_shape = tuple(int(s) for s in image_shape)
  shape_text = "x".join(str(s) for s in image_shape)
  network = config.model.network
  advice = (f"set config.image_size to a size the {network!r} network supports "
            "or choose another config.model.network")

  def trace():
    networks = models.build_networks(config, image_shape)
    key = jax.random.PRNGKey(0)
    images = jnp.zeros((1, *image_shape), jnp.float32)
    z = jnp.zeros((1, int(config.latent_dim)), jnp.float32)
    encoder_variables = networks.encoder.init(key, images, train=False)
    mean, _ = networks.encoder.apply(encoder_variables, images, train=False)
    decoder_variables = networks.decoder.init(key, z, train=False)
    output = networks.decoder.apply(decoder_variables, z, train=False)
    return mean, output

  try:
    mean, output = jax.eval_shape(trace)
  except ValueError as error:
    # The models raise ValueError with their own sentence for sizes they reject.
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    raise cli.UserError(
        f"config.model.network={network!r} cannot take {shape_text} images "
        f"({first_line}); {advice}.") from error
  except TypeError as error:
    # Shape mismatches inside Flax layers surface as TypeError from lax.
    first_line = str(error).strip().splitlines()[0]
    raise cli.UserError(
        f"config.model.network={network!r} cannot take {shape_text} images "
        f"({first_line}); {advice}.") from error
  if tuple(output.shape[1:]) != image_shape:
    raise cli.UserError(
        f"config.model.network={network!r} decodes {'x'.join(map(str, output.shape[1:]))} "
        f"images but the data are {shape_text}; {advice}.")
  if tuple(mean.shape) != (1, int(config.latent_dim)):
    raise cli.UserError(
        f"config.model.network={network!r} encodes to shape {tuple(mean.shape)}, "
        f"expected (1, {config.latent_dim}).")


def validate(config: ml_collections.ConfigDict, image_shape: Sequence[int],
             num_devices: int) -> None:
  """Raises ValueError (one sentence) on the first invalid config value.

  Args:
    config: the run's config.
    image_shape: (H, W, C) of the dataset's images.
    num_devices: how many devices the global batch is split over.
  """
  check_values(config, num_devices)
  check_networks(config, image_shape)
