"""Input pipelines: `build(config) -> ArraySource`.

    source = data.build(config)
    source.image_shape            # (H, W, C)
    source.is_image               # pictures, or vectors shaped (1, 1, dim)
    source.num_train_examples, source.num_test_examples
    source.steps_per_epoch        # global batches per epoch (drop remainder)
    source.train_batches(start_step=0)   # infinite, host-local numpy batches
    source.test_batches(batch_size)      # the whole test split, fixed order
    data.prefetch(iterator, size=2, put=jax.device_put)  # device prefetch

A batch is {'image': float32 (batch_size / process_count, H, W, C) in [0, 1],
'label': int32 (batch_size / process_count,)} ('label' only for mnist,
fashion_mnist, cifar10, digits, mnist_idx and gmm2d; 'synthetic' holds N(0, 1)
values and 'gmm2d' the 2-D points of a Gaussian mixture, see offline.py). The order of epoch e is a permutation drawn from
(config.seed, e), so train_batches(n) yields exactly what train_batches(0)
yields from its n-th item on, computed directly.

Offline datasets (digits, mnist_idx, synthetic, gmm2d) never import tensorflow; the
tfds ones (tfds_source.py) import it only when built.
"""

from typing import Optional

import numpy as np

from wae_jax import cli
from wae_jax.data.prefetch import Prefetcher, prefetch
from wae_jax.data.source import (MIN_IMAGE_SIDE, ArraySource, check_batch_size,
                                 epoch_permutation, is_image_shape)

OFFLINE_DATASETS = ("digits", "mnist_idx", "synthetic", "gmm2d")
TFDS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "celeb_a", "celeb_a_hq")
DATASETS = OFFLINE_DATASETS + TFDS_DATASETS


def _load_arrays(config, download: bool):
  name = config.dataset
  if name == "digits":
    from wae_jax.data import offline  # pylint: disable=g-import-not-at-top
    return offline.load_digits(config.image_size)
  if name == "mnist_idx":
    from wae_jax.data import offline  # pylint: disable=g-import-not-at-top
    return offline.load_mnist_idx(config.data_dir, config.image_size)
  if name == "synthetic":
    from wae_jax.data import offline  # pylint: disable=g-import-not-at-top
    return offline.load_synthetic(config.synthetic_num_points,
                                  config.synthetic_dim)
  if name == "gmm2d":
    from wae_jax.data import offline  # pylint: disable=g-import-not-at-top
    return offline.load_gmm2d(config.synthetic_num_points)
  from wae_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  return tfds_source.load(name, config.image_size, config.data_dir,
                          download=download)


def keep_labels(name: str, images, labels, keep: tuple):
  """The examples whose label is in `keep`, in their order (labels unchanged)."""
  if labels is None:
    raise cli.UserError(
        f"config.keep_labels={keep} selects classes, but dataset {name!r} has no "
        "labels; set --config.keep_labels='()'.")
  index = np.flatnonzero(np.isin(labels, keep))
  if not len(index):
    raise cli.UserError(
        f"config.keep_labels={keep} keeps no example of {name!r} (its labels are "
        f"{sorted(set(np.unique(labels).tolist()))}); choose labels it has.")
  return np.asarray(images[index]), np.asarray(labels[index])


# The SWAE code draws its fixed binarisation of the test images from numpy seed
# 777 (utils/load_data.py:115); ours uses the same seed with numpy's Generator,
# so the same distribution, not the same bits.
BINARIZE_TEST_SEED = 777


def binarize(images: np.ndarray, seed: int = BINARIZE_TEST_SEED) -> np.ndarray:
  """One fixed Bernoulli draw per pixel, with the pixel's grey level as probability.

  Args:
    images: (N, H, W, C) uint8 (probability x / 255) or float32 in [0, 1].
    seed: numpy seed of the draw; the same seed gives the same images.

  Returns:
    The images as 0 or 1 in the input's encoding: uint8 {0, 255} or float32 {0, 1}.
  """
  is_uint8 = images.dtype == np.uint8
  probability = np.asarray(images, np.float32) / (255.0 if is_uint8 else 1.0)
  ones = np.random.default_rng(seed).random(probability.shape, np.float32) < probability
  return ones.astype(np.uint8) * 255 if is_uint8 else ones.astype(np.float32)


def build(config,
          *,
          process_index: Optional[int] = None,
          process_count: Optional[int] = None,
          download: bool = False) -> ArraySource:
  """The data source of config.dataset for this process.

  Args:
    config: reads dataset, data_dir, image_size, batch_size (global), seed,
      keep_labels (optional: only the examples of these classes),
      swae.binarize_test (optional: the test images binarised once, as the
      SWAE code's MNIST and Fashion-MNIST protocol, see `binarize`) and,
      for 'synthetic', synthetic_num_points and synthetic_dim (gmm2d:
      synthetic_num_points).
    process_index: this process; defaults to jax.process_index().
    process_count: processes sharing a global batch; defaults to
      jax.process_count().
    download: tfds datasets only: whether a dataset that is not prepared may
      be downloaded. The trainer, sample and evaluate never do: a missing
      dataset fails at once with the `tfds build` command that prepares it.

  Returns:
    an ArraySource (see the module docstring).
  """
  if config.dataset not in DATASETS:
    raise cli.UserError(
        f"Unknown dataset {config.dataset!r}; config.dataset must be one of "
        f"{', '.join(DATASETS)}.")
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top
    process_index = (jax.process_index() if process_index is None
                     else process_index)
    process_count = (jax.process_count() if process_count is None
                     else process_count)
  # Fail on an impossible batch split before loading anything.
  check_batch_size(config.batch_size, process_count)
  binarize_test = bool(config.get("swae", {}).get("binarize_test", False))
  if binarize_test and config.dataset in ("synthetic", "gmm2d"):
    raise cli.UserError(
        f"config.swae.binarize_test draws pixels in [0, 1] as 0 or 1, but dataset "
        f"{config.dataset!r} holds unbounded vectors; set --config.swae.binarize_test=False.")
  train_images, test_images, train_labels, test_labels = _load_arrays(
      config, download)
  keep = tuple(int(label) for label in config.get("keep_labels", ()) or ())
  if keep:
    train_images, train_labels = keep_labels(config.dataset, train_images, train_labels, keep)
    test_images, test_labels = keep_labels(config.dataset, test_images, test_labels, keep)
  if binarize_test:
    test_images = binarize(test_images)
  return ArraySource(
      name=config.dataset,
      train_images=train_images,
      test_images=test_images,
      train_labels=train_labels,
      test_labels=test_labels,
      batch_size=config.batch_size,
      seed=config.seed,
      process_index=process_index,
      process_count=process_count)


__all__ = [
    "ArraySource", "DATASETS", "MIN_IMAGE_SIDE", "OFFLINE_DATASETS",
    "Prefetcher", "TFDS_DATASETS", "binarize", "build", "epoch_permutation", "is_image_shape",
    "prefetch",
]
