"""The FID InceptionV3 (pool3, 2048-d) in flax.linen, with local-file weights.

Architecture: the 2015-12-05 TensorFlow graph that TTUR's FID, pytorch-fid
and jax-fid use. It differs from torchvision's InceptionV3 in the blocks that
pytorch-fid patches (FIDInceptionA / C / E_1 / E_2):
  * Mixed_5b-d (A), Mixed_6b-e (C) and Mixed_7b (E_1): the 3x3 average pool of
    the pool branch ignores the zero padding (TF's count_include_pad=False);
  * Mixed_7c (E_2): that pool is a 3x3 *max* pool (stride 1, padding 1).
Every conv is conv (no bias) -> BatchNorm(eps=1e-3, running statistics) ->
ReLU. The output is the spatial mean after Mixed_7c ("pool3").

Input pipeline (as pytorch-fid): images in [0, 1], (N, H, W, C) with C in
{1, 3} (greyscale is repeated to 3 channels), resized to 299x299 bilinearly
with half-pixel centres and no antialiasing (torch's
`F.interpolate(mode='bilinear', align_corners=False)`), then scaled to [-1, 1].

Weights (nothing is downloaded at run time, nothing is unpickled). The file is
found from, in order: an explicit path, `config.evaluation.fid_weights`, the
environment variable WAE_JAX_FID_WEIGHTS. It must be a `.npz` of float32
arrays, jax-fid's tree {block: {[branch:] {'conv': {'kernel' (kh, kw, in,
out)}, 'bn': {'scale', 'bias', 'mean', 'var'}}}} flattened with '/'-joined
keys ("Mixed_5b/branch1x1/conv/kernel"), read with numpy's
`allow_pickle=False`: a file that a workdir or a config names cannot run code.
The loader checks every entry's name and shape, and records the file's
SHA-256 next to each FID it computes (eval.jsonl's "feature_net").

The published weights come as pickles, which can run code when read; convert
one once, by explicit command, with

  python -m wae_jax.evaluation.convert_fid_weights <in> inception_v3_fid.npz

where <in> is jax-fid's `inception_v3_weights_fid.pickle` (the `ckpt_path`
of https://github.com/matthias-wright/jax-fid's jax_fid/inception.py) or
pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (its GitHub release
"fid_weights"; needs torch on the converting machine only). The converter
writes the same bytes for the same weights (see `save_variables`).
"""

import functools
import hashlib
import os
import zipfile
from typing import Any, Callable, Dict, Optional

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from wae_jax import cli

FEATURE_NET_NAME = "inception_v3_fid_2015-12-05"
WEIGHTS_ENV_VAR = "WAE_JAX_FID_WEIGHTS"
INPUT_SIZE = 299
FEATURE_DIM = 2048

WEIGHTS_SUFFIX = ".npz"
CONVERT_COMMAND = "python -m wae_jax.evaluation.convert_fid_weights"
MISSING_WEIGHTS_MESSAGE = (
    "FID needs the InceptionV3 weights file as a .npz, converted once from jax-fid's "
    "inception_v3_weights_fid.pickle (linked from "
    "https://github.com/matthias-wright/jax-fid) or pytorch-fid's "
    "pt_inception-2015-12-05-6726825d.pth with `" + CONVERT_COMMAND +
    " <in> inception_v3_fid.npz`, and {what}: point the environment variable " +
    WEIGHTS_ENV_VAR + " or config.evaluation.fid_weights at the .npz.")


class WeightsFormatError(cli.UserError):
  """A named FID weights file is not a .npz of arrays (e.g. a pickle)."""


def _config_weights_path(config) -> str:
  if config is None:
    return ""
  evaluation = config.get("evaluation", None)
  if evaluation is None:
    return ""
  return evaluation.get("fid_weights", "") or ""


def resolve_weights_path(path: Optional[str] = None, config=None) -> str:
  """The FID weights file from `path`, the config, or $WAE_JAX_FID_WEIGHTS.

  Raises:
    ValueError: (one sentence: which file, where to get it, where to put it)
      when no existing file is named.
  """
  candidates = [("the path passed in", path),
                ("config.evaluation.fid_weights", _config_weights_path(config)),
                (WEIGHTS_ENV_VAR, os.environ.get(WEIGHTS_ENV_VAR, ""))]
  for source, candidate in candidates:
    if candidate:
      candidate = os.path.expanduser(candidate)
      if not os.path.isfile(candidate):
        raise cli.UserError(MISSING_WEIGHTS_MESSAGE.format(
            what=f"{source} names {candidate!r}, which does not exist"))
      if not candidate.endswith(WEIGHTS_SUFFIX):
        raise WeightsFormatError(
            f"{source} names {candidate!r}, which is not a .npz; wae_jax never unpickles "
            f"weights files (they can run code), so convert it once with `{CONVERT_COMMAND} "
            f"{candidate} inception_v3_fid.npz` if you trust it and name the .npz instead.")
      return candidate
  raise cli.UserError(MISSING_WEIGHTS_MESSAGE.format(what="none was given"))


def fid_weights_available(path: Optional[str] = None, config=None) -> bool:
  """Whether `resolve_weights_path` would find an existing file.

  Raises:
    WeightsFormatError: the file named is not a .npz (a named file of the
      wrong kind is a mistake to report, not a reason to skip FID).
  """
  try:
    resolve_weights_path(path, config)
    return True
  except WeightsFormatError:
    raise
  except ValueError:
    return False


# ----------------------------------------------------------------- layers


def avg_pool_exclude_padding(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool, padding 1, zeros not counted (TF / FID)."""
  padding = ((0, 0), (1, 1), (1, 1), (0, 0))
  window = (1, 3, 3, 1)
  sums = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), padding)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, (1, 1, 1, 1),
                                 padding)
  return sums / counts


def max_pool_same(x: jax.Array) -> jax.Array:
  """3x3 stride-1 max pool with padding 1 (Mixed_7c of the FID graph)."""
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm(eps=1e-3, running statistics) -> ReLU."""

  features: int
  kernel_size: tuple = (1, 1)
  strides: tuple = (1, 1)
  padding: Any = "VALID"

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides,
                padding=self.padding, use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


class InceptionA(nn.Module):
  """Mixed_5b-d (pytorch-fid's FIDInceptionA)."""

  pool_features: int

  @nn.compact
  def __call__(self, x):
    branch1x1 = BasicConv2d(64, name="branch1x1")(x)
    branch5x5 = BasicConv2d(48, name="branch5x5_1")(x)
    branch5x5 = BasicConv2d(64, (5, 5), padding=((2, 2), (2, 2)),
                            name="branch5x5_2")(branch5x5)
    branch3x3dbl = BasicConv2d(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=((1, 1), (1, 1)),
                               name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=((1, 1), (1, 1)),
                               name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = BasicConv2d(self.pool_features, name="branch_pool")(
        avg_pool_exclude_padding(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], -1)


class InceptionB(nn.Module):
  """Mixed_6a (unpatched)."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv2d(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    branch3x3dbl = BasicConv2d(64, name="branch3x3dbl_1")(x)
    branch3x3dbl = BasicConv2d(96, (3, 3), padding=((1, 1), (1, 1)),
                               name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = BasicConv2d(96, (3, 3), strides=(2, 2),
                               name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([branch3x3, branch3x3dbl, branch_pool], -1)


class InceptionC(nn.Module):
  """Mixed_6b-e (pytorch-fid's FIDInceptionC)."""

  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    row, col = ((0, 0), (3, 3)), ((3, 3), (0, 0))
    branch1x1 = BasicConv2d(192, name="branch1x1")(x)
    branch7x7 = BasicConv2d(c7, name="branch7x7_1")(x)
    branch7x7 = BasicConv2d(c7, (1, 7), padding=row, name="branch7x7_2")(branch7x7)
    branch7x7 = BasicConv2d(192, (7, 1), padding=col, name="branch7x7_3")(branch7x7)
    dbl = BasicConv2d(c7, name="branch7x7dbl_1")(x)
    dbl = BasicConv2d(c7, (7, 1), padding=col, name="branch7x7dbl_2")(dbl)
    dbl = BasicConv2d(c7, (1, 7), padding=row, name="branch7x7dbl_3")(dbl)
    dbl = BasicConv2d(c7, (7, 1), padding=col, name="branch7x7dbl_4")(dbl)
    dbl = BasicConv2d(192, (1, 7), padding=row, name="branch7x7dbl_5")(dbl)
    branch_pool = BasicConv2d(192, name="branch_pool")(avg_pool_exclude_padding(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], -1)


class InceptionD(nn.Module):
  """Mixed_7a (unpatched)."""

  @nn.compact
  def __call__(self, x):
    branch3x3 = BasicConv2d(192, name="branch3x3_1")(x)
    branch3x3 = BasicConv2d(320, (3, 3), strides=(2, 2),
                            name="branch3x3_2")(branch3x3)
    branch7x7x3 = BasicConv2d(192, name="branch7x7x3_1")(x)
    branch7x7x3 = BasicConv2d(192, (1, 7), padding=((0, 0), (3, 3)),
                              name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (7, 1), padding=((3, 3), (0, 0)),
                              name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = BasicConv2d(192, (3, 3), strides=(2, 2),
                              name="branch7x7x3_4")(branch7x7x3)
    branch_pool = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([branch3x3, branch7x7x3, branch_pool], -1)


class InceptionE(nn.Module):
  """Mixed_7b (FIDInceptionE_1: average pool) and Mixed_7c (E_2: max pool)."""

  pool: Callable[[jax.Array], jax.Array]

  @nn.compact
  def __call__(self, x):
    row, col = ((0, 0), (1, 1)), ((1, 1), (0, 0))
    branch1x1 = BasicConv2d(320, name="branch1x1")(x)
    branch3x3 = BasicConv2d(384, name="branch3x3_1")(x)
    branch3x3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=row, name="branch3x3_2a")(branch3x3),
        BasicConv2d(384, (3, 1), padding=col, name="branch3x3_2b")(branch3x3),
    ], -1)
    dbl = BasicConv2d(448, name="branch3x3dbl_1")(x)
    dbl = BasicConv2d(384, (3, 3), padding=((1, 1), (1, 1)),
                      name="branch3x3dbl_2")(dbl)
    dbl = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=row, name="branch3x3dbl_3a")(dbl),
        BasicConv2d(384, (3, 1), padding=col, name="branch3x3dbl_3b")(dbl),
    ], -1)
    branch_pool = BasicConv2d(192, name="branch_pool")(self.pool(x))
    return jnp.concatenate([branch1x1, branch3x3, dbl, branch_pool], -1)


class InceptionV3Pool3(nn.Module):
  """FID InceptionV3 up to pool3.

  __call__(x): x (N, H, W, 3) already in [-1, 1], H, W >= 75 (299 for FID)
  -> (N, 2048) pool3 features.
  """

  @nn.compact
  def __call__(self, x):
    x = BasicConv2d(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=((1, 1), (1, 1)), name="Conv2d_2b_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = BasicConv2d(80, name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(avg_pool_exclude_padding, name="Mixed_7b")(x)
    x = InceptionE(max_pool_same, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# ------------------------------------------------------ input preprocessing


def resize_bilinear(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
  """(N, H, W, C) -> (N, size, size, C) like torch bilinear, align_corners=False.

  Half-pixel centres, edge samples clamped, no antialiasing (pytorch-fid does
  not antialias when it downsamples either).
  """
  return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]),
                          method="bilinear", antialias=False)


def preprocess(images: jax.Array, resize: bool = True) -> jax.Array:
  """Images in [0, 1], (N, H, W, 1 or 3) -> network input in [-1, 1], 3 channels."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  if resize:
    images = resize_bilinear(images)
  return 2.0 * images - 1.0


# ----------------------------------------------------------------- weights


def variable_shapes(input_size: int = INPUT_SIZE) -> Dict[str, Any]:
  """The {'params', 'batch_stats'} tree of ShapeDtypeStructs (no compute)."""
  return jax.eval_shape(
      InceptionV3Pool3().init, jax.random.key(0),
      jnp.zeros((1, input_size, input_size, 3), jnp.float32))


def random_variables(seed: int = 0) -> Dict[str, Any]:
  """Random He-normal weights with identity BatchNorm, for tests and benchmarks.

  Features from these weights are deterministic but meaningless; FID needs
  the real file (see `load_variables`).
  """
  rng = np.random.RandomState(seed)
  shapes = variable_shapes(75)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def variables_to_fid_tree(variables: Dict[str, Any]) -> Dict[str, Any]:
  """flax {'params', 'batch_stats'} -> jax-fid's nested numpy tree."""
  tree: Dict[str, Any] = {}

  def merge(path, leaf):
    node = tree
    for entry in path[1:-1]:
      node = node.setdefault(entry.key, {})
    node[path[-1].key] = np.asarray(leaf, np.float32)

  jax.tree_util.tree_map_with_path(merge, dict(variables))
  return tree


# A fixed timestamp, so that the same weights always give the same file bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


def save_variables(path: str, variables: Dict[str, Any]) -> str:
  """Writes variables as a .npz of float32 arrays; returns the file's SHA-256.

  The archive is reproducible (sorted names, fixed timestamps, stored, no
  compression), so one set of weights has one SHA-256 whoever converts it.
  Written to a temporary name and renamed: a reader never sees half a file.
  """
  if not path.endswith(WEIGHTS_SUFFIX):
    raise cli.UserError(f"{path!r}: FID weights are written as a .npz; name the output "
                        f"file <name>{WEIGHTS_SUFFIX}.")
  flat = traverse_util.flatten_dict(variables_to_fid_tree(variables), sep="/")
  partial = f"{path}.tmp-{os.getpid()}"
  try:
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as archive:
      for name in sorted(flat):
        entry = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE_TIME)
        entry.external_attr = 0o644 << 16
        with archive.open(entry, "w", force_zip64=True) as f:
          np.lib.format.write_array(f, np.ascontiguousarray(flat[name], np.float32),
                                    allow_pickle=False)
    os.replace(partial, path)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
  return file_sha256(path)


def file_sha256(path: str) -> str:
  """The hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _read_fid_tree(path: str) -> Dict[str, Any]:
  """The nested tree of a .npz's arrays; arrays only (numpy's allow_pickle=False)."""
  tree: Dict[str, Any] = {}
  try:
    archive = np.load(path, allow_pickle=False)
    if not isinstance(archive, np.lib.npyio.NpzFile):
      raise ValueError("it holds a single array, not the named arrays of a .npz")
    with archive:
      for name in archive.files:
        node = tree
        *parents, leaf = name.split("/")
        for parent in parents:
          node = node.setdefault(parent, {})
        node[leaf] = archive[name]
  except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
    # Object arrays (pickles inside the .npz) raise ValueError: nothing ran.
    raise cli.UserError(
        f"FID weights file {path} is not a .npz of numeric arrays ({cli.one_line(error)}); "
        f"convert the weights again with `{CONVERT_COMMAND}`.") from error
  return tree


def load_variables_from_tree(fid_tree: Dict[str, Any],
                             source: str = "the weights") -> Dict[str, Any]:
  """jax-fid's nested tree -> flax {'params', 'batch_stats'}, shape-checked.

  Raises:
    ValueError: an entry is missing or has the wrong shape.
  """

  def take(path_in_tree, leaf):
    node = fid_tree
    keys = [entry.key for entry in path_in_tree[1:]]
    for key in keys:
      if not isinstance(node, dict) or key not in node:
        raise cli.UserError(
            f"FID weights {source} have no entry {'/'.join(keys)}; they must "
            "hold jax-fid's tree as converted by " + CONVERT_COMMAND + " (see "
            "wae_jax/evaluation/inception.py).")
      node = node[key]
    value = np.asarray(node, np.float32)
    if value.shape != leaf.shape:
      raise cli.UserError(
          f"FID weights {source}: {'/'.join(keys)} has shape {value.shape}, "
          f"expected {leaf.shape}; they are not the FID InceptionV3.")
    return value

  return jax.tree_util.tree_map_with_path(take, variable_shapes(75))


def load_variables(path: Optional[str] = None, config=None) -> Dict[str, Any]:
  """Read the FID Inception weights file into flax {'params', 'batch_stats'}.

  Args:
    path: the weights file; None: config.evaluation.fid_weights, then
      $WAE_JAX_FID_WEIGHTS.
    config: optional run config.

  Returns:
    Variables for `InceptionV3Pool3().apply`, numpy float32 leaves.

  Raises:
    ValueError: the file is missing, or lacks an entry / has a wrong shape.
  """
  path = resolve_weights_path(path, config)
  return load_variables_from_tree(_read_fid_tree(path), source=f"file {path}")


# --------------------------------------------------------- feature extractor


@functools.partial(jax.jit, static_argnames=("resize",))
def _features(variables, images, resize=True):
  return InceptionV3Pool3().apply(variables, preprocess(images, resize))


class InceptionFeatures:
  """Callable images -> pool3 features, with weights loaded once.

  Example:
    extract = InceptionFeatures(config=config)   # or path=...
    feats = extract(images)                      # (N, 2048) numpy float32
  """

  name = FEATURE_NET_NAME

  def __init__(self, path: Optional[str] = None, config=None,
               variables: Optional[Dict[str, Any]] = None, batch_size: int = 100,
               resize: bool = True):
    """Loads the weights (or takes `variables`, e.g. `random_variables()`).

    Args:
      path: weights file; see `load_variables`.
      config: optional run config (config.evaluation.fid_weights).
      variables: already loaded variables; skips the file.
      batch_size: images per device call.
      resize: resize inputs to 299x299 (False only for tests at small sizes).
    """
    if variables is None:
      self.weights_path = resolve_weights_path(path, config)
      self.weights_sha256 = file_sha256(self.weights_path)
      variables = load_variables(self.weights_path)
    else:
      self.weights_path = self.weights_sha256 = None
    self.variables = jax.device_put(variables)
    self.batch_size = batch_size
    self.resize = resize

  def __call__(self, images) -> np.ndarray:
    """images (N, H, W, 1 or 3) in [0, 1] -> (N, 2048) float32 features."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
      raise ValueError(
          f"Inception features need images of shape (N, H, W, 1 or 3), got "
          f"{images.shape}.")
    outputs = []
    for start in range(0, images.shape[0], self.batch_size):
      batch = images[start:start + self.batch_size]
      count = batch.shape[0]
      if count < self.batch_size and images.shape[0] > self.batch_size:
        # Pad the last batch so that one compiled shape serves every call.
        batch = np.concatenate(
            [batch, np.zeros((self.batch_size - count,) + batch.shape[1:],
                             batch.dtype)])
      outputs.append(np.asarray(
          _features(self.variables, batch, self.resize))[:count])
    if not outputs:
      return np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(outputs, axis=0)
