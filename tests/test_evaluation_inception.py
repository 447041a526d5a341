"""The FID InceptionV3: shapes, determinism, the torch-style resize, weight
files (round trip, conversion from pytorch-fid's names) and the
missing-weights message. No real weights in CI: random ones."""

import hashlib
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wae_jax.evaluation import convert_fid_weights
from wae_jax.evaluation import inception


@pytest.fixture(scope="module")
def random_variables():
  return inception.random_variables(seed=0)


def test_shapes_by_eval_shape():
  out = jax.eval_shape(
      lambda x: inception.InceptionV3Pool3().init_with_output(jax.random.key(0), x)[0],
      jnp.zeros((3, 299, 299, 3)))
  assert out.shape == (3, inception.FEATURE_DIM)
  shapes = inception.variable_shapes()
  params = shapes["params"]
  # Spot checks against the FID graph (pytorch-fid's FIDInception blocks).
  assert params["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)
  assert params["Mixed_5b"]["branch_pool"]["conv"]["kernel"].shape == (1, 1, 192, 32)
  assert params["Mixed_6e"]["branch7x7_2"]["conv"]["kernel"].shape == (1, 7, 192, 192)
  assert params["Mixed_7c"]["branch3x3dbl_3b"]["conv"]["kernel"].shape == (3, 1, 384, 384)
  assert set(shapes["batch_stats"]["Mixed_7b"]["branch1x1"]["bn"]) == {"mean", "var"}
  num_params = sum(x.size for x in jax.tree_util.tree_leaves(params))
  # torchvision's 27.16M minus fc (2,049,000) and AuxLogits (3,326,696) ...
  # minus the 2 * 2,048... of nothing else: pool3 net has 21,785,568.
  assert num_params == 21_785_568


def test_pipeline_resizes_to_299():
  out = jax.eval_shape(lambda x: inception.preprocess(x), jnp.zeros((2, 28, 28, 1)))
  assert out.shape == (2, 299, 299, 3)
  features = jax.eval_shape(inception._features, inception.variable_shapes(),
                            jnp.zeros((2, 28, 28, 1)))
  assert features.shape == (2, inception.FEATURE_DIM)


@pytest.mark.slow
def test_forward_is_deterministic(random_variables):
  # 75x75 is the smallest input the architecture takes (pool3 is then 1x1);
  # the 299 pipeline is checked by shape above, to keep the test fast.
  extract = inception.InceptionFeatures(variables=random_variables, resize=False)
  images = np.random.default_rng(0).uniform(size=(2, 75, 75, 1)).astype(np.float32)
  first = extract(images)
  assert first.shape == (2, inception.FEATURE_DIM)
  assert np.all(np.isfinite(first)) and np.all(first >= 0)  # mean of ReLUs
  assert np.std(first) > 0
  np.testing.assert_array_equal(first, extract(images))
  # Greyscale is repeated to RGB.
  np.testing.assert_allclose(extract(np.repeat(images, 3, -1)), first, rtol=1e-5, atol=1e-6)


def test_avg_pool_excludes_padding():
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)
  pooled = inception.avg_pool_exclude_padding(x)
  assert float(pooled[0, 0, 0, 0]) == pytest.approx(np.mean([0, 1, 4, 5]))
  assert float(pooled[0, 1, 1, 0]) == pytest.approx(np.mean([0, 1, 2, 4, 5, 6, 8, 9, 10]))


def _torch_bilinear_1d_weights(in_size, out_size):
  """torch F.interpolate(bilinear, align_corners=False) as a matrix (out, in)."""
  matrix = np.zeros((out_size, in_size))
  scale = in_size / out_size
  for dst in range(out_size):
    src = max((dst + 0.5) * scale - 0.5, 0.0)
    i0 = min(int(np.floor(src)), in_size - 1)
    i1 = min(i0 + 1, in_size - 1)
    lam = src - i0
    matrix[dst, i0] += 1 - lam
    matrix[dst, i1] += lam
  return matrix


@pytest.mark.parametrize("in_size,out_size", [(8, 29), (28, 299), (40, 17)])
def test_resize_matches_torch_bilinear(in_size, out_size):
  images = np.random.default_rng(1).uniform(size=(2, in_size, in_size, 3)).astype(np.float32)
  w = _torch_bilinear_1d_weights(in_size, out_size)
  expected = np.einsum("ph,qw,nhwc->npqc", w, w, images.astype(np.float64))
  np.testing.assert_allclose(inception.resize_bilinear(images, out_size), expected,
                             atol=1e-5)


@pytest.mark.slow
def test_weights_round_trip_through_a_file(tmp_path, random_variables):
  path = str(tmp_path / "weights.npz")
  digest = inception.save_variables(path, random_variables)
  assert digest == hashlib.sha256(open(path, "rb").read()).hexdigest()
  loaded = inception.load_variables(path)
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, random_variables)
  images = np.random.default_rng(2).uniform(size=(2, 75, 75, 3)).astype(np.float32)
  direct = inception.InceptionFeatures(variables=random_variables, resize=False)(images)
  from_file = inception.InceptionFeatures(path=path, resize=False)(images)
  np.testing.assert_array_equal(from_file, direct)


def test_npz_format_env_var_and_wrong_file(tmp_path, monkeypatch, random_variables):
  path = str(tmp_path / "weights.npz")
  inception.save_variables(path, random_variables)
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, path)
  assert inception.resolve_weights_path() == path
  loaded = inception.load_variables()
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, random_variables)
  tree = inception.variables_to_fid_tree(random_variables)
  tree["Mixed_6a"]["branch3x3"]["conv"]["kernel"] = np.zeros((3, 3, 288, 16))
  with pytest.raises(ValueError, match="Mixed_6a/branch3x3/conv/kernel has shape"):
    inception.load_variables_from_tree(tree)
  del tree["Mixed_7c"]
  with pytest.raises(ValueError, match="no entry Mixed_7c"):
    inception.load_variables_from_tree(tree)


def test_the_npz_is_reproducible(tmp_path, random_variables):
  """The same weights give the same bytes (no timestamps), other weights others:
  so one published SHA-256 identifies a conversion."""
  first = inception.save_variables(str(tmp_path / "a.npz"), random_variables)
  again = inception.save_variables(str(tmp_path / "b.npz"), random_variables)
  assert first == again
  changed = jax.tree_util.tree_map(np.copy, random_variables)
  changed["params"]["Mixed_7c"]["branch1x1"]["conv"]["kernel"][0, 0, 0, 0] += 1.0
  assert inception.save_variables(str(tmp_path / "c.npz"), changed) != first
  assert sorted(os.listdir(tmp_path)) == ["a.npz", "b.npz", "c.npz"]  # no temporaries left


class _CreatesMarker:
  """Unpickling this runs os.system (what a crafted weights file would do)."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def _crafted_pickle(path, marker):
  with open(path, "wb") as f:
    pickle.dump({"Conv2d_1a_3x3": _CreatesMarker(marker)}, f)


@pytest.mark.parametrize("name", ["weights.pickle", "weights.npz"])
def test_a_crafted_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch, name):
  """Named by the environment, a config or a path, under a .pickle or a .npz
  name: one UserError, and the marker the pickle would create never appears."""
  marker, weights = tmp_path / "marker", tmp_path / name
  _crafted_pickle(weights, marker)
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(weights))
  for call in (inception.load_variables, lambda: inception.InceptionFeatures(path=str(weights))):
    with pytest.raises(inception.cli.UserError, match="npz") as error:
      call()
    assert "\n" not in str(error.value)
  assert not marker.exists()


@pytest.mark.slow
def test_the_converter_refuses_a_crafted_pickle(tmp_path):
  """convert_fid_weights reads pickles only as trees of arrays: exit 2, one line."""
  marker, weights = tmp_path / "marker", tmp_path / "inception_v3_weights_fid.pickle"
  _crafted_pickle(weights, marker)
  out = tmp_path / "out.npz"
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.evaluation.convert_fid_weights", str(weights), str(out)],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 2, result.stderr
  assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
  assert "posix.system" in result.stderr or "os.system" in result.stderr
  assert not marker.exists() and not out.exists()


@pytest.mark.slow
def test_the_converter_reads_jax_fids_pickle_of_arrays(tmp_path, random_variables):
  """A pickle of nested dicts of numpy arrays (jax-fid's layout, with its fc head)
  converts to the .npz of the same values."""
  tree = inception.variables_to_fid_tree(random_variables)
  tree["fc"] = {"kernel": np.zeros((2048, 1008), np.float32)}
  with open(tmp_path / "w.pickle", "wb") as f:
    pickle.dump(tree, f)
  digest = convert_fid_weights.convert(str(tmp_path / "w.pickle"), str(tmp_path / "w.npz"))
  assert digest == inception.save_variables(str(tmp_path / "direct.npz"), random_variables)
  loaded = inception.load_variables(str(tmp_path / "w.npz"))
  jax.tree_util.tree_map(np.testing.assert_array_equal, loaded, random_variables)


def test_missing_weights_message(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.WEIGHTS_ENV_VAR, raising=False)
  with pytest.raises(ValueError) as error:
    inception.resolve_weights_path()
  message = str(error.value)
  assert "inception_v3_weights_fid.pickle" in message and "convert_fid_weights" in message
  assert "https://github.com/matthias-wright/jax-fid" in message
  assert inception.WEIGHTS_ENV_VAR in message and "config.evaluation.fid_weights" in message
  assert message.count(". ") == 0  # one sentence
  assert not inception.fid_weights_available()
  monkeypatch.setenv(inception.WEIGHTS_ENV_VAR, str(tmp_path / "nope.npz"))
  with pytest.raises(ValueError, match="nope.npz.*does not exist"):
    inception.InceptionFeatures()


def test_pytorch_state_dict_conversion(random_variables):
  # Build pytorch-fid's state dict (OIHW kernels, torch BN names) from the
  # flax variables, convert it back, and compare.
  state_dict = {}
  def add(path, leaf):
    keys = [p.key for p in path]
    collection, module, field = keys[0], ".".join(keys[1:-1]), keys[-1]
    if field == "kernel":
      state_dict[f"{module}.weight"] = np.transpose(leaf, (3, 2, 0, 1))
    else:
      torch_name = {"scale": "weight", "bias": "bias", "mean": "running_mean",
                    "var": "running_var"}[field]
      state_dict[f"{module}.{torch_name}"] = leaf
      if field == "mean":
        state_dict[f"{module}.num_batches_tracked"] = np.array(0)
    del collection
  jax.tree_util.tree_map_with_path(add, random_variables)
  state_dict["fc.weight"] = np.zeros((1008, 2048), np.float32)
  state_dict["fc.bias"] = np.zeros((1008,), np.float32)
  assert "Mixed_5b.branch1x1.conv.weight" in state_dict
  tree = convert_fid_weights.torch_state_dict_to_fid_tree(state_dict)
  restored = inception.load_variables_from_tree(tree)
  jax.tree_util.tree_map(np.testing.assert_array_equal, restored, random_variables)
