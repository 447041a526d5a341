"""The config schema of a run: the shared fields, the evaluator's, and each
method's own, with their defaults.

    from wae_jax import config as wae_config
    config = wae_config.base_config()              # every field, default values
    config = wae_config.for_method("vae")          # ... with the VAE's required values
    wae_config.use_method(config, "moca")          # switch a config's method

`base_config()` starts from `shared_config()` (data, training length, latent
space, networks, optimizer, loop) and adds `metric_names.CONFIG` (the
evaluator's fields) and, for every method that `methods.names()` finds, the
fields its module declares (`Method.config`), so a method's defaults are
written once, in its own file, and every run's config holds every field (a
sweep or a resumed run can switch method without a schema change).

Scalar hyper-parameters (λ, learning rates, β, τ, m0, kernel scales, noise)
are plain numbers apart from the fields that fix shapes or programs (method,
image and batch sizes, latent_dim, networks, queue and pseudo-input counts).

Experiment files (configs/*.py) start from `base_config()` and set fields.
"""

from typing import Any, Iterable, Mapping

import ml_collections

from wae_jax import cli
from wae_jax import fields
from wae_jax import methods
from wae_jax.evaluation import metric_names


def shared_config() -> ml_collections.ConfigDict:
  """The fields every run reads whatever its method, with defaults."""
  config = ml_collections.ConfigDict()
  config.method = "wae_mmd"          # a module of wae_jax/methods (methods.names())
  config.seed = 0

  # Data (wae_jax/data): images are float32 in [0, 1], NHWC.
  config.dataset = "digits"          # digits | mnist_idx | synthetic | gmm2d | mnist | fashion_mnist | cifar10 | celeb_a | celeb_a_hq
  config.data_dir = ""               # tfds data_dir or the idx folder; "" = library default
  config.image_size = 8              # square side the images are resized / padded to
  config.batch_size = 100            # global batch, split over all devices and hosts
  config.shuffle_buffer = 10_000
  config.synthetic_num_points = 1000
  config.keep_labels = ()            # labelled data only: keep the examples of these classes, e.g. (2, 3, 8)
  config.synthetic_dim = 100

  # Training length. steps_per_epoch <= 0: derived from the dataset size.
  config.num_train_steps = 3000
  config.steps_per_epoch = -1
  # Steps per compiled call (a lax.scan over that many stacked batches): one
  # dispatch serves them all (the default MLP's step on a CPU: 1.9 -> 1.4 ms).
  # Lowered to divide the log, eval and checkpoint periods and to keep a
  # call's batches under 64 MiB. Changes no number a run computes.
  config.steps_per_call = 100

  # Latent space and prior.
  config.latent_dim = 8
  config.prior = "gaussian"          # gaussian | sphere
  config.prior_var = 1.0

  # Networks (wae_jax/models).
  config.model = ml_collections.ConfigDict()
  config.model.network = "mlp"       # mlp | dcgan | gated | resnet18 | resnet6 | resnet50v2
  config.model.hidden_sizes = (256, 256)   # mlp only
  config.model.width_multiplier = 1.0      # conv nets: channel counts are scaled by this
  config.model.encoder = "deterministic"   # deterministic | gaussian | sphere
  config.model.decoder_output = "sigmoid"  # sigmoid (pixel means in [0, 1]) | logits (Bernoulli) | linear (unbounded, e.g. gmm2d points)
  config.model.logvar_clip = (-10.0, 5.0)  # gaussian encoder only
  config.model.batch_norm = True          # False: dcgan / resnet nets without batch norm
  config.model.dense_batch_norm = False   # dcgan: batch norm after the decoder's dense layer too (MoCA A1)
  config.model.upsample = "auto"           # auto | phase | transpose: how decoders do stride-2 upsampling
  config.model.dtype = "float32"           # float32 | bfloat16: compute dtype (params, optimizer, losses: float32)

  # Reconstruction cost and the weight of the latent regularizer.
  config.reconstruction = "squared_error"  # c(x, G(E(x)))
  # Multiplies the reconstruction term of every method (the VAE's -log p(x|z)
  # too); 0 trains the latent regularizer alone. The WAE code's l2sq cost is
  # 0.05 * sum of squares (see configs/paper_settings.md).
  config.reconstruction_scale = 1.0
  config.lambda_reg = 10.0           # λ: weight on the regularizer (WAE-MMD, WAE-GAN, MoCA)
  # The MMD kernel: WAE-MMD's regularizer and the evaluator's latent_mmd.
  config.mmd = ml_collections.ConfigDict()
  config.mmd.kernel = "imq"          # imq | rbf
  config.mmd.scales = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
  config.mmd.base_scale = 1.0        # IMQ scales used are s * base_scale

  # Optimizer (encoder-decoder).
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.normalize_gradients = False  # divide each gradient tensor by its L2 norm first (SWAE code's AdamNormGrad)
  config.optimizer.schedule = "constant"  # constant | wae_piecewise | step
  config.optimizer.decay_every_epochs = 30   # step schedule
  config.optimizer.decay_factor = 0.5        # step schedule
  config.optimizer.decay_until_epoch = 0     # step schedule: no decay after this epoch (0: none)

  # Loop, checkpoints, logging, image grids.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  config.eval_every_steps = 1000
  config.num_eval_images = 64
  return config


def _add_fields(config: ml_collections.ConfigDict, block: Mapping[str, Any], owner: str,
                owners: dict) -> None:
  """Adds `block` ({field: default}, dicts as groups) to config; two owners
  of one field must agree on its default."""
  for name, default in block.items():
    value = ml_collections.ConfigDict(default) if isinstance(default, Mapping) else default
    if name in config:
      existing = config[name]
      same = (existing.to_dict() == value.to_dict()
              if isinstance(existing, ml_collections.ConfigDict)
              and isinstance(value, ml_collections.ConfigDict) else existing == value)
      if not same:
        raise ValueError(f"config.{name} is declared by {owners[name]} and by {owner} with "
                         "different defaults; give it one owner.")
      continue
    config[name] = value
    owners[name] = owner


def base_config() -> ml_collections.ConfigDict:
  """Every field a run reads, with defaults (unlocked); method 'wae_mmd'."""
  config = shared_config()
  owners = {name: "wae_jax/config.py" for name in config}
  _add_fields(config, metric_names.CONFIG, "the evaluator", owners)
  for name in methods.names():
    _add_fields(config, methods.get(name).config, f"wae_jax/methods/{name}.py", owners)
  return config


def use_method(config: ml_collections.ConfigDict, name: str,
               user_fields: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Sets config.method = name and the values the method requires; returns config.

  user_fields: dotted fields the user set explicitly (e.g. on the command
  line). Such a field keeps the user's value even where it differs from a
  required one, as long as the method accepts it (the VAE's Gaussian
  likelihood takes pixel means as well as logits); when the method refuses it,
  that is one cli.UserError naming the flag, not a silent change.
  """
  method = methods.get(name)
  user_fields = set(user_fields)
  with config.ignore_type():
    config.method = name
  kept = {}
  for field, value in method.required.items():
    current = fields.get(config, field)
    if field in user_fields and current != value:
      kept[field] = (current, value)
    else:
      fields.set_value(config, field, value)
  if kept:
    try:
      method.check_config(config)
    except ValueError as error:
      field, (given, value) = next(iter(kept.items()))
      raise cli.UserError(
          f"--config.method={name} needs config.{field}={value!r}, but "
          f"--config.{field}={given!r} was given ({cli.one_line(error)}); drop that flag or "
          "choose another method.") from error
  return config


def for_method(name: str) -> ml_collections.ConfigDict:
  """`base_config()` for method `name`, with the values it requires."""
  return use_method(base_config(), name)
