"""The evaluator: every metric of a trained state, as a dict of floats.

    from wae_jax.evaluation import evaluator as evaluator_lib
    ev = evaluator_lib.Evaluator(method, data_source, config)
    cheap = ev(state)                                 # every eval period
    full = ev(state, metrics=ev.full_metrics)         # at the end
    ev.feature_nets   # {'fid_inception': 'inception_v3_fid_2015-12-05 (<file>)', ...}
    # or in one call (builds a new Evaluator each time):
    evaluator_lib.evaluate(method, state, data_source, config, metrics=None,
                           num_samples=None) -> dict[str, float]

`method` is a wae_jax.methods.Method (sample(state, key, n),
reconstruct(state, images), encode(state, images)); `data_source` has
test_batches(batch_size) and image_shape (and train_batches / has_labels for
the classifier feature net). Lower is better for every metric except
sharpness_* (compare with sharpness_test), latent_sv_min_over_max (1 is
isotropic) and the probes' accuracies (higher is better).

Metric groups (the names `metrics=` takes) and the keys they produce:
  cheap (CHEAP_METRICS, the default):
    'test_reconstruction' -> test_reconstruction (summed squared error per
        image, mean over the test split)
    'latent'     -> latent_mmd, latent_swd (against the method's
                    sample_prior: SWAE's learned prior), latent_sv_max,
                    latent_sv_min, latent_sv_min_over_max (see latent.py)
    'sharpness'  -> sharpness_samples, sharpness_reconstructions,
                    sharpness_test (1000 images each, see sharpness.py)
    'latent_probes' -> latent_knn_accuracy, latent_linear_accuracy (k-NN and
        logistic regression fitted on the codes of up to
        `probe_train_examples` training images, scored on the test codes;
        higher is better; see probes.py). Labelled data only: on unlabelled
        data the group is skipped.
  full (add these):
    'fd_classifier' -> fd_<dataset>_classifier (Fréchet distance in the
        features of the library's cached classifier, see feature_net.py)
    'swd_image'  -> swd_image_<res> per pyramid level and swd_image_avg (x1e3,
        see swd.py; up to `swd_images` images per set)
    'fid_inception', 'kid_inception' -> fid_inception, kid_inception,
        kid_inception_std (InceptionV3 pool3 features; needs the weights
        file, see inception.py)
Image-only groups (IMAGE_METRICS: sharpness, swd_image, fid_inception,
kid_inception) need pictures (data.is_image_shape: grey or RGB, at least 7x7);
on other data ('synthetic', 'gmm2d': vectors shaped (1, 1, dim)) 'cheap' and
'full' leave them out, and naming one is a cli.UserError.
Generated images: `num_samples` (default config.evaluation.num_samples, else
10,000) decoded prior samples, compared with the test split (all of it, or
its first `num_samples` images). The samples come from a fixed key derived
from config.seed, so every checkpoint is judged on the same latent draws.

Config fields read: config.best_metric and config.evaluation.*, declared
with their defaults in metric_names.CONFIG (a config without them gets those
defaults; evaluation.batch_size 0 means config.batch_size).
"""

import functools
from typing import Any, Dict, Iterable, Optional, Sequence

import jax
import numpy as np

from wae_jax import cli
from wae_jax import data
from wae_jax import compiled
from wae_jax.evaluation import feature_net as feature_net_lib
from wae_jax.evaluation import fid as fid_lib
from wae_jax.evaluation import inception as inception_lib
from wae_jax.evaluation import latent as latent_lib
from wae_jax.evaluation import metric_names
from wae_jax.evaluation import probes as probes_lib
from wae_jax.evaluation import sharpness as sharpness_lib
from wae_jax.evaluation import swd as swd_lib

from wae_jax.evaluation.metric_names import (ALL_METRICS, CHEAP_METRICS, FULL_ONLY_METRICS,
                                             IMAGE_METRICS, check_image_metrics)

_DEFAULTS = metric_names.CONFIG["evaluation"]
DEFAULT_NUM_SAMPLES = _DEFAULTS["num_samples"]
DEFAULT_SWD_IMAGES = _DEFAULTS["swd_images"]
DEFAULT_PROBE_TRAIN_EXAMPLES = _DEFAULTS["probe_train_examples"]
_SAMPLE_KEY_SALT = 0xE7A1
_LATENT_KEY_SALT = 0x1A7E


def _evaluation_field(config, name: str, default: Any = None) -> Any:
  """config.evaluation.<name>; `default` (else metric_names.CONFIG's) where the
  config lacks it or leaves it empty ('' or 0)."""
  if default is None:
    default = _DEFAULTS[name]
  evaluation = config.get("evaluation", None) if config is not None else None
  if evaluation is None:
    return default
  value = evaluation.get(name, None)
  return default if value is None or value == "" or (name == "batch_size" and not value) else value


@functools.lru_cache(maxsize=4)
def _inception_features(weights_path: str) -> inception_lib.InceptionFeatures:
  return inception_lib.InceptionFeatures(path=weights_path)


def _padded_apply(function, state, images: np.ndarray, batch_size: int) -> np.ndarray:
  """function(state, (batch_size, ...)) over `images`, padding the last batch."""
  count = images.shape[0]
  if count < batch_size:
    pad = np.zeros((batch_size - count,) + images.shape[1:], images.dtype)
    images = np.concatenate([images, pad])
  return np.asarray(function(state, images))[:count]


class Evaluator:
  """Computes metric groups for states of one run; caches what does not change.

  Cached across calls: the jitted method functions, the feature nets, the
  test-side features and statistics, the test images SWD and sharpness use.
  """

  def __init__(self, method, data_source, config,
               num_samples: Optional[int] = None, batch_size: Optional[int] = None,
               fid_weights: Optional[str] = None):
    """Args:
      method: a wae_jax.methods.Method.
      data_source: the run's data.ArraySource.
      config: the run config.
      num_samples: generated images for FID/KID/FD/SWD (default
        config.evaluation.num_samples, else 10,000).
      batch_size: images per jitted call (default
        config.evaluation.batch_size, else config.batch_size).
      fid_weights: the Inception weights file (else config / env var).
    """
    self.method = method
    self.data_source = data_source
    self.config = config
    self.num_samples = int(num_samples or _evaluation_field(
        config, "num_samples", DEFAULT_NUM_SAMPLES))
    self.batch_size = int(batch_size or _evaluation_field(
        config, "batch_size", config.get("batch_size", 100)))
    self.swd_images = int(_evaluation_field(config, "swd_images", DEFAULT_SWD_IMAGES))
    self.probe_train_examples = int(_evaluation_field(
        config, "probe_train_examples", DEFAULT_PROBE_TRAIN_EXAMPLES))
    self.probe_knn_neighbors = int(_evaluation_field(config, "probe_knn_neighbors"))
    self.fid_weights = fid_weights
    run_key = jax.random.PRNGKey(int(config.get("seed", 0)))
    self.sample_key = jax.random.fold_in(run_key, _SAMPLE_KEY_SALT)
    self.latent_key = jax.random.fold_in(run_key, _LATENT_KEY_SALT)
    self._sample = compiled.jitted(method.sample, (2,))
    self._reconstruct = compiled.jitted(method.reconstruct)
    self._encode = compiled.jitted(method.encode)
    self._sample_prior = compiled.jitted(method.sample_prior, (2,))
    self._test_cache: Dict[str, Any] = {}
    self.feature_nets: Dict[str, str] = {}

  # ------------------------------------------------------------ metric lists

  @property
  def is_image(self) -> bool:
    """Whether the data are pictures, which the IMAGE_METRICS groups need."""
    return data.is_image_shape(self.data_source.image_shape)

  @property
  def cheap_metrics(self) -> tuple:
    """CHEAP_METRICS without the image-only ones when the data are not pictures."""
    return tuple(m for m in CHEAP_METRICS if self.is_image or m not in IMAGE_METRICS)

  @property
  def full_metrics(self) -> tuple:
    """Cheap metrics plus every full one this run can compute.

    fid_inception / kid_inception only when the weights file is found, the
    classifier FD only for labelled data, the image-only ones only for images.
    """
    names = list(self.cheap_metrics)
    if getattr(self.data_source, "has_labels", False):
      names.append("fd_classifier")
    if self.is_image:
      names.append("swd_image")
      if inception_lib.fid_weights_available(self.fid_weights, self.config):
        names += ["fid_inception", "kid_inception"]
    return tuple(names)

  def expand(self, metrics: Iterable[str]) -> tuple:
    """Group names with 'cheap' / 'full' replaced by their groups, deduplicated."""
    expanded = []
    for name in metrics:
      if name == "cheap":
        expanded += self.cheap_metrics
      elif name == "full":
        expanded += self.full_metrics
      else:
        expanded.append(name)
    return tuple(dict.fromkeys(expanded))

  def check_metrics(self, metrics: Iterable[str],
                    asked_by: str = "The requested evaluation") -> tuple:
    """Expanded groups; cli.UserError for unknown ones, image-only ones on data
    that are not pictures (asked_by names who asked), or a missing FID weights file."""
    metrics = self.expand(metrics)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
      raise cli.UserError(
          f"Unknown evaluation metric(s) {unknown}; choose from {list(ALL_METRICS)}.")
    check_image_metrics(metrics, self.data_source.image_shape,
                        self.config.get("dataset", "this data"), asked_by)
    if not getattr(self.data_source, "has_labels", False) or getattr(
        self.data_source, "num_classes", 2) < 2:
      # The probes are part of 'cheap'; unlabelled data (or one class kept) simply has none.
      metrics = tuple(m for m in metrics if m != "latent_probes")
    if "fid_inception" in metrics or "kid_inception" in metrics:
      # Fail before any compute when the weights file is missing.
      self.fid_weights = inception_lib.resolve_weights_path(self.fid_weights, self.config)
    if "fd_classifier" in metrics and not getattr(self.data_source, "has_labels", True):
      raise cli.UserError(
          f"fd_classifier needs labels, and {self.config.get('dataset', 'this data')} "
          "has none; drop it from the metrics or use fid_inception.")
    return metrics

  # --------------------------------------------------------------- the data

  def _test_images(self, limit: int) -> np.ndarray:
    """The first `limit` test images, (n, H, W, C) float32 (cached)."""
    cached = self._test_cache.get("images")
    if cached is None or (cached.shape[0] < limit and not self._test_cache["all"]):
      chunks, count = [], 0
      for batch in self.data_source.test_batches(self.batch_size):
        chunks.append(np.asarray(batch["image"], np.float32))
        count += chunks[-1].shape[0]
        if count >= limit:
          break
      cached = np.concatenate(chunks)
      self._test_cache["images"] = cached
      self._test_cache["all"] = count < limit
    return cached[:limit]

  def _samples(self, state, count: int) -> np.ndarray:
    """`count` decoded prior samples from the fixed key, (count, H, W, C)."""
    chunks = []
    for index, start in enumerate(range(0, count, self.batch_size)):
      key = jax.random.fold_in(self.sample_key, index)
      chunks.append(np.asarray(self._sample(state, key, self.batch_size)))
    return np.concatenate(chunks)[:count]

  def _pass_over_test(self, state, keep_reconstructions: int):
    """One pass: (mean reconstruction error, codes (N, d), labels (N,) or
    None, first reconstructions)."""
    total, count, codes, labels, reconstructions = 0.0, 0, [], [], []
    kept = 0
    for batch in self.data_source.test_batches(self.batch_size):
      images = np.asarray(batch["image"], np.float32)
      recon = _padded_apply(self._reconstruct, state, images, self.batch_size)
      total += float(latent_lib.reconstruction_error(images, recon).sum())
      count += images.shape[0]
      codes.append(_padded_apply(self._encode, state, images, self.batch_size))
      if "label" in batch:
        labels.append(np.asarray(batch["label"]))
      if kept < keep_reconstructions:
        reconstructions.append(recon[:keep_reconstructions - kept])
        kept += reconstructions[-1].shape[0]
    recon = np.concatenate(reconstructions) if reconstructions else None
    labels = np.concatenate(labels) if labels else None
    return total / max(count, 1), np.concatenate(codes), labels, recon

  def _prior_sampler(self, state):
    """(key, n) -> the method's prior draws (SWAE's prior is learned)."""
    return lambda key, n: self._sample_prior(state, key, n)

  def _train_codes(self, state):
    """Codes (n, d) and labels (n,) of the fixed training subset the probes fit."""
    if "probe_train" not in self._test_cache:
      batches = list(self.data_source.train_subset_batches(
          self.probe_train_examples, self.batch_size))
      self._test_cache["probe_train"] = (
          [np.asarray(b["image"], np.float32) for b in batches],
          np.concatenate([np.asarray(b["label"]) for b in batches]))
    images, labels = self._test_cache["probe_train"]
    codes = np.concatenate([_padded_apply(self._encode, state, chunk, self.batch_size)
                            for chunk in images])
    return codes, labels

  # ------------------------------------------------------------ evaluation

  def _real_features(self, name: str, extractor, limit: int) -> np.ndarray:
    key = f"features/{name}/{limit}"
    if key not in self._test_cache:
      self._test_cache[key] = extractor(self._test_images(limit))
    return self._test_cache[key]

  def __call__(self, state, metrics: Optional[Sequence[str]] = None,
               key: Optional[jax.Array] = None) -> Dict[str, float]:
    """Evaluates `state`.

    Args:
      state: a TrainState.
      metrics: metric group names (see the module docstring), and 'cheap' /
        'full' for `self.cheap_metrics` / `self.full_metrics`; default 'cheap'.
      key: PRNG key of the latent diagnostics' prior draws (default fixed).

    Returns:
      {metric name: float}.
    """
    metrics = self.check_metrics(("cheap",) if metrics is None else metrics)
    results: Dict[str, float] = {}
    num_sharp = sharpness_lib.NUM_SHARPNESS_SAMPLES
    need_test_pass = any(m in metrics for m in ("test_reconstruction", "latent", "sharpness",
                                                "latent_probes"))
    if need_test_pass:
      error, codes, test_labels, reconstructions = self._pass_over_test(
          state, num_sharp if "sharpness" in metrics else 0)
      if "test_reconstruction" in metrics:
        results["test_reconstruction"] = error
      if "latent" in metrics:
        results.update(latent_lib.latent_distances(
            codes, self.config, self.latent_key if key is None else key,
            mmd_settings=self.method.mmd_settings(self.config),
            sample_prior=self._prior_sampler(state)))
        results.update(latent_lib.singular_value_summary(codes))
      if "sharpness" in metrics:
        results["sharpness_reconstructions"] = sharpness_lib.sharpness(reconstructions)
        results["sharpness_test"] = sharpness_lib.sharpness(self._test_images(num_sharp))
      if "latent_probes" in metrics:
        train_codes, train_labels = self._train_codes(state)
        results.update(probes_lib.latent_probes(train_codes, train_labels, codes,
                                                test_labels, self.probe_knn_neighbors))

    full = [m for m in metrics if m in FULL_ONLY_METRICS]
    # Batch keys are fold_in(sample_key, batch index), so the first images are
    # the same whatever the count: sharpness always sees the same 1000.
    num_generated = max(self.num_samples if full else 0,
                        num_sharp if "sharpness" in metrics else 0)
    samples = self._samples(state, num_generated) if num_generated else None
    if "sharpness" in metrics:
      results["sharpness_samples"] = sharpness_lib.sharpness(samples[:num_sharp])
    generated = samples[:self.num_samples] if full else None

    if "fd_classifier" in metrics:
      net = feature_net_lib.load_or_train(
          self.data_source, self.config,
          num_steps=int(_evaluation_field(self.config, "feature_net_steps")))
      real = self._real_features(net.name, net, self.num_samples)
      results[net.name] = fid_lib.frechet_distance_from_features(net(generated), real)
      self.feature_nets[net.name] = net.describe()

    if "swd_image" in metrics:
      count = min(self.swd_images, self.num_samples)
      swd = swd_lib.sliced_wasserstein_images(
          generated[:count], self._test_images(count), seed=int(self.config.get("seed", 0)))
      results.update({k.replace("swd_", "swd_image_"): v for k, v in swd.items()})

    if "fid_inception" in metrics or "kid_inception" in metrics:
      extractor = _inception_features(self.fid_weights)
      real = self._real_features(extractor.name, extractor, self.num_samples)
      fake = extractor(generated)
      digest = getattr(extractor, "weights_sha256", None)
      description = (f"{extractor.name} ({self.fid_weights}"
                     + (f", sha256 {digest})" if digest else ")"))
      if "fid_inception" in metrics:
        results["fid_inception"] = fid_lib.frechet_distance_from_features(fake, real)
        self.feature_nets["fid_inception"] = description
      if "kid_inception" in metrics:
        kid, kid_std = fid_lib.kernel_inception_distance(fake, real)
        results["kid_inception"], results["kid_inception_std"] = kid, kid_std
        self.feature_nets["kid_inception"] = description
    return results


def evaluate(method, state, data_source, config,
             metrics: Optional[Sequence[str]] = None,
             num_samples: Optional[int] = None) -> Dict[str, float]:
  """One-shot `Evaluator(method, data_source, config, num_samples)(state, metrics)`.

  `metrics='full'` (or ('full',)) asks for every metric this run can compute.
  """
  evaluator = Evaluator(method, data_source, config, num_samples=num_samples)
  if isinstance(metrics, str):
    metrics = (metrics,)
  return evaluator(state, metrics)
