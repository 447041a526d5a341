"""Checks a config before anything is written or compiled: one sentence per mistake.

`check_values(config, num_devices=None)` is one pass over everything that
needs neither the data nor the networks, and raises `cli.UserError` at the
first mistake:
  1. each named choice against the tuple its owner defines (methods.METHODS,
     data.DATASETS, models.NETWORKS, priors.PRIORS, optim.SCHEDULES, ...);
  2. every numeric field the trainer reads, finite and in range (NUMBERS);
  3. the method's own needs, `Method.check_config` (the regularizer and its
     values for WAE-MMD, the adversary's optimizer, the VAE's likelihood, MoCA's
     queue); when it fails, every value of `Method.required` the config lacks
     is named at once;
  4. the best metric, and the FID weights file when FID is asked for.
`check_networks(config, image_shape)` then traces the encoder and decoder with
`jax.eval_shape` (no FLOPs) on the data's image shape, so "the network cannot
take this image size" is found by the networks themselves, and
`check_metrics_for_data(config, image_shape)` refuses image-only metrics
(sharpness, image SWD, FID/KID) named for data that are not pictures. The
trainer runs them all before it writes config.json or compiles a step.
"""

import math
import numbers
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from wae_jax import cli
from wae_jax import data
from wae_jax import methods
from wae_jax import models
from wae_jax import optim
from wae_jax import priors
from wae_jax.methods import common as methods_common
from wae_jax.models import conv_layers

# Named choices: (dotted field, the owner's tuple of valid values).
CHOICES = (
    ("method", methods.METHODS),
    ("dataset", data.DATASETS),
    ("model.network", models.NETWORKS),
    ("model.encoder", models.ENCODER_TYPES),
    ("model.decoder_output", models.DECODER_OUTPUTS),
    ("model.upsample", conv_layers.UPSAMPLE_CHOICES),
    ("model.dtype", models.DTYPES),
    ("prior", priors.PRIORS),
    ("reconstruction", methods_common.RECONSTRUCTION_COSTS),
    ("optimizer.schedule", optim.SCHEDULES),
    ("evaluation.final_checkpoint", ("last", "best")),
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
    ("encoder_input_noise", dict(low=0)),
    ("encoder_logvar_l1", dict(low=0)),
    ("model.width_multiplier", dict(low=0, low_open=True)),
    ("optimizer.learning_rate", dict(low=0, low_open=True)),
    ("optimizer.b1", dict(low=0, high=1, high_open=True)),
    ("optimizer.b2", dict(low=0, high=1, high_open=True)),
    ("optimizer.decay_factor", dict(low=0, low_open=True)),
    ("optimizer.decay_every_epochs", dict(low=1, integer=True)),
    ("optimizer.decay_until_epoch", dict(low=0, integer=True)),
    ("evaluation.num_samples", dict(low=1, integer=True)),
    ("evaluation.swd_images", dict(low=1, integer=True)),
)


_ABSENT = object()


def field_value(config: ml_collections.ConfigDict, field: str, default=None):
  """config's value at a dotted field, or `default` where a part is missing."""
  node = config
  for part in field.split("."):
    if not hasattr(node, "keys") or part not in node:
      return default
    node = node[part]
  return node


def _range_text(low, high, low_open, high_open, integer) -> str:
  kind = "an integer" if integer else "a finite number"
  if low is not None and high is not None:
    return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  if low is not None:
    return f"{kind} {'>' if low_open else '>='} {low}"
  if high is not None:
    return f"{kind} {'<' if high_open else '<='} {high}"
  return kind


def check_number(config: ml_collections.ConfigDict, field: str, *, low=None, high=None,
                 low_open: bool = False, high_open: bool = False,
                 integer: bool = False) -> None:
  """UserError unless config.<field> is a finite (integer) number in the range.

  A field the config does not have is not checked.
  """
  value = field_value(config, field, default=_ABSENT)
  if value is _ABSENT:
    return
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and (not integer or float(value).is_integer()))
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    raise cli.UserError(
        f"config.{field} must be {_range_text(low, high, low_open, high_open, integer)}, "
        f"got {value!r}; set --config.{field}=<value>.")


def check_choice(config: ml_collections.ConfigDict, field: str, allowed: Sequence[str]) -> None:
  """UserError unless config.<field> is one of `allowed` (a field it lacks is not checked)."""
  value = field_value(config, field, default=_ABSENT)
  if value is not _ABSENT and value not in allowed:
    raise cli.UserError(
        f"Unknown config.{field} {value!r}; use one of {', '.join(allowed)}.")


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
  """The evaluator group computing best-metric candidate `name`, else cli.UserError."""
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


# Numeric fields of the WAE encoder pretraining, read when config.pretrain.enabled.
PRETRAIN_NUMBERS = (
    ("pretrain.sample_size", dict(low=2, integer=True)),
    ("pretrain.max_steps", dict(low=1, integer=True)),
    ("pretrain.stop_loss", dict(low=0)),
)


def check_values(config: ml_collections.ConfigDict, num_devices: Optional[int] = None,
                 weights: bool = True) -> None:
  """The checks that need neither the data nor the networks (nor, when
  num_devices is None, the devices; nor, when weights is False, the FID
  weights file); see the module docstring."""
  for field, allowed in CHOICES:
    check_choice(config, field, allowed)
  for field, limits in NUMBERS:
    check_number(config, field, **limits)
  if config.prior == "gaussian":
    check_number(config, "prior_var", low=0, low_open=True)
  if num_devices is not None and config.batch_size % num_devices:
    raise cli.UserError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices; use a multiple of {num_devices}.")
  if config.pretrain.enabled:
    for field, limits in PRETRAIN_NUMBERS:
      check_number(config, field, **limits)
    if num_devices is not None and config.pretrain.sample_size % num_devices:
      raise cli.UserError(
          f"config.pretrain.sample_size={config.pretrain.sample_size} is not divisible by "
          f"the {num_devices} devices; use a multiple of {num_devices}.")
  check_method(config)

  groups = {metric_group(config.best_metric)}
  if "evaluation" in config:
    final = tuple(config.evaluation.final_metrics)
    # Checked now, not when the run ends and evaluates them.
    from wae_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
    allowed = ("full", "cheap") + evaluator.ALL_METRICS
    unknown = [name for name in final if name not in allowed]
    if unknown:
      raise cli.UserError(
          f"config.evaluation.final_metrics names unknown metric group(s) {unknown}; use "
          f"groups of {', '.join(allowed)}.")
    groups |= set(final)
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
               if field_value(config, field) != value}
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
  """UserError when config.best_metric or config.evaluation.final_metrics names
  an image-only metric and the data (e.g. 'synthetic' vectors) are not pictures.

  'full' and 'cheap' are not errors: on such data they leave those metrics out.
  """
  from wae_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  evaluator.check_image_metrics([metric_group(config.best_metric)], image_shape, config.dataset,
                                f"config.best_metric={config.best_metric!r}")
  final = tuple(config.evaluation.final_metrics) if "evaluation" in config else ()
  evaluator.check_image_metrics(final, image_shape, config.dataset,
                                f"config.evaluation.final_metrics={final!r}")
