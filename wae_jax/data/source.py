"""The one source type every dataset becomes: index-based, resumable, sharded.

Every dataset is loaded (or memory-mapped) as arrays once; batches are then
gathered by index. The order of an epoch is a permutation of the training
indices drawn from (seed, epoch), so the examples of global step s are a pure
function of (seed, s): a resumed run computes them directly, without replaying
earlier steps. A global batch is split into `process_count` contiguous slices
and process p takes slice p, so the union over processes is exactly the global
batch (the same global batch whatever the number of hosts).
"""

from typing import Iterator, Optional

import numpy as np

from wae_jax import cli

Batch = dict  # {'image': float32 (B, H, W, C) in [0, 1], 'label': int32 (B,)}

# The seed of train_subset_batches' subset: fixed, so every run is probed on
# the same training examples.
TRAIN_SUBSET_SEED = 20210625

# The smallest side the image-only evaluations take: image SWD compares 7x7
# neighbourhoods (sharpness needs 3x3, FID/KID and the PNG grids any size).
MIN_IMAGE_SIDE = 7


def is_image_shape(image_shape) -> bool:
  """Whether examples of shape (H, W, C) are pictures: grey or RGB, H, W >= 7.

  The one test of everything that only makes sense for images (sharpness,
  image SWD, FID/KID, the PNG grids); 'synthetic' and 'gmm2d' hold vectors
  shaped (1, 1, dim), for which those are skipped.
  """
  if len(image_shape) != 3:
    return False
  height, width, channels = (int(d) for d in image_shape)
  return channels in (1, 3) and min(height, width) >= MIN_IMAGE_SIDE


def check_batch_size(batch_size: int, process_count: int) -> int:
  """Returns the host-local batch size, or raises if the split is uneven."""
  if batch_size <= 0:
    raise cli.UserError(
        f"config.batch_size must be positive, got {batch_size}.")
  if batch_size % process_count:
    raise cli.UserError(
        f"config.batch_size={batch_size} is not divisible by the number of "
        f"processes ({process_count}); set --config.batch_size to a multiple "
        f"of {process_count}.")
  return batch_size // process_count


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """The order of the training examples in `epoch`: (num_examples,) int64.

  A pure function of (seed, epoch): numpy's SeedSequence mixes both words, so
  nearby seeds and epochs give unrelated orders.
  """
  rng = np.random.default_rng([seed % 2**32, epoch])
  return rng.permutation(num_examples)


class ArraySource:
  """Batches from arrays of a train and a test split.

  Images are stored as uint8 (converted to float32 / 255 per batch, so large
  splits can stay memory-mapped) or as float32 already in their final range.
  """

  def __init__(self,
               *,
               name: str,
               train_images: np.ndarray,
               test_images: np.ndarray,
               train_labels: Optional[np.ndarray],
               test_labels: Optional[np.ndarray],
               batch_size: int,
               seed: int,
               process_index: int,
               process_count: int):
    """Args:
      name: the dataset name (config.dataset), for messages.
      train_images: (N, H, W, C) uint8 or float32 (may be a np.memmap).
      test_images: (M, H, W, C), same dtype and image shape.
      train_labels: (N,) integers, or None for unlabelled data.
      test_labels: (M,) integers, or None.
      batch_size: the GLOBAL batch size (over all processes).
      seed: the shuffle seed (config.seed).
      process_index: this process, in [0, process_count).
      process_count: how many processes share each global batch.
    """
    if not 0 <= process_index < process_count:
      raise ValueError(
          f"process_index={process_index} is not in [0, {process_count}).")
    self.local_batch_size = check_batch_size(batch_size, process_count)
    if train_images.shape[1:] != test_images.shape[1:]:
      raise ValueError(
          f"{name}: train images {train_images.shape[1:]} and test images "
          f"{test_images.shape[1:]} differ in shape.")
    if len(train_images) < batch_size:
      raise cli.UserError(
          f"config.batch_size={batch_size} is larger than the {name} training "
          f"split ({len(train_images)} examples); use a smaller batch size.")
    self.name = name
    self.batch_size = batch_size
    self.seed = seed
    self.process_index = process_index
    self.process_count = process_count
    self._train_images = train_images
    self._test_images = test_images
    self._train_labels = train_labels
    self._test_labels = test_labels
    self._cached_epoch = None
    self._cached_permutation = None

  @property
  def image_shape(self) -> tuple:
    """(H, W, C) of every image."""
    return tuple(int(d) for d in self._train_images.shape[1:])

  @property
  def is_image(self) -> bool:
    """Whether the examples are pictures (see `is_image_shape`)."""
    return is_image_shape(self.image_shape)

  @property
  def num_train_examples(self) -> int:
    return len(self._train_images)

  @property
  def num_test_examples(self) -> int:
    return len(self._test_images)

  @property
  def has_labels(self) -> bool:
    return self._train_labels is not None

  @property
  def num_classes(self) -> int:
    """Distinct labels in the training split (0 without labels)."""
    return len(np.unique(self._train_labels)) if self.has_labels else 0

  @property
  def steps_per_epoch(self) -> int:
    """Global batches per epoch; the last partial batch is dropped."""
    return self.num_train_examples // self.batch_size

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._cached_epoch:
      self._cached_permutation = epoch_permutation(
          self.seed, epoch, self.num_train_examples)
      self._cached_epoch = epoch
    return self._cached_permutation

  def train_indices(self, step: int) -> np.ndarray:
    """Indices into the training split of this process's part of `step`.

    Returns:
      (local_batch_size,) int64: rows [p * b, (p + 1) * b) of the global batch
      of `step`, where p is the process index and b the host-local batch size.
    """
    if step < 0:
      raise ValueError(f"step must be >= 0, got {step}.")
    epoch, batch_in_epoch = divmod(step, self.steps_per_epoch)
    start = batch_in_epoch * self.batch_size
    start += self.process_index * self.local_batch_size
    return self._permutation(epoch)[start:start + self.local_batch_size]

  def _gather(self, images, labels, indices) -> Batch:
    gathered = np.asarray(images[indices])
    if gathered.dtype == np.uint8:
      batch_images = np.divide(gathered, np.float32(255.0), dtype=np.float32)
    else:
      batch_images = gathered.astype(np.float32, copy=False)
    batch = {"image": batch_images}
    if labels is not None:
      batch["label"] = np.asarray(labels[indices], dtype=np.int32)
    return batch

  def train_batches(self, start_step: int = 0, steps_per_item: int = 1) -> Iterator[Batch]:
    """Infinite iterator of host-local training batches from `start_step`.

    Yields:
      {'image': float32 (B / process_count, H, W, C), 'label': int32 (...)}
      ('label' only for labelled datasets). start_step=n yields exactly what
      the n-th and later items of start_step=0 would be. With
      steps_per_item=k > 1 each item is the next k steps' batches stacked,
      (k, B / process_count, ...), gathered at once.
    """
    if steps_per_item < 1:
      raise ValueError(f"steps_per_item must be >= 1, got {steps_per_item}.")
    step = start_step
    while True:
      if steps_per_item == 1:
        indices = self.train_indices(step)
      else:
        indices = np.stack([self.train_indices(s) for s in range(step, step + steps_per_item)])
      yield self._gather(self._train_images, self._train_labels, indices)
      step += steps_per_item

  def train_subset_batches(self, num_examples: int,
                           batch_size: Optional[int] = None) -> Iterator[Batch]:
    """A fixed subset of the training split, in batches (for latent probes).

    The subset is the same for every run and process: all examples when
    num_examples >= the split size, else a random subset drawn from a fixed
    seed (independent of config.seed), yielded in index order.

    Args:
      num_examples: how many training examples (> 0).
      batch_size: examples per batch; defaults to the global batch size.
    """
    batch_size = batch_size or self.batch_size
    if num_examples <= 0 or batch_size <= 0:
      raise ValueError(
          f"train_subset_batches needs num_examples > 0 and batch_size > 0, got "
          f"{num_examples} and {batch_size}.")
    if num_examples >= self.num_train_examples:
      indices = np.arange(self.num_train_examples)
    else:
      rng = np.random.default_rng(TRAIN_SUBSET_SEED)
      indices = np.sort(rng.choice(self.num_train_examples, num_examples, replace=False))
    for start in range(0, len(indices), batch_size):
      yield self._gather(self._train_images, self._train_labels,
                         indices[start:start + batch_size])

  def test_batches(self, batch_size: Optional[int] = None) -> Iterator[Batch]:
    """The whole test split in its fixed order (the last batch may be smaller).

    Not sharded over processes: every process sees the whole split.

    Args:
      batch_size: examples per batch; defaults to the global batch size.
    """
    batch_size = batch_size or self.batch_size
    if batch_size <= 0:
      raise ValueError(f"test batch_size must be positive, got {batch_size}.")
    for start in range(0, self.num_test_examples, batch_size):
      indices = np.arange(start, min(start + batch_size,
                                     self.num_test_examples))
      yield self._gather(self._test_images, self._test_labels, indices)

  def __repr__(self) -> str:
    return (f"ArraySource({self.name}: {self.num_train_examples} train / "
            f"{self.num_test_examples} test, image_shape={self.image_shape}, "
            f"batch_size={self.batch_size}, process "
            f"{self.process_index}/{self.process_count})")
