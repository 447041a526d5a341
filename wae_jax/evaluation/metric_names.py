"""The evaluator's metric groups and names, its config fields and their
defaults, and the checks of config.best_metric and
config.evaluation.final_metrics: the one place they are written.

No JAX here: the launcher (launch/collect.py) and the config checks read
these names without loading the evaluator.

Groups (what `Evaluator(...)(state, metrics=...)` takes) and the metric names
each produces are listed in evaluator.py's docstring; `names_of_group` gives
them for a run's data.
"""

from typing import Iterable, Optional, Sequence

from wae_jax import cli
from wae_jax import fields
from wae_jax.data import source as data_source
from wae_jax.evaluation import swd

CHEAP_METRICS = ("test_reconstruction", "latent", "sharpness", "latent_probes")
FULL_ONLY_METRICS = ("fd_classifier", "swd_image", "fid_inception", "kid_inception")
ALL_METRICS = CHEAP_METRICS + FULL_ONLY_METRICS
IMAGE_METRICS = ("sharpness", "swd_image", "fid_inception", "kid_inception")
# Names final_metrics takes besides the groups: every group this run can compute,
# or the cheap ones.
GROUP_SETS = ("full", "cheap")

# The config fields the evaluator reads, with their defaults (wae_jax/config.py
# puts them in every config).
CONFIG = {
    "best_metric": "test_reconstruction",  # lower is better; see BEST_METRIC_GROUPS
    # Every eval period computes the cheap metrics (test reconstruction, latent
    # MMD/SWD/singular values, sharpness (images only), and on labelled data the
    # latent k-NN / linear probe accuracies) and the group of best_metric; the
    # end of the run adds final_metrics (group names, or "full" = everything
    # this run can compute: classifier FD, image SWD, and FID/KID when the
    # Inception weights file is found).
    "evaluation": {
        "final_metrics": (),         # e.g. ("fid_inception",) or ("full",)
        "num_samples": 10_000,       # generated images for FID/KID/FD/SWD
        "batch_size": 0,             # images per jitted call; 0: config.batch_size
        "fid_weights": "",           # Inception weights file ("" = env var / default)
        "cache_dir": "",             # feature-net cache ("" = library default)
        "feature_net_steps": 2000,   # training steps of the classifier behind fd_<dataset>_classifier
        "swd_images": 4096,          # images per set of the image SWD
        # Latent probes (labelled data, every evaluation): k-NN and logistic
        # regression fitted on the codes of this many training images.
        "probe_train_examples": 10_000,
        "probe_knn_neighbors": 5,
        # Which state the final metrics are of: "last" (the end of training) or
        # "best" (the checkpoint with the lowest best_metric, as the SWAE code
        # tests its best-validation model); eval.jsonl's last line records its step.
        "final_checkpoint": "last",
    },
}
FINAL_CHECKPOINTS = ("last", "best")  # evaluation.final_checkpoint

NUMBERS = (
    ("evaluation.num_samples", dict(low=1, integer=True)),
    ("evaluation.batch_size", dict(low=0, integer=True)),
    ("evaluation.feature_net_steps", dict(low=1, integer=True)),
    ("evaluation.swd_images", dict(low=1, integer=True)),
    ("evaluation.probe_train_examples", dict(low=1, integer=True)),
    ("evaluation.probe_knn_neighbors", dict(low=1, integer=True)),
)

# The lower-is-better metrics and the group that computes each: the
# candidates for config.best_metric (plus swd_image_<resolution> and
# fd_<dataset>_classifier).
BEST_METRIC_GROUPS = {
    "test_reconstruction": "test_reconstruction",
    "latent_mmd": "latent",
    "latent_swd": "latent",
    "fid_inception": "fid_inception",
    "kid_inception": "kid_inception",
    "swd_image_avg": "swd_image",
}

# The order in which a run's metrics of generated images are preferred for
# picking the best checkpoint (wae_jax.evaluate) and a sweep's plotted metric
# (launch.collect): Inception FID, then the offline classifier's feature
# distance, then the image SWD; lower is better.
METRIC_PREFERENCE = ("fid_inception", "fd_*_classifier", "swd_image_avg")


def metric_group(name: str) -> str:
  """The group computing best-metric candidate `name`, else cli.UserError."""
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


def names_of_group(group: str, image_shape: Sequence[int], dataset: str) -> tuple:
  """The lower-is-better metric names `group` yields on data of `image_shape`."""
  if group == "swd_image":
    return tuple(f"swd_image_{r}" for r in swd.pyramid_resolutions(int(image_shape[0]))) + (
        "swd_image_avg",)
  if group == "fd_classifier":
    return (f"fd_{dataset}_classifier",)
  return tuple(name for name, owner in BEST_METRIC_GROUPS.items() if owner == group)


def period_groups(config) -> tuple:
  """The groups of every evaluation: 'cheap' (those the data allow) and best_metric's."""
  return tuple(dict.fromkeys(("cheap", metric_group(config.best_metric))))


def final_groups(config, full_metrics: Sequence[str]) -> tuple:
  """The groups evaluated at the end: the period's plus config.evaluation.final_metrics
  ('full' = `full_metrics`, every metric this run can compute)."""
  chosen = tuple(fields.get(config, "evaluation.final_metrics", ()))
  if "full" in chosen:
    chosen = tuple(full_metrics)
  return tuple(dict.fromkeys(period_groups(config) + chosen))


def check_image_metrics(groups: Iterable[str], image_shape: Sequence[int], dataset: str,
                        asked_by: str) -> None:
  """cli.UserError when `groups` holds an image-only group but the data are not pictures.

  asked_by: what named the groups, for the message (e.g. 'config.best_metric').
  """
  image_only = [group for group in groups if group in IMAGE_METRICS]
  if image_only and not data_source.is_image_shape(image_shape):
    shape = "x".join(str(int(d)) for d in image_shape)
    raise cli.UserError(
        f"{asked_by} needs {', '.join(image_only)}, which only image data (grey or RGB, at "
        f"least {data_source.MIN_IMAGE_SIDE}x{data_source.MIN_IMAGE_SIDE} pixels) have, but "
        f"dataset {dataset!r} holds {shape} examples; use test_reconstruction or the latent "
        "metrics instead (group 'latent': latent_mmd, latent_swd), which work on any data.")


def check_config(config, image_shape: Optional[Sequence[int]] = None) -> None:
  """cli.UserError for an unknown best_metric or final_metrics group or a bad
  evaluation number; with the data's `image_shape` also for a best metric the
  data cannot yield (image-only metrics of vectors, swd_image_64 of 8x8 images,
  another dataset's classifier FD). Runs before the trainer writes anything."""
  for field, limits in NUMBERS:
    fields.check_number(config, field, **limits)
  fields.check_choice(config, "evaluation.final_checkpoint", FINAL_CHECKPOINTS)
  best = config.best_metric
  group = metric_group(best)
  final = tuple(fields.get(config, "evaluation.final_metrics", ()))
  allowed = GROUP_SETS + ALL_METRICS
  unknown = [name for name in final if name not in allowed]
  if unknown:
    raise cli.UserError(
        f"config.evaluation.final_metrics names unknown metric group(s) {unknown}; use "
        f"groups of {', '.join(allowed)}.")
  if image_shape is None:
    return
  dataset = config.dataset
  check_image_metrics([group], image_shape, dataset, f"config.best_metric={best!r}")
  check_image_metrics(final, image_shape, dataset,
                      f"config.evaluation.final_metrics={final!r}")
  produced = names_of_group(group, image_shape, dataset)
  if best not in produced:
    raise cli.UserError(
        f"config.best_metric={best!r} is not computed for dataset {dataset!r} "
        f"({'x'.join(str(int(s)) for s in image_shape)} examples); its group {group!r} "
        f"gives {', '.join(produced)}; choose one of them.")


def _matches(name: str, pattern: str) -> bool:
  if "*" not in pattern:
    return name == pattern
  prefix, suffix = pattern.split("*")
  return name.startswith(prefix) and name.endswith(suffix)


def preferred_metric(names: Iterable[str], fallback: Optional[str]) -> Optional[str]:
  """The first of METRIC_PREFERENCE among `names` (e.g. a run's best_* running
  minima never match), else `fallback`."""
  names = sorted(set(names))
  for pattern in METRIC_PREFERENCE:
    matches = [n for n in names if _matches(n, pattern)]
    if matches:
      return matches[0]
  return fallback
