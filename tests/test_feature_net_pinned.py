"""The committed feature nets of fd_<dataset>_classifier: their files, fingerprints and use."""

import hashlib
import os
import shutil

import numpy as np
import pytest

from wae_jax import data
from wae_jax.evaluation import feature_net
from configs import default

PINNED = ("digits_8x8x1.npz", "mnist_28x28x1.npz")


def independent_sha256(path: str) -> str:
  """The fingerprint re-derived from the raw archive with hashlib: every parameter's
  name, dtype, shape and little-endian float32 bytes, in sorted name order."""
  digest = hashlib.sha256()
  with np.load(path, allow_pickle=False) as archive:
    for name in sorted(n for n in archive.files if not n.startswith("__")):
      array = np.ascontiguousarray(archive[name].astype("<f4"))
      digest.update(f"{name}|<f4|{list(array.shape)}|".encode())
      digest.update(array.tobytes())
  return digest.hexdigest()


@pytest.mark.parametrize("file_name", PINNED)
def test_committed_net_matches_its_fingerprint(file_name):
  path = os.path.join(feature_net.PINNED_DIR, file_name)
  assert os.path.getsize(path) < 5 * 2 ** 20
  with np.load(path, allow_pickle=False) as archive:
    stored = archive["__sha256__"].item().decode()
    accuracy = float(archive["__test_accuracy__"])
    assert all(archive[n].dtype == np.float32 for n in archive.files if not n.startswith("__"))
  assert stored == independent_sha256(path)
  assert accuracy > 0.97  # MNIST 0.976, digits 0.993 when trained
  params, _, _ = feature_net._load(path)  # pylint: disable=protected-access
  assert feature_net.fingerprint(params) == stored


def test_damaged_net_is_refused(tmp_path):
  path = os.path.join(feature_net.PINNED_DIR, "digits_8x8x1.npz")
  with np.load(path, allow_pickle=False) as archive:
    arrays = {n: archive[n] for n in archive.files}
  weight = next(n for n in arrays if n.endswith("kernel"))
  arrays[weight] = arrays[weight].copy()
  arrays[weight].flat[0] += 1e-3
  damaged = str(tmp_path / "digits_8x8x1.npz")
  np.savez(damaged, **arrays)
  with pytest.raises(ValueError, match="does not match its stored SHA-256"):
    feature_net._load(damaged)  # pylint: disable=protected-access


def test_digits_use_the_pinned_net_and_name_it(tmp_path):
  config = default.base_config()
  config.evaluation.cache_dir = str(tmp_path)
  net = feature_net.load_or_train(data.build(config), config)
  assert net.pinned and net.path == os.path.join(feature_net.PINNED_DIR, "digits_8x8x1.npz")
  assert net.sha256 == independent_sha256(net.path)
  assert net.sha256 in net.describe() and "pinned" in net.describe()
  assert not os.listdir(tmp_path)  # nothing trained, nothing cached
  # The pinned net's own accuracy on the test split, recomputed, is the stored one.
  assert feature_net.accuracy_on_test(net, data.build(config)) == pytest.approx(
      net.test_accuracy, abs=1e-12)


def test_pinned_nets_cover_only_their_datasets_and_shapes():
  assert feature_net.pinned_path("mnist_idx", (28, 28, 1)).endswith("mnist_28x28x1.npz")
  assert feature_net.pinned_path("mnist", (28, 28, 1)).endswith("mnist_28x28x1.npz")
  assert feature_net.pinned_path("digits", (16, 16, 1)) is None  # other sizes train on first use
  assert feature_net.pinned_path("fashion_mnist", (28, 28, 1)) is None


def test_save_and_load_round_trip(tmp_path):
  rng = np.random.default_rng(0)
  params = {"Dense_0": {"kernel": rng.standard_normal((4, 3)).astype(np.float32),
                        "bias": np.zeros(3, np.float32)}}
  path = str(tmp_path / "net.npz")
  feature_net.save(path, params, num_classes=3, test_accuracy=0.5)
  loaded, num_classes, accuracy = feature_net._load(path)  # pylint: disable=protected-access
  assert (num_classes, accuracy) == (3, 0.5)
  np.testing.assert_array_equal(loaded["Dense_0"]["kernel"], params["Dense_0"]["kernel"])
  assert feature_net.fingerprint(loaded) == independent_sha256(path)
  shutil.rmtree(tmp_path)
