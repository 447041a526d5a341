"""MNIST, Fashion-MNIST, CIFAR-10, CelebA and CelebA-HQ through tfds.

tensorflow and tensorflow_datasets are imported here only, and only when one
of these datasets is built.

Each split is decoded and preprocessed ONCE by a tf.data pipeline (parallel
map, tf.data prefetch) into a uint8 array (N, S, S, C), S = config.image_size,
which is cached as .npy files under <data_dir>/wae_jax_cache/ and memory-mapped
on later runs (no tensorflow import then, little RAM even for CelebA-HQ).
Training batches are then gathered by index like every other source (see
source.py), which is what makes resume-at-step-n exact.

Preprocessing (all datasets): optional centre crop, then bilinear resize
(antialiased when shrinking) to S x S when the size differs, rounded to uint8;
the batch iterator divides by 255.
- mnist, fashion_mnist: 28x28x1, train 60000 / test 10000 (e.g. S=32 for a
  resnet resizes 28 -> 32).
- cifar10: 32x32x3, train 50000 / test 10000.
- celeb_a: 218x178x3 aligned faces, centre crop 140x140 (as the WAE and MoCA
  papers do), resized to S (64 in the paper configs); the standard tfds splits
  train 162770 / test 19962; no label.
- celeb_a_hq: tfds config celeb_a_hq/<R> with R the smallest tfds resolution
  >= S (R = S = 256 in the paper configs); tfds has only a 30000-image 'train'
  split, so, as MoCA does, train = 'train[:27000]' and test = 'train[27000:]':
  the first 27000 / last 3000 images in the prepared tfds order, which is a
  fixed function of the file names (so the same for everyone); no label.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

from wae_jax import cli

# Bump when the preprocessing changes, so stale caches are not reused.
_CACHE_FORMAT = 1
_CELEB_A_HQ_RESOLUTIONS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclasses.dataclass(frozen=True)
class TfdsDataset:
  builder_name: str          # tfds name (with /config where there is one)
  train_split: str
  test_split: str
  crop_size: Optional[int]   # centre crop side before resizing, or None
  has_label: bool


def dataset_spec(name: str, image_size: int) -> TfdsDataset:
  """How config.dataset `name` maps onto tfds."""
  if name in ("mnist", "fashion_mnist", "cifar10"):
    return TfdsDataset(name, "train", "test", None, True)
  if name == "celeb_a":
    return TfdsDataset("celeb_a", "train", "test", 140, False)
  if name == "celeb_a_hq":
    fitting = [r for r in _CELEB_A_HQ_RESOLUTIONS if r >= image_size]
    if not fitting:
      raise ValueError(
          f"celeb_a_hq exists up to 1024x1024, config.image_size={image_size} "
          "is larger; use an image_size <= 1024.")
    return TfdsDataset(f"celeb_a_hq/{fitting[0]}", "train[:27000]",
                       "train[27000:]", None, False)
  raise ValueError(f"{name!r} is not a tfds dataset of wae_jax.")


class DatasetNotPreparedError(cli.UserError):
  """A tfds dataset is not on disk (the trainer never downloads one)."""


def _not_prepared_message(name: str, builder_name: str, data_dir: str,
                          reason: str) -> str:
  if name == "celeb_a_hq":
    resolution = builder_name.split("/")[1]
    manual_dir = os.path.join(data_dir, "downloads", "manual")
    how = (
        f"CelebA-HQ needs a manual download: build data{resolution}x"
        f"{resolution}.tar with the dataset_tool.py of "
        "https://github.com/tkarras/progressive_growing_of_gans (see its "
        "'Preparing datasets for training'), put it in tfds's manual_dir "
        f"{manual_dir} and run `tfds build {builder_name} --data_dir="
        f"{data_dir} --manual_dir={manual_dir}`")
  else:
    how = (
        f"prepare it with `tfds build {builder_name} --data_dir={data_dir}` (on a "
        "machine without internet, run it elsewhere and copy "
        f"{builder_name.split('/')[0]}/ into {data_dir})")
  return (
      f"Dataset '{name}' ({builder_name}) is not prepared in data_dir "
      f"{data_dir} and {reason}; {how}, or pass --config.data_dir=<the folder "
      "that holds it>; --config.dataset=digits works offline.")


def _is_remote(path: str) -> bool:
  return "://" in path


def default_data_dir() -> str:
  """tfds's default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets), found
  without importing tfds (tensorflow_datasets.core.constants.get_default_data_dir)."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.join(os.path.expanduser("~"),
                                                         "tensorflow_datasets")


def _maybe_on_disk(data_dir: str, builder_name: str) -> bool:
  """False when data_dir certainly holds neither the prepared dataset nor our cache.

  Looks for <data_dir>/<builder>/<version>/dataset_info.json, which tfds
  writes last when it prepares a dataset, and for <data_dir>/wae_jax_cache/<builder>.
  """
  if _is_remote(data_dir):
    return True
  builder_dir = os.path.join(data_dir, builder_name)
  prepared = os.path.isdir(builder_dir) and any(
      os.path.isfile(os.path.join(builder_dir, version, "dataset_info.json"))
      for version in os.listdir(builder_dir))
  return prepared or os.path.isdir(os.path.join(data_dir, "wae_jax_cache", builder_name))


def _cache_dir(data_dir: str, builder_name: str, version: str, split: str,
               image_size: int) -> str:
  split_tag = split.replace("[", "_").replace(":", "-").replace("]", "")
  return os.path.join(data_dir, "wae_jax_cache", builder_name, version,
                      f"{split_tag}_{image_size}px_v{_CACHE_FORMAT}")


def _load_cache(path: str):
  """(images memmap, labels or None) from a finished cache folder, or None."""
  meta_path = os.path.join(path, "meta.json")
  if not os.path.isfile(meta_path):
    return None
  with open(meta_path) as f:
    meta = json.load(f)
  images = np.load(os.path.join(path, "images.npy"), mmap_mode="r")
  labels = (np.load(os.path.join(path, "labels.npy"))
            if meta["has_label"] else None)
  return images, labels


def _preprocess_split(builder, spec: TfdsDataset, split: str,
                      image_size: int, out_dir: Optional[str]):
  """Decodes, crops, resizes one split with tf.data; writes it if out_dir."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  # Files in order and a deterministic map: the cached order is fixed.
  ds = builder.as_dataset(split=split, shuffle_files=False)

  def preprocess(example):
    image = example["image"]
    if spec.crop_size is not None:
      height, width = tf.shape(image)[0], tf.shape(image)[1]
      image = tf.image.crop_to_bounding_box(
          image, (height - spec.crop_size) // 2, (width - spec.crop_size) // 2,
          spec.crop_size, spec.crop_size)
    if image.shape[0] != image_size or image.shape[1] != image_size:
      image = tf.image.resize(image, (image_size, image_size),
                              method="bilinear", antialias=True)
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    out = {"image": image}
    if spec.has_label:
      out["label"] = tf.cast(example["label"], tf.int32)
    return out

  ds = ds.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  num_examples = int(ds.cardinality())  # tfds knows it; a map keeps it
  if num_examples < 0:
    num_examples = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
  ds = ds.batch(256).prefetch(tf.data.AUTOTUNE)
  images = labels = None
  row = 0
  for batch in tfds.as_numpy(ds):
    if images is None:
      shape = (num_examples,) + batch["image"].shape[1:]
      images = (np.lib.format.open_memmap(
          os.path.join(out_dir, "images.npy"), mode="w+", dtype=np.uint8,
          shape=shape) if out_dir else np.empty(shape, np.uint8))
      labels = np.empty((num_examples,), np.int32) if spec.has_label else None
    images[row:row + len(batch["image"])] = batch["image"]
    if labels is not None:
      labels[row:row + len(batch["image"])] = batch["label"]
    row += len(batch["image"])
  if images is None or row != num_examples:
    raise ValueError(
        f"tfds split {split!r} of {spec.builder_name} yielded {row} examples, "
        f"expected {num_examples}; delete and re-prepare the dataset.")
  if out_dir:
    images.flush()
    del images
    if labels is not None:
      np.save(os.path.join(out_dir, "labels.npy"), labels)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
      json.dump({"num_examples": num_examples, "has_label": spec.has_label,
                 "split": split, "image_size": image_size}, f)
    return None
  return images, labels


def load_split(builder, spec: TfdsDataset, split: str, image_size: int,
               data_dir: str):
  """(images uint8 (N, S, S, C), labels int32 (N,) or None), cached on disk."""
  if _is_remote(data_dir):
    return _preprocess_split(builder, spec, split, image_size, None)
  cache = _cache_dir(data_dir, spec.builder_name, str(builder.info.version),
                     split, image_size)
  loaded = _load_cache(cache)
  if loaded is not None:
    return loaded
  try:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(cache))
  except OSError:  # a read-only data_dir: keep the split in memory instead
    return _preprocess_split(builder, spec, split, image_size, None)
  try:
    _preprocess_split(builder, spec, split, image_size, tmp_dir)
    try:
      os.rename(tmp_dir, cache)  # atomic; another process may have won
    except OSError:
      if _load_cache(cache) is None:
        raise
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  return _load_cache(cache)


def _is_installed(module: str) -> bool:
  try:
    return importlib.util.find_spec(module) is not None
  except (ImportError, ValueError):
    return False


def check_tfds_installed(name: str) -> None:
  """A UserError with the install command unless tensorflow-datasets and
  tensorflow are importable (`pip install -e .` leaves them out)."""
  missing = [m for m in ("tensorflow_datasets", "tensorflow") if not _is_installed(m)]
  if missing:
    raise cli.UserError(
        f"config.dataset={name!r} is read with tensorflow-datasets, but "
        f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
        "run `pip install -e '.[tfds]'` in the repository (or `pip install "
        "tensorflow-cpu tensorflow-datasets`), or use an offline dataset such as "
        "--config.dataset=digits or mnist_idx.")


def load(name: str, image_size: int, data_dir: str, download: bool = False):
  """Loads the train and test split of tfds dataset `name`.

  Args:
    name: one of mnist, fashion_mnist, cifar10, celeb_a, celeb_a_hq.
    image_size: the output side S.
    data_dir: the tfds data_dir; "" = tfds's default (~/tensorflow_datasets or
      $TFDS_DATA_DIR).
    download: whether a dataset that is not prepared may be downloaded and
      prepared (tfds download_and_prepare); False fails at once.

  Returns:
    (train_images, test_images, train_labels, test_labels): images uint8
    (N, S, S, C) (memory-mapped where cached), labels int32 (N,) or None.

  Raises:
    DatasetNotPreparedError: the dataset is neither cached, prepared nor
      downloadable; the message says how to prepare it.
  """
  if image_size <= 0:
    raise ValueError(f"config.image_size must be positive, got {image_size}.")
  spec = dataset_spec(name, image_size)
  check_tfds_installed(name)
  data_dir = data_dir or default_data_dir()
  if not download and not _maybe_on_disk(data_dir, spec.builder_name):
    # Fails in milliseconds: importing tensorflow_datasets alone takes seconds.
    raise DatasetNotPreparedError(_not_prepared_message(
        name, spec.builder_name, data_dir, "wae_jax does not download datasets"))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = tfds.builder(spec.builder_name, data_dir=data_dir)
  if not _is_remote(data_dir):
    version = str(builder.info.version)
    cached = [_load_cache(_cache_dir(data_dir, spec.builder_name, version,
                                     split, image_size))
              for split in (spec.train_split, spec.test_split)]
    if all(c is not None for c in cached):
      (train_images, train_labels), (test_images, test_labels) = cached
      return train_images, test_images, train_labels, test_labels
  if not builder.is_prepared():
    if not download:
      raise DatasetNotPreparedError(_not_prepared_message(
          name, spec.builder_name, data_dir, "wae_jax does not download datasets"))
    try:
      builder.download_and_prepare()
    except Exception as e:  # tfds raises many kinds; the cause is chained.
      raise DatasetNotPreparedError(_not_prepared_message(
          name, spec.builder_name, data_dir,
          f"could not be downloaded and prepared ({type(e).__name__})")) from e
  try:
    train_images, train_labels = load_split(builder, spec, spec.train_split,
                                            image_size, data_dir)
    test_images, test_labels = load_split(builder, spec, spec.test_split,
                                          image_size, data_dir)
  except Exception as e:  # a raw tf/tfds error is not the message; chain it.
    detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    raise cli.UserError(
        f"Reading dataset '{name}' ({spec.builder_name}) from data_dir "
        f"{data_dir} failed ({type(e).__name__}: {detail}); its prepared "
        f"files may be incomplete: delete "
        f"{os.path.join(data_dir, spec.builder_name.split('/')[0])} and "
        "prepare it again, or use --config.dataset=digits, which works "
        "offline.") from e
  return train_images, test_images, train_labels, test_labels
