"""Datasets that need no download and never import tensorflow.

- digits: scikit-learn's bundled 8x8 digits (1797 images). A fixed
  permutation (numpy seed 0, independent of config.seed) puts 1497 images in
  train and 300 in test. Pixel values 0..16 are divided by 16.
- mnist_idx: the four standard MNIST idx files in config.data_dir (plain or
  .gz), parsed with numpy: 60000 train / 10000 test.
- synthetic: standard Gaussian vectors, as in MoCA's latent-matching
  experiment: config.synthetic_num_points train points and as many independent
  test points in config.synthetic_dim dimensions, drawn from a fixed numpy
  seed (0 for train, 1 for test) so every run sees the same data. Each vector
  is an "image" of shape (1, 1, dim) (channels last, so flattening gives the
  vector back). Values are N(0, 1), NOT in [0, 1]: pair it with
  decoder_output='logits' and a squared-error reconstruction. No labels.
- gmm2d: the 2-D Gaussian mixture of the Symmetric WAE paper's Figure 1, as
  its released code draws it (github.com/sunsunyyl/SWAE: every gmm dataset
  loads through utils/load_data.py:764-779, load_gmm, which calls
  utils/distributions.py:108-132, sample_GMM): five equally likely components
  with means (i, i), i = 0..4, and covariance diag(0.2, 0.2), i.e. standard
  deviation sqrt(0.2) ~ 0.447 per coordinate (sample_GMM hands 0.2 *
  np.eye to np.random.multivariate_normal as the covariance). The code's
  other sampler, sample_GMM_d2 (std 0.2), is never called.
  config.synthetic_num_points train and as many test points from numpy seeds
  0 and 1, each a (1, 1, 2) "image"; the label is the component. Not in
  [0, 1]: pair it with decoder_output='logits'.

Images of digits and mnist_idx are resized to config.image_size x
config.image_size with bilinear interpolation (antialiased when shrinking),
the same rule as the tfds sources; the native size is kept as is.
"""

import gzip
import importlib.util
import os
from typing import Optional

import numpy as np

from wae_jax import cli

DIGITS_NUM_TEST = 300
DIGITS_SPLIT_SEED = 0

MNIST_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# The third byte of an idx magic number is the element type.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize (antialiased when shrinking) to size x size.

  Args:
    images: (N, H, W, C) float32 in [0, 1].
    size: the output side.

  Returns:
    (N, size, size, C) float32 in [0, 1]; `images` itself if already that size.
  """
  if images.shape[1:3] == (size, size):
    return images
  import jax  # pylint: disable=g-import-not-at-top

  resize = jax.jit(lambda x: jax.image.resize(
      x, (x.shape[0], size, size, x.shape[3]), method="linear",
      antialias=True))
  chunks = [np.asarray(resize(images[i:i + 4096]))
            for i in range(0, len(images), 4096)]
  # Linear weights are convex, so only float rounding can leave [0, 1].
  return np.clip(np.concatenate(chunks), 0.0, 1.0).astype(np.float32)


def _check_image_size(image_size: int) -> None:
  if image_size <= 0:
    raise cli.UserError(
        f"config.image_size must be positive, got {image_size}.")


def _digits_arrays():
  """The 1797 digits as ((N, 8, 8) pixel values 0-16, (N,) labels).

  Read from scikit-learn's data file, which is what
  `sklearn.datasets.load_digits` parses, without importing scikit-learn
  (0.6 s); through that function if the file is not where it has always been.
  """
  spec = importlib.util.find_spec("sklearn")
  path = os.path.join(spec.submodule_search_locations[0], "datasets", "data",
                      "digits.csv.gz") if spec and spec.submodule_search_locations else ""
  if os.path.exists(path):
    table = np.loadtxt(path, delimiter=",")  # rows: 64 pixels, then the label
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1]
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  return digits.images, digits.target


def load_digits(image_size: int):
  """scikit-learn's digits, split 1497 / 300 with a fixed permutation.

  Returns:
    (train_images, test_images, train_labels, test_labels): images float32
    (N, image_size, image_size, 1) in [0, 1], labels int32 (N,).
  """
  _check_image_size(image_size)
  pixels, labels = _digits_arrays()
  images = (pixels / 16.0).astype(np.float32)[..., None]  # (1797,8,8,1)
  labels = labels.astype(np.int32)
  order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
  train, test = order[:-DIGITS_NUM_TEST], order[-DIGITS_NUM_TEST:]
  return (resize_images(images[train], image_size),
          resize_images(images[test], image_size), labels[train], labels[test])


def read_idx(path: str) -> np.ndarray:
  """Parses one idx file (optionally gzipped) into an array.

  The format: two zero bytes, a type byte, a byte with the number of
  dimensions d, d big-endian int32 sizes, then the data in C order, big-endian.

  Args:
    path: the file; a name ending in .gz is decompressed.

  Returns:
    the array, in native byte order, with the shape the header gives.
  """
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      content = f.read()
  except (OSError, EOFError) as e:
    raise cli.UserError(
        f"Could not read the idx file {path} ({e}); replace it with an intact "
        "copy.") from e
  if len(content) < 4 or content[0] != 0 or content[1] != 0:
    raise cli.UserError(
        f"{path} is not an idx file (its first two bytes must be zero); "
        "replace it with an intact copy of the MNIST file.")
  type_code, ndim = content[2], content[3]
  if type_code not in _IDX_DTYPES:
    raise cli.UserError(
        f"{path} has the unknown idx element type 0x{type_code:02x}; "
        "replace it with an intact copy of the MNIST file.")
  header_size = 4 + 4 * ndim
  if len(content) < header_size:
    raise cli.UserError(
        f"{path} is truncated inside its header; replace it with an intact "
        "copy.")
  shape = tuple(int(d) for d in np.frombuffer(content, ">i4", ndim, offset=4))
  dtype = _IDX_DTYPES[type_code]
  expected = header_size + int(np.prod(shape)) * dtype.itemsize
  if len(content) != expected:
    raise cli.UserError(
        f"{path} holds {len(content)} bytes but its header {shape} implies "
        f"{expected}; the file is truncated or corrupt, replace it with an "
        "intact copy.")
  data = np.frombuffer(content, dtype, offset=header_size).reshape(shape)
  return data.astype(dtype.newbyteorder("="))


def _find_idx_file(data_dir: str, name: str) -> Optional[str]:
  # Both the official name (train-images-idx3-ubyte) and the dotted variant
  # some mirrors use (train-images.idx3-ubyte), each plain or gzipped.
  dotted = name.replace("-idx", ".idx")
  for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
    path = os.path.join(data_dir, candidate)
    if os.path.isfile(path):
      return path
  return None


def load_mnist_idx(data_dir: str, image_size: int):
  """MNIST from the four standard idx files in `data_dir`.

  Returns:
    (train_images, test_images, train_labels, test_labels): images uint8
    (N, 28, 28, 1) when image_size is 28, else float32 resized to
    (N, image_size, image_size, 1) in [0, 1]; labels int32 (N,).
  """
  _check_image_size(image_size)
  if not data_dir:
    raise cli.UserError(
        "dataset 'mnist_idx' reads the MNIST idx files from a folder: pass it "
        "with --config.data_dir=<folder holding "
        f"{', '.join(MNIST_IDX_FILES.values())} (optionally .gz)>, or use "
        "--config.dataset=digits, which works offline.")
  paths = {key: _find_idx_file(data_dir, name)
           for key, name in MNIST_IDX_FILES.items()}
  missing = [MNIST_IDX_FILES[key] for key, path in paths.items()
             if path is None]
  if missing:
    raise cli.UserError(
        f"dataset 'mnist_idx': {', '.join(missing)} (or .gz) not found in "
        f"data_dir {data_dir}; put the four standard MNIST idx files there "
        "(from https://yann.lecun.com/exdb/mnist/ or a mirror), or use "
        "--config.dataset=digits, which works offline.")
  arrays = {key: read_idx(path) for key, path in paths.items()}
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
      raise cli.UserError(
          f"dataset 'mnist_idx': the {split} files hold images "
          f"{images.shape} and labels {labels.shape}, expected (N, H, W) and "
          f"(N,); check the files in {data_dir}.")
    # Float idx files can hold anything; pixels must be finite values in [0, 255].
    bad = ~np.isfinite(images) | (images < 0) | (images > 255)
    if np.any(bad):
      index = np.unravel_index(int(np.argmax(bad)), images.shape)
      raise cli.UserError(
          f"dataset 'mnist_idx': {paths[f'{split}_images']} holds {int(bad.sum())} pixel(s) "
          f"that are not finite values in [0, 255] (the first, image {index[0]} at row "
          f"{index[1]}, column {index[2]}, is {images[index]!r}); replace the file with the "
          "standard MNIST idx file.")
  out = []
  for split in ("train", "test"):
    images = arrays[f"{split}_images"][..., None]
    if images.shape[1:3] != (image_size, image_size):
      images = resize_images(images.astype(np.float32) / 255.0, image_size)
    out.append(images)
  return (out[0], out[1], arrays["train_labels"].astype(np.int32),
          arrays["test_labels"].astype(np.int32))


GMM2D_MEANS = tuple((float(i), float(i)) for i in range(5))
# Each component's covariance is GMM2D_VARIANCE * I (sample_GMM's diag(0.2)).
GMM2D_VARIANCE = 0.2
GMM2D_STD = float(np.sqrt(GMM2D_VARIANCE))


def sample_gmm2d(rng: np.random.Generator, num_points: int):
  """(points (n, 2) float32, components (n,) int32) of the gmm2d mixture."""
  components = rng.integers(0, len(GMM2D_MEANS), num_points)
  means = np.asarray(GMM2D_MEANS, np.float64)[components]
  points = means + GMM2D_STD * rng.standard_normal((num_points, 2))
  return points.astype(np.float32), components.astype(np.int32)


def load_gmm2d(num_points: int):
  """The gmm2d mixture as (1, 1, 2) "images".

  Returns:
    (train_images, test_images, train_labels, test_labels): float32
    (num_points, 1, 1, 2) and int32 (num_points,) components; train from
    numpy seed 0, test from seed 1.
  """
  if num_points <= 0:
    raise cli.UserError(
        f"config.synthetic_num_points must be positive, got {num_points}.")
  splits = [sample_gmm2d(np.random.default_rng(seed), num_points) for seed in (0, 1)]
  (train, train_labels), (test, test_labels) = splits
  return (train.reshape(-1, 1, 1, 2), test.reshape(-1, 1, 1, 2), train_labels,
          test_labels)


def load_synthetic(num_points: int, dim: int):
  """Standard Gaussian points shaped as (1, 1, dim) "images".

  Returns:
    (train_images, test_images, None, None): float32 (num_points, 1, 1, dim),
    train from numpy seed 0 and test from seed 1.
  """
  if num_points <= 0 or dim <= 0:
    raise cli.UserError(
        "config.synthetic_num_points and config.synthetic_dim must be "
        f"positive, got {num_points} and {dim}.")
  shape = (num_points, 1, 1, dim)
  train = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
  test = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
  return train, test, None, None
