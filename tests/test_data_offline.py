"""Tests of wae_jax.data without tensorflow: the index-based source, digits,
the idx parser, synthetic data and the prefetch buffer.

`check_source_contract` is also used by test_data_tfds.py.
"""

import gzip
import itertools
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from sklearn import datasets as sk_datasets

from configs.default import base_config
from wae_jax import data
from wae_jax.data import offline


def make_config(**overrides) -> ml_collections.ConfigDict:
  config = base_config()
  for key, value in overrides.items():
    config[key] = value
  return config


def as_uint8_rows(images: np.ndarray) -> np.ndarray:
  """(N, ...) float images in [0, 1] on the 1/255 grid -> sorted uint8 rows."""
  rows = np.round(np.asarray(images) * 255).astype(np.uint8)
  rows = rows.reshape(len(rows), -1)
  return rows[np.lexsort(rows.T[::-1])]


def take(iterator, n):
  return list(itertools.islice(iterator, n))


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])


def check_source_contract(make_source, image_shape, has_label):
  """The ArraySource contract for `make_source(seed, process_index, count)`.

  The source must have at least 2 steps per epoch and an even batch size.
  """
  source = make_source(0, 0, 1)
  assert source.image_shape == image_shape
  spe = source.steps_per_epoch
  assert spe == source.num_train_examples // source.batch_size and spe >= 2
  # Shapes, dtype, range of train and test batches.
  batch = next(source.train_batches())
  assert batch["image"].shape == (source.batch_size,) + image_shape
  assert batch["image"].dtype == np.float32
  assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
  assert ("label" in batch) == has_label
  if has_label:
    assert batch["label"].dtype == np.int32
    assert batch["label"].shape == (source.batch_size,)
  test = list(source.test_batches(3))
  assert sum(len(b["image"]) for b in test) == source.num_test_examples
  assert all(len(b["image"]) == 3 for b in test[:-1])
  assert all(b["image"].dtype == np.float32 for b in test)

  # Determinism: same seed -> same order; another seed or epoch -> another.
  first_two_epochs = take(source.train_batches(), 2 * spe)
  assert_batches_equal(first_two_epochs, take(make_source(0, 0, 1)
                                              .train_batches(), 2 * spe))
  other_seed = make_source(1, 0, 1)
  assert not np.array_equal(source.train_indices(0),
                            other_seed.train_indices(0))
  epoch0 = np.concatenate([source.train_indices(s) for s in range(spe)])
  epoch1 = np.concatenate([source.train_indices(s)
                           for s in range(spe, 2 * spe)])
  assert not np.array_equal(epoch0, epoch1)
  # An epoch draws distinct examples.
  assert len(np.unique(epoch0)) == len(epoch0) == spe * source.batch_size

  # Resume at step n (also across the epoch boundary) equals skipping n.
  for n in (1, spe - 1, spe + 1):
    assert_batches_equal(take(make_source(0, 0, 1).train_batches(n), 2),
                         first_two_epochs[n:n + 2])

  # Two processes: disjoint halves of every global batch, covering it.
  shards = [make_source(0, p, 2) for p in (0, 1)]
  for step in (0, spe - 1, spe):
    halves = [shard.train_indices(step) for shard in shards]
    assert not set(halves[0]) & set(halves[1])
    np.testing.assert_array_equal(np.concatenate(halves),
                                  source.train_indices(step))
  shard_batches = [take(shard.train_batches(), spe) for shard in shards]
  for step in range(spe):
    for key in first_two_epochs[step]:
      np.testing.assert_array_equal(
          np.concatenate([shard_batches[0][step][key],
                          shard_batches[1][step][key]]),
          first_two_epochs[step][key])
    assert len(shard_batches[0][step]["image"]) == source.batch_size // 2
  return source


# --- digits -----------------------------------------------------------------


def _digits_source(seed, process_index, process_count, image_size=8,
                   batch_size=100):
  return data.build(make_config(seed=seed, image_size=image_size,
                                batch_size=batch_size),
                    process_index=process_index, process_count=process_count)


def test_digits_contract():
  source = check_source_contract(_digits_source, (8, 8, 1), has_label=True)
  assert (source.num_train_examples, source.num_test_examples) == (1497, 300)
  assert source.steps_per_epoch == 14


def test_digits_split_is_a_partition_of_sklearn_digits():
  source = _digits_source(0, 0, 1, batch_size=499)  # 1497 = 3 * 499
  train = np.concatenate([b["image"] for b in take(source.train_batches(), 3)])
  test = np.concatenate([b["image"] for b in source.test_batches(64)])
  digits = sk_datasets.load_digits()
  # Every value is k / 16: compare on the 1/16 grid as integers.
  ours = np.concatenate([train, test]).reshape(1797, 64) * 16
  np.testing.assert_allclose(ours, np.round(ours), atol=1e-6)
  ours = np.round(ours).astype(np.int64)
  reference = digits.images.reshape(1797, 64).astype(np.int64)
  np.testing.assert_array_equal(ours[np.lexsort(ours.T[::-1])],
                                reference[np.lexsort(reference.T[::-1])])
  # Labels travel with their images.
  test_labels = np.concatenate([b["label"] for b in source.test_batches(64)])
  for image, label in zip(test[:20], test_labels[:20]):
    matches = np.all(reference == np.round(image.reshape(64) * 16), axis=1)
    assert label in digits.target[matches]


def test_digits_file_read_equals_sklearn_load_digits(monkeypatch):
  """The digits come from scikit-learn's data file without importing it, or,
  were the file gone, from sklearn.datasets.load_digits: the same arrays."""
  digits = sk_datasets.load_digits()
  for file_present in (True, False):
    if not file_present:
      monkeypatch.setattr(offline.os.path, "exists", lambda path: False)
    pixels, labels = offline._digits_arrays()  # pylint: disable=protected-access
    np.testing.assert_array_equal(pixels, digits.images)
    np.testing.assert_array_equal(labels, digits.target)


def test_digits_resized_keeps_order_and_mean():
  small = _digits_source(0, 0, 1)
  large = _digits_source(0, 0, 1, image_size=32)
  assert large.image_shape == (32, 32, 1)
  a, b = next(small.test_batches(50)), next(large.test_batches(50))
  np.testing.assert_array_equal(a["label"], b["label"])
  assert 0.0 <= b["image"].min() and b["image"].max() <= 1.0
  # Bilinear upsampling (edge-clamped) roughly preserves the mean intensity.
  np.testing.assert_allclose(b["image"].mean(axis=(1, 2, 3)),
                             a["image"].mean(axis=(1, 2, 3)), atol=0.03)


def test_batch_size_errors():
  with pytest.raises(ValueError, match="not divisible by the number of "
                     "processes"):
    _digits_source(0, 0, 3, batch_size=100)
  with pytest.raises(ValueError, match="larger than the digits training"):
    _digits_source(0, 0, 1, batch_size=2000)


def test_unknown_dataset_lists_valid_names():
  with pytest.raises(ValueError, match="mnist_idx, synthetic, gmm2d, mnist, "
                     "fashion_mnist, cifar10, celeb_a, celeb_a_hq"):
    data.build(make_config(dataset="imagenet"))


def test_offline_sources_do_not_import_tensorflow():
  code = (
      "import sys\n"
      "from configs.default import base_config\n"
      "from wae_jax import data\n"
      "c = base_config(); data.build(c)\n"
      "c.dataset = 'synthetic'; data.build(c)\n"
      "c.dataset = 'gmm2d'; data.build(c)\n"
      "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run([sys.executable, "-c", code], cwd=root, check=True,
                 timeout=120)


# --- synthetic --------------------------------------------------------------


def test_synthetic_contract_and_distribution():
  def make(seed, process_index, process_count):
    return data.build(make_config(dataset="synthetic", seed=seed,
                                  synthetic_num_points=1000,
                                  synthetic_dim=100, batch_size=100),
                      process_index=process_index, process_count=process_count)

  source = make(0, 0, 1)
  assert source.image_shape == (1, 1, 100)
  assert (source.num_train_examples, source.num_test_examples) == (1000, 1000)
  batches = take(source.train_batches(), 10)
  assert "label" not in batches[0]
  points = np.concatenate([b["image"] for b in batches]).reshape(1000, 100)
  # One epoch is all 1000 standard Gaussian points: mean 0, variance 1.
  assert abs(points.mean()) < 0.01 and abs(points.var() - 1) < 0.02
  # The data are fixed (independent of the shuffle seed) ...
  other = np.concatenate([b["image"] for b in take(make(5, 0, 1)
                                                  .train_batches(), 10)])
  np.testing.assert_array_equal(np.sort(points, axis=None),
                                np.sort(other, axis=None))
  # ... the order is not; resume equals skipping; shards split each batch.
  assert not np.array_equal(points[:100], other.reshape(1000, 100)[:100])
  assert_batches_equal(take(source.train_batches(13), 2),
                       take(make(0, 0, 1).train_batches(), 15)[13:])
  halves = [next(make(0, p, 2).train_batches())["image"] for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), batches[0]["image"])


@pytest.mark.parametrize("shape,is_image", [
    ((8, 8, 1), True), ((64, 64, 3), True), ((7, 9, 3), True),
    ((1, 1, 100), False), ((1, 1, 2), False), ((1, 1, 1), False), ((1, 1, 3), False),
    ((28, 28, 2), False), ((6, 6, 1), False), ((8, 8), False)])
def test_is_image_shape(shape, is_image):
  # Grey or RGB, both sides at least 7 (image SWD's neighbourhoods).
  assert data.is_image_shape(shape) == is_image


def test_sources_say_whether_they_hold_pictures():
  assert data.build(make_config(dataset="digits")).is_image
  assert not data.build(make_config(dataset="synthetic", synthetic_num_points=100,
                                    synthetic_dim=3, batch_size=10)).is_image
  assert not data.build(make_config(dataset="gmm2d", synthetic_num_points=100,
                                    batch_size=10)).is_image


def test_gmm2d_components_frequencies_and_moments():
  source = data.build(make_config(dataset="gmm2d", synthetic_num_points=20000,
                                  batch_size=100))
  assert source.image_shape == (1, 1, 2) and source.has_labels
  test = take(source.test_batches(20000), 1)[0]
  points, labels = test["image"].reshape(-1, 2).astype(np.float64), test["label"]
  # Five equally likely components (binomial std of a frequency: 0.003).
  np.testing.assert_allclose(np.bincount(labels, minlength=5) / 20000, 0.2, atol=0.012)
  # The SWAE code's sample_GMM passes diag(0.2) as each component's covariance
  # (utils/distributions.py:110-111, 119): std sqrt(0.2), not 0.2.
  variance = 0.2
  for component in range(5):
    own = points[labels == component]
    n = len(own)
    # Five standard errors of each estimate: mean sqrt(v / n); a diagonal
    # entry of the sample covariance v sqrt(2 / (n - 1)); an off-diagonal one v / sqrt(n).
    np.testing.assert_allclose(own.mean(0), [component, component],
                               atol=5 * np.sqrt(variance / n))
    covariance = np.cov(own.T)
    np.testing.assert_allclose(np.diag(covariance), [variance, variance],
                               atol=5 * variance * np.sqrt(2 / (n - 1)))
    assert abs(covariance[0, 1]) < 5 * variance / np.sqrt(n)
  train = np.concatenate([b["image"] for b in take(source.train_batches(), 200)])
  assert not np.array_equal(np.sort(train, axis=None), np.sort(points, axis=None))


# --- idx parser and mnist_idx ----------------------------------------------


def write_idx(path, array, type_code):
  """Writes `array` as an idx file: 0, 0, type, ndim, big-endian dims, data."""
  dtype = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_code]
  header = bytes([0, 0, type_code, array.ndim])
  header += np.asarray(array.shape, ">i4").tobytes()
  content = header + np.asarray(array, dtype).tobytes()
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(content)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("type_code,dtype", [(0x08, np.uint8),
                                             (0x0C, np.int32),
                                             (0x0D, np.float32)])
def test_read_idx_round_trip(tmp_path, suffix, type_code, dtype):
  rng = np.random.default_rng(0)
  array = rng.integers(0, 250, size=(5, 3, 4)).astype(dtype)
  path = str(tmp_path / f"x-idx3-ubyte{suffix}")
  write_idx(path, array, type_code)
  parsed = offline.read_idx(path)
  assert parsed.dtype == np.dtype(dtype) and parsed.shape == (5, 3, 4)
  np.testing.assert_array_equal(parsed, array)


def test_read_idx_known_bytes(tmp_path):
  # A 1-d uint8 idx file written byte by byte: magic 0x00000801, size 3.
  path = tmp_path / "labels-idx1-ubyte"
  path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 255]))
  np.testing.assert_array_equal(offline.read_idx(str(path)), [7, 0, 255])


@pytest.mark.parametrize("content,match", [
    (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "not an idx file"),
    (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "unknown idx element type"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated inside its header"),
    (bytes([0, 0, 8, 1, 0, 0, 0, 4, 5, 6]), "truncated or corrupt"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, content, match):
  path = tmp_path / "bad-idx1-ubyte"
  path.write_bytes(content)
  with pytest.raises(ValueError, match=match):
    offline.read_idx(str(path))


def test_read_idx_bad_gzip(tmp_path):
  path = tmp_path / "bad-idx1-ubyte.gz"
  path.write_bytes(b"not gzip at all")
  with pytest.raises(ValueError, match="Could not read the idx file"):
    offline.read_idx(str(path))


def _write_mnist_folder(folder, gz):
  rng = np.random.default_rng(1)
  arrays = {
      "train-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28)),
      "train-labels-idx1-ubyte": rng.integers(0, 10, (12,)),
      "t10k-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
      "t10k-labels-idx1-ubyte": rng.integers(0, 10, (5,)),
  }
  for name, array in arrays.items():
    write_idx(os.path.join(folder, name + (".gz" if gz else "")),
              array.astype(np.uint8), 0x08)
  return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_source(tmp_path, gz):
  arrays = _write_mnist_folder(str(tmp_path), gz)

  def make(seed, process_index, process_count, image_size=28):
    return data.build(make_config(dataset="mnist_idx", data_dir=str(tmp_path),
                                  image_size=image_size, batch_size=4,
                                  seed=seed),
                      process_index=process_index, process_count=process_count)

  source = check_source_contract(make, (28, 28, 1), has_label=True)
  test = list(source.test_batches(2))
  np.testing.assert_array_equal(
      np.concatenate([b["image"] for b in test])[..., 0],
      arrays["t10k-images-idx3-ubyte"].astype(np.float32) / 255)
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in test]),
                                arrays["t10k-labels-idx1-ubyte"])
  # One epoch (12 = 3 batches of 4) is exactly the training set.
  epoch = take(source.train_batches(), 3)
  np.testing.assert_array_equal(
      as_uint8_rows(np.concatenate([b["image"] for b in epoch])),
      as_uint8_rows(arrays["train-images-idx3-ubyte"][..., None] / 255))
  resized = make(0, 0, 1, image_size=32)
  assert next(resized.train_batches())["image"].shape == (4, 32, 32, 1)


def test_mnist_idx_missing_files_and_data_dir(tmp_path):
  with pytest.raises(ValueError, match="--config.data_dir=<folder"):
    data.build(make_config(dataset="mnist_idx", data_dir=""))
  write_idx(str(tmp_path / "train-images-idx3-ubyte"),
            np.zeros((2, 28, 28), np.uint8), 0x08)
  with pytest.raises(ValueError) as error:
    data.build(make_config(dataset="mnist_idx", data_dir=str(tmp_path)))
  message = str(error.value)
  assert "t10k-images-idx3-ubyte" in message and str(tmp_path) in message
  assert "train-images-idx3-ubyte," not in message  # that one was found
  assert "--config.dataset=digits" in message


# --- prefetch ---------------------------------------------------------------


def test_prefetch_keeps_order_and_applies_put():
  out = list(data.prefetch(iter(range(10)), size=3, put=lambda x: x * x))
  assert out == [x * x for x in range(10)]


def test_prefetch_default_put_is_device_put():
  batches = [{"image": np.full((2, 3), i, np.float32)} for i in range(4)]
  out = list(data.prefetch(batches, size=2))
  assert all(isinstance(b["image"], jax.Array) for b in out)
  np.testing.assert_array_equal(np.asarray(out[3]["image"]),
                                batches[3]["image"])


def test_prefetch_reraises_producer_error_in_order():
  def items():
    yield 1
    yield 2
    raise RuntimeError("broken input")

  prefetcher = data.prefetch(items(), size=2, put=lambda x: x)
  assert next(prefetcher) == 1 and next(prefetcher) == 2
  with pytest.raises(RuntimeError, match="broken input"):
    next(prefetcher)


def test_prefetch_close_stops_an_infinite_producer():
  produced = []
  source = _digits_source(0, 0, 1)
  with data.prefetch(source.train_batches(), size=2,
                     put=lambda b: produced.append(1) or b) as prefetcher:
    first = take(prefetcher, 3)
  prefetcher._thread.join(timeout=5)
  assert not prefetcher._thread.is_alive()
  assert len(produced) <= 3 + 2 + 1  # at most `size` ahead (+1 in flight)
  assert_batches_equal(first, take(source.train_batches(), 3))


def test_keep_labels_selects_classes_and_explains_mistakes():
  full = data.build(make_config())
  kept = data.build(make_config(keep_labels=(2, 3, 8)))
  train_labels = np.concatenate([b["label"] for b in kept.train_subset_batches(10**6)])
  test_labels = np.concatenate([b["label"] for b in kept.test_batches(100)])
  assert set(train_labels) == set(test_labels) == {2, 3, 8}
  all_train = np.concatenate([b["label"] for b in full.train_subset_batches(10**6)])
  assert kept.num_train_examples == np.isin(all_train, (2, 3, 8)).sum()
  with pytest.raises(ValueError, match="has no labels"):
    data.build(make_config(dataset="synthetic", keep_labels=(1,)))
  with pytest.raises(ValueError, match="keeps no example"):
    data.build(make_config(keep_labels=(11,)))
