"""Checks a config before anything is written or compiled: one sentence per mistake.

`check_values(config, num_devices=None)` is one pass over everything that
needs neither the data nor the networks, and raises `cli.UserError` at the
first mistake:
  1. each named choice against the tuple its owner defines (methods.names(),
     data.DATASETS, models.NETWORKS, priors.PRIORS, optim.SCHEDULES, ...);
  2. every numeric field the trainer reads, finite and in range (NUMBERS);
  3. the method's own needs, `Method.check_config` (the regularizer and its
     values for WAE-MMD, the adversary's optimizer, the VAE's likelihood, MoCA's
     queue); when it fails, every value of `Method.required` the config lacks
     is named at once;
  4. the evaluator's fields (metric_names.check_config: best_metric,
     final_metrics), and the FID weights file when FID is asked for.
`check_networks(config, image_shape)` then traces the encoder and decoder with
`jax.eval_shape` (no FLOPs) on the data's image shape, so "the network cannot
take this image size" is found by the networks themselves, and
`check_metrics_for_data(config, image_shape)` refuses a best metric or final
metrics the data cannot yield (image-only metrics of vectors, swd_image_64 of
8x8 digits). The trainer runs them all before it writes anything or compiles
a step. The field helpers (check_number, check_choice) are in wae_jax/fields.py.
"""

import numbers
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from wae_jax import cli
from wae_jax import data
from wae_jax import fields
from wae_jax import methods
from wae_jax import models
from wae_jax import optim
from wae_jax import priors
from wae_jax.evaluation import metric_names
from wae_jax.methods.shared import autoencoder
from wae_jax.methods.shared import pretraining
from wae_jax.models import conv_layers

# Named choices: (dotted field, the owner's tuple of valid values).
CHOICES = (
    ("method", methods.names()),
    ("dataset", data.DATASETS),
    ("model.network", models.NETWORKS),
    ("model.encoder", models.ENCODER_TYPES),
    ("model.decoder_output", models.DECODER_OUTPUTS),
    ("model.upsample", conv_layers.UPSAMPLE_CHOICES),
    ("model.dtype", models.DTYPES),
    ("prior", priors.PRIORS),
    ("reconstruction", autoencoder.RECONSTRUCTION_COSTS),
    ("optimizer.schedule", optim.SCHEDULES),
)

SEED_LIMIT = 2**63  # seeds reach numpy and jax.random as int64

# Numeric fields every method reads: (dotted field, keyword arguments of check_number).
NUMBERS = (
    ("seed", dict(low=0, high=SEED_LIMIT, high_open=True, integer=True)),
    ("latent_dim", dict(low=1, integer=True)),
    ("image_size", dict(low=1, integer=True)),
    ("batch_size", dict(low=1, integer=True)),
    ("num_train_steps", dict(low=1, integer=True)),
    ("log_every_steps", dict(low=1, integer=True)),
    ("steps_per_call", dict(low=1, integer=True)),
    ("checkpoint_every_steps", dict(low=1, integer=True)),
    ("eval_every_steps", dict(low=1, integer=True)),
    ("keep_checkpoints", dict(low=1, integer=True)),
    ("num_eval_images", dict(low=1, integer=True)),
    ("lambda_reg", dict(low=0)),
    ("reconstruction_scale", dict(low=0)),
    ("model.width_multiplier", dict(low=0, low_open=True)),
    ("optimizer.learning_rate", dict(low=0, low_open=True)),
    ("optimizer.b1", dict(low=0, high=1, high_open=True)),
    ("optimizer.b2", dict(low=0, high=1, high_open=True)),
    ("optimizer.decay_factor", dict(low=0, low_open=True)),
    ("optimizer.decay_every_epochs", dict(low=1, integer=True)),
    ("optimizer.decay_until_epoch", dict(low=0, integer=True)),
    ("shuffle_buffer", dict(low=0, integer=True)),
    ("synthetic_num_points", dict(low=1, integer=True)),
    ("synthetic_dim", dict(low=1, integer=True)),
)

# Tuples of layer widths: each a non-empty tuple of integers >= 1.
WIDTHS = ("model.hidden_sizes", "adversary.hidden_sizes")


def check_keep_labels(config: ml_collections.ConfigDict) -> None:
  """UserError unless config.keep_labels is a tuple of distinct integers >= 0."""
  value = fields.get(config, "keep_labels", default=())
  ok = isinstance(value, (tuple, list)) and all(
      isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in value)
  if not ok or len(set(value)) != len(value):
    raise cli.UserError(
        f"config.keep_labels must be a tuple of distinct class labels >= 0 (or () for all), "
        f"got {value!r}; set e.g. --config.keep_labels='(2, 3, 8)'.")


def check_values(config: ml_collections.ConfigDict, num_devices: Optional[int] = None,
                 weights: bool = True) -> None:
  """The checks that need neither the data nor the networks (nor, when
  num_devices is None, the devices; nor, when weights is False, the FID
  weights file); see the module docstring."""
  for field, allowed in CHOICES:
    fields.check_choice(config, field, allowed)
  for field, limits in NUMBERS:
    fields.check_number(config, field, **limits)
  for field in WIDTHS:
    fields.check_widths(config, field)
  check_keep_labels(config)
  if config.prior == "gaussian":
    fields.check_number(config, "prior_var", low=0, low_open=True)
  if num_devices is not None and config.batch_size % num_devices:
    raise cli.UserError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices; use a multiple of {num_devices}.")
  if methods.get(config.method).pretrains:
    pretraining.check_config(config, num_devices)
  check_method(config)

  metric_names.check_config(config)
  groups = {metric_names.metric_group(config.best_metric)}
  groups |= set(fields.get(config, "evaluation.final_metrics", ()))
  if weights and groups & {"fid_inception", "kid_inception"}:
    # A missing Inception weights file fails now, not at the first evaluation.
    from wae_jax.evaluation import inception  # pylint: disable=g-import-not-at-top
    inception.resolve_weights_path(None, config)


def check_method(config: ml_collections.ConfigDict) -> None:
  """The method's own check_config; on failure names all its required values the config lacks."""
  method = methods.get(config.method)
  try:
    method.check_config(config)
  except ValueError as error:
    missing = {field: value for field, value in method.required.items()
               if fields.get(config, field) != value}
    if not missing:
      raise cli.UserError(cli.one_line(error)) from error
    needs = ", ".join(f"config.{field}={value!r}" for field, value in missing.items())
    flags = " ".join(f"--config.{field}={value}" for field, value in missing.items())
    raise cli.UserError(
        f"config.method={method.name!r} needs {needs}; add {flags} (the paper configs in configs/ "
        "set them).") from error


def check_networks(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> None:
  """Traces the networks on the data's shape; raises if they cannot take it."""
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


def check_metrics_for_data(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> None:
  """cli.UserError when config.best_metric or config.evaluation.final_metrics
  names a metric the data cannot yield (see metric_names.check_config).

  'full' and 'cheap' are not errors: on such data they leave those metrics out.
  """
  metric_names.check_config(config, image_shape)

def check_data(config: ml_collections.ConfigDict, source) -> None:
  """UserError when the opened data cannot serve the config: more grid images
  than the test split, more SWAE pseudo-inputs than the training split."""
  if source.is_image and config.num_eval_images > source.num_test_examples:
    raise cli.UserError(
        f"config.num_eval_images={config.num_eval_images} is more than the "
        f"{source.num_test_examples} test images of {config.dataset}; lower it.")
  pseudo_inputs = fields.get(config, "swae.num_pseudo_inputs")
  if config.method == "swae" and pseudo_inputs is not None and (
      pseudo_inputs > source.num_train_examples):
    raise cli.UserError(
        f"config.swae.num_pseudo_inputs={pseudo_inputs} pseudo-inputs start from as many "
        f"training images, but {config.dataset} has {source.num_train_examples}; lower "
        "config.swae.num_pseudo_inputs.")


def _memory_bytes() -> tuple[int, str]:
  """(bytes one device can hold, what they are): the accelerator's limit, else host memory."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"]), f"{device.platform.upper()} memory of one device"
  import os  # pylint: disable=g-import-not-at-top
  total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  # The CPU's devices share the host's memory, each with its own copy of the state.
  return total // max(jax.local_device_count(), 1), (
      f"host memory per CPU device ({jax.local_device_count()} devices)")


def check_memory(config: ml_collections.ConfigDict, image_shape: Sequence[int]) -> None:
  """UserError when the train state alone (parameters and optimizer moments,
  traced without allocating) and its gradients cannot fit in one device's memory.

  A lower bound on what training needs (activations come on top), so it
  refuses only what must fail, before anything is written.
  """
  from wae_jax import checkpoint  # pylint: disable=g-import-not-at-top
  state = checkpoint.abstract_state(config, image_shape)
  state_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state)
                    if hasattr(leaf, "dtype"))
  param_bytes = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(state.params))
  needed = state_bytes + param_bytes  # + the gradients
  available, what = _memory_bytes()
  if needed > available:
    raise cli.UserError(
        f"the networks of config.latent_dim={config.latent_dim}, config.model.hidden_sizes="
        f"{tuple(config.model.hidden_sizes)} and {'x'.join(map(str, image_shape))} images "
        f"need at least {needed / 2**30:.1f} GiB for the train state and its gradients, "
        f"more than the {available / 2**30:.1f} GiB {what}; lower config.latent_dim or the "
        "network's sizes.")
