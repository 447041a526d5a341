"""Tests of the tfds sources with tfds.testing.mock_data (no download).

Under mock_data every split yields the same NUM_EXAMPLES deterministic random
examples, so the raw examples read through tfds are the reference that the
preprocessed batches are checked against.
"""

from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from test_data_offline import (as_uint8_rows, check_source_contract,
                               make_config, take)
from wae_jax import data
from wae_jax.data import tfds_source

NUM_EXAMPLES = 12  # 3 global batches of 4


@pytest.fixture(scope="module")
def mock_tfds():
  with tfds.testing.mock_data(num_examples=NUM_EXAMPLES):
    yield


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds_data"))


def raw_examples(builder_name):
  """The mock examples as tfds itself yields them: (images, labels or None)."""
  ds = tfds.builder(builder_name).as_dataset(split="train",
                                             shuffle_files=False)
  examples = list(tfds.as_numpy(ds))
  images = np.stack([e["image"] for e in examples])
  labels = (np.array([e["label"] for e in examples])
            if "label" in examples[0] else None)
  return images, labels


def to_unit(images_uint8):
  return images_uint8.astype(np.float32) / np.float32(255)


def reference_resize(images_uint8, size, crop=None):
  """Independent preprocessing: numpy centre crop, jax bilinear resize."""
  images = to_unit(images_uint8)
  if crop is not None:
    top = (images.shape[1] - crop) // 2
    left = (images.shape[2] - crop) // 2
    images = images[:, top:top + crop, left:left + crop]
  return np.asarray(jax.image.resize(
      images, (len(images), size, size, images.shape[3]), "linear",
      antialias=True))


def _maker(name, image_size, data_dir):
  def make(seed, process_index, process_count):
    return data.build(make_config(dataset=name, image_size=image_size,
                                  data_dir=data_dir, batch_size=4, seed=seed),
                      process_index=process_index, process_count=process_count,
                      download=True)  # mock_data makes the download a no-op
  return make


def _all_test_images(source):
  return np.concatenate([b["image"] for b in source.test_batches(5)])


@pytest.mark.slow
@pytest.mark.parametrize("name,image_shape", [("mnist", (28, 28, 1)),
                                              ("cifar10", (32, 32, 3))])
def test_native_size_is_exact(mock_tfds, data_dir, name, image_shape):
  del mock_tfds
  source = check_source_contract(_maker(name, image_shape[0], data_dir),
                                 image_shape, has_label=True)
  raw_images, raw_labels = raw_examples(name)
  assert source.num_train_examples == source.num_test_examples == NUM_EXAMPLES
  # The test split in its fixed order, exactly raw / 255, labels with them.
  np.testing.assert_array_equal(_all_test_images(source), to_unit(raw_images))
  np.testing.assert_array_equal(
      np.concatenate([b["label"] for b in source.test_batches(5)]), raw_labels)
  # One training epoch is the training split, each example once.
  epoch = np.concatenate([b["image"] for b in take(source.train_batches(), 3)])
  np.testing.assert_array_equal(as_uint8_rows(epoch),
                                as_uint8_rows(to_unit(raw_images)))


@pytest.mark.slow
def test_mnist_resized_to_32(mock_tfds, data_dir):
  del mock_tfds
  source = check_source_contract(_maker("mnist", 32, data_dir), (32, 32, 1),
                                 has_label=True)
  raw_images, _ = raw_examples("mnist")
  # tf and jax bilinear agree to float error; the cache rounds to 1/255.
  np.testing.assert_allclose(_all_test_images(source),
                             reference_resize(raw_images, 32),
                             atol=0.5 / 255 + 1e-4)


def test_celeb_a_crop_and_resize_to_64(mock_tfds, data_dir):
  del mock_tfds
  source = check_source_contract(_maker("celeb_a", 64, data_dir), (64, 64, 3),
                                 has_label=False)
  raw_images, _ = raw_examples("celeb_a")
  assert raw_images.shape[1:] == (218, 178, 3)
  expected = reference_resize(raw_images, 64, crop=140)
  np.testing.assert_allclose(_all_test_images(source), expected,
                             atol=0.5 / 255 + 1e-4)
  # The crop matters: a resize of the whole uncropped image is far off.
  uncropped = reference_resize(raw_images, 64)
  assert np.abs(_all_test_images(source) - uncropped).mean() > 0.05


def test_celeb_a_hq_uses_the_matching_tfds_resolution(mock_tfds, data_dir):
  del mock_tfds
  spec = tfds_source.dataset_spec("celeb_a_hq", 256)
  assert spec.builder_name == "celeb_a_hq/256"
  assert (spec.train_split, spec.test_split) == ("train[:27000]",
                                                 "train[27000:]")
  assert tfds_source.dataset_spec("celeb_a_hq", 100).builder_name == (
      "celeb_a_hq/128")
  source = _maker("celeb_a_hq", 256, data_dir)(0, 0, 1)
  batch = next(source.train_batches())
  assert batch["image"].shape == (4, 256, 256, 3) and "label" not in batch
  raw_images, _ = raw_examples("celeb_a_hq/256")
  np.testing.assert_array_equal(_all_test_images(source), to_unit(raw_images))


def test_second_build_reads_the_memory_mapped_cache(mock_tfds, data_dir):
  del mock_tfds
  make = _maker("cifar10", 32, data_dir)
  first = take(make(3, 0, 1).train_batches(5), 2)
  with mock.patch.object(tfds_source, "_preprocess_split",
                         side_effect=AssertionError("cache not used")):
    again = make(3, 0, 1)
    assert isinstance(again._train_images, np.memmap)
    for a, b in zip(first, take(again.train_batches(5), 2)):
      np.testing.assert_array_equal(a["image"], b["image"])


@pytest.mark.parametrize("name", ["mnist", "cifar10", "celeb_a"])
def test_unprepared_dataset_is_one_clear_sentence(tmp_path, name):
  with pytest.raises(tfds_source.DatasetNotPreparedError) as error:
    data.build(make_config(dataset=name, data_dir=str(tmp_path)),
               download=False)
  message = str(error.value)
  assert f"Dataset '{name}'" in message and str(tmp_path) in message
  assert f"tfds build {name}" in message
  assert "--config.dataset=digits works offline" in message
  assert "\n" not in message and isinstance(error.value, ValueError)


def test_unprepared_celeb_a_hq_names_the_manual_step(tmp_path):
  with pytest.raises(tfds_source.DatasetNotPreparedError) as error:
    data.build(make_config(dataset="celeb_a_hq", image_size=256,
                           data_dir=str(tmp_path)), download=False)
  message = str(error.value)
  assert "data256x256.tar" in message and "manual_dir" in message
  assert str(tmp_path / "downloads" / "manual") in message
  assert "tfds build celeb_a_hq/256" in message


def test_failed_download_is_chained_not_raw(tmp_path):
  failure = RuntimeError("connection refused")
  with mock.patch.object(tfds.core.DatasetBuilder, "download_and_prepare",
                         side_effect=failure):
    with pytest.raises(tfds_source.DatasetNotPreparedError,
                       match="could not be downloaded and prepared "
                       r"\(RuntimeError\)") as error:
      data.build(make_config(dataset="mnist", data_dir=str(tmp_path)), download=True)
  assert error.value.__cause__ is failure


def test_read_failure_is_chained_not_raw(mock_tfds, tmp_path):
  del mock_tfds
  failure = RuntimeError("corrupted record at offset 12\nlong tf traceback")
  with mock.patch.object(tfds_source, "_preprocess_split",
                         side_effect=failure):
    with pytest.raises(ValueError, match="Reading dataset 'mnist' .* failed "
                       r"\(RuntimeError: corrupted record at offset 12\)"
                       ) as error:
      data.build(make_config(dataset="mnist", data_dir=str(tmp_path)), download=True)
  assert error.value.__cause__ is failure and "\n" not in str(error.value)
