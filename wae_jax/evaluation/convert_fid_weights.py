"""Convert published FID Inception weights to the .npz that wae_jax loads.

Usage, once, on weights you downloaded yourself and trust:

  python -m wae_jax.evaluation.convert_fid_weights <in> inception_v3_fid.npz

<in> is one of
  * jax-fid's inception_v3_weights_fid.pickle (the `ckpt_path` of
    https://github.com/matthias-wright/jax-fid's jax_fid/inception.py), read
    by an unpickler that builds numpy arrays, dicts and lists and refuses any
    other object (so a crafted pickle cannot call a function);
  * pytorch-fid's pt_inception-2015-12-05-6726825d.pth
    (https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/),
    read with torch.load(weights_only=True) (needs torch on the converting
    machine only). A name ending in -<hex>.pth (torch.hub's convention) must
    match the first digits of the file's SHA-256.

The output is a reproducible .npz of float32 arrays (see
inception.save_variables); the command prints its SHA-256. Then set
WAE_JAX_FID_WEIGHTS=/path/to/inception_v3_fid.npz.

Mapping from pytorch-fid, per BasicConv2d `<block>[.<branch>]`:
  <p>.conv.weight (out, in, kh, kw)  -> <p>/conv/kernel (kh, kw, in, out)
  <p>.bn.weight / .bn.bias           -> <p>/bn/scale / <p>/bn/bias
  <p>.bn.running_mean / running_var  -> <p>/bn/mean / <p>/bn/var
The classifier (fc.*) and num_batches_tracked are dropped (pool3 only).
"""

import os
import pickle
import re
import sys
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np

from wae_jax import cli
from wae_jax.evaluation import inception

_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean",
             "running_var": "var"}
# torch.hub names a file <name>-<first hex digits of its SHA-256>.<ext>.
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.pth$")
# What a pickle of nested dicts of numpy arrays refers to (numpy 1.x and 2.x).
_ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
})


def torch_state_dict_to_fid_tree(
    state_dict: Mapping[str, np.ndarray]) -> Dict[str, Any]:
  """pytorch-fid state dict (numpy values) -> jax-fid's nested tree.

  Args:
    state_dict: {'Mixed_5b.branch1x1.conv.weight': array, ...}.

  Returns:
    {'Mixed_5b': {'branch1x1': {'conv': {'kernel'}, 'bn': {...}}}, ...},
    float32 numpy leaves.
  """
  tree: Dict[str, Any] = {}
  for name, value in state_dict.items():
    *module_path, layer, field = name.split(".")
    if not module_path or module_path[0] == "fc" or field == "num_batches_tracked":
      continue
    if layer == "conv" and field == "weight":
      leaf_name, array = "kernel", np.transpose(np.asarray(value), (2, 3, 1, 0))
    elif layer == "bn" and field in _BN_NAMES:
      leaf_name, array = _BN_NAMES[field], np.asarray(value)
    else:
      raise cli.UserError(
          f"Unexpected entry {name!r} in the state dict; pass pytorch-fid's "
          "pt_inception-2015-12-05 weights.")
    node = tree
    for key in module_path + [layer]:
      node = node.setdefault(key, {})
    node[leaf_name] = array.astype(np.float32)
  return tree


class _ArrayUnpickler(pickle.Unpickler):
  """Unpickles numpy arrays in dicts and lists; refuses every other global."""

  def find_class(self, module: str, name: str):
    if (module, name) not in _ARRAY_GLOBALS:
      raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not part of "
                                   "a tree of numpy arrays")
    return super().find_class(module, name)


def read_array_pickle(path: str) -> Dict[str, Any]:
  """jax-fid's pickle as a nested dict of arrays; nothing in it is called."""
  try:
    with open(path, "rb") as f:
      tree = _ArrayUnpickler(f).load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
    raise cli.UserError(
        f"{path} is not jax-fid's inception_v3_weights_fid.pickle "
        f"({cli.one_line(error)}); refused without running anything.") from error
  if not isinstance(tree, dict):
    raise cli.UserError(f"{path} holds a {type(tree).__name__}, not jax-fid's dict of "
                        "weights; pass inception_v3_weights_fid.pickle.")
  return tree


def read_torch_state_dict(path: str) -> Dict[str, Any]:
  """pytorch-fid's .pth as a jax-fid tree (torch's weights-only loader)."""
  digest = inception.file_sha256(path)
  match = _HASH_IN_NAME.search(os.path.basename(path))
  if match and not digest.startswith(match.group(1)):
    raise cli.UserError(
        f"{path}: its SHA-256 {digest} does not start with {match.group(1)} as its name "
        "says; the download is damaged or not pytorch-fid's, fetch it again.")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise cli.UserError(
        "Converting a .pth needs torch (pip install torch) on the converting machine; or "
        "convert jax-fid's inception_v3_weights_fid.pickle instead.") from error
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as error:  # pylint: disable=broad-except
    raise cli.UserError(f"{path} is not a torch state dict of tensors "
                        f"({cli.one_line(error)}).") from error
  return torch_state_dict_to_fid_tree(
      {name: tensor.numpy() for name, tensor in state_dict.items()})


def convert(in_path: str, out_path: str) -> str:
  """Reads jax-fid's pickle or pytorch-fid's .pth, writes the .npz, checks it loads.

  Returns:
    The SHA-256 of the written .npz.
  """
  if not os.path.isfile(in_path):
    raise cli.UserError(f"{in_path} does not exist; pass the downloaded weights file.")
  if not out_path.endswith(inception.WEIGHTS_SUFFIX):
    raise cli.UserError(f"{out_path!r}: the output must be a .npz "
                        f"(e.g. inception_v3_fid.npz).")
  if in_path.endswith(".pth"):
    tree = read_torch_state_dict(in_path)
  elif in_path.endswith((".pickle", ".pkl")):
    tree = read_array_pickle(in_path)
  else:
    raise cli.UserError(f"{in_path}: convert jax-fid's .pickle or pytorch-fid's .pth.")
  variables = inception.load_variables_from_tree(tree, source=in_path)
  digest = inception.save_variables(out_path, variables)
  inception.load_variables(out_path)
  return digest


def main(argv: Sequence[str]) -> Optional[int]:
  if any(arg in ("-h", "--help") for arg in argv):
    print(__doc__)
    return 0
  if len(argv) != 2:
    raise cli.UserError(
        "expected two arguments, <inception_v3_weights_fid.pickle or "
        "pt_inception-2015-12-05-6726825d.pth> <out.npz>; see python -m "
        "wae_jax.evaluation.convert_fid_weights --help.")
  digest = convert(argv[0], argv[1])
  print(f"Wrote {argv[1]} (sha256 {digest}); set {inception.WEIGHTS_ENV_VAR}={argv[1]}")
  return 0


if __name__ == "__main__":
  sys.exit(cli.run(main))
