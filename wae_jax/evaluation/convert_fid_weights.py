"""Convert pytorch-fid's FID Inception weights to the file wae_jax loads.

Usage (torch is needed on the machine that converts, nowhere else):

  python -m wae_jax.evaluation.convert_fid_weights \
      pt_inception-2015-12-05-6726825d.pth inception_v3_weights_fid.pickle

The .pth is pytorch-fid's release asset
https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
(TF's 2015-12-05 Inception graph ported to torch). The output is jax-fid's
pickle layout (see wae_jax/evaluation/inception.py); an output name ending in
.npz writes the flattened .npz instead. Then set
WAE_JAX_FID_WEIGHTS=/path/to/inception_v3_weights_fid.pickle.

Mapping, per BasicConv2d `<block>[.<branch>]`:
  <p>.conv.weight (out, in, kh, kw)  -> <p>/conv/kernel (kh, kw, in, out)
  <p>.bn.weight / .bn.bias           -> <p>/bn/scale / <p>/bn/bias
  <p>.bn.running_mean / running_var  -> <p>/bn/mean / <p>/bn/var
The classifier (fc.*) and num_batches_tracked are dropped (pool3 only).
"""

import sys
from typing import Any, Dict, Mapping

import numpy as np

from wae_jax.evaluation import inception

_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean",
             "running_var": "var"}


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
      raise ValueError(
          f"Unexpected entry {name!r} in the state dict; pass pytorch-fid's "
          "pt_inception-2015-12-05 weights.")
    node = tree
    for key in module_path + [layer]:
      node = node.setdefault(key, {})
    node[leaf_name] = array.astype(np.float32)
  return tree


def convert(pth_path: str, out_path: str) -> None:
  """Read the .pth with torch, write the jax-fid tree, and check it loads."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as error:
    raise ValueError(
        "Converting a .pth needs torch (pip install torch) on the converting "
        "machine; or download jax-fid's inception_v3_weights_fid.pickle "
        "instead.") from error
  state_dict = torch.load(pth_path, map_location="cpu")
  tree = torch_state_dict_to_fid_tree(
      {name: tensor.numpy() for name, tensor in state_dict.items()})
  variables = inception.load_variables_from_tree(tree, source=pth_path)
  inception.save_variables(out_path, variables)
  inception.load_variables(out_path)
  print(f"Wrote {out_path}; set {inception.WEIGHTS_ENV_VAR}={out_path}")


def main(argv) -> None:
  if len(argv) != 3:
    raise SystemExit(
        "usage: python -m wae_jax.evaluation.convert_fid_weights "
        "<pt_inception-2015-12-05-6726825d.pth> <out.pickle|out.npz>")
  convert(argv[1], argv[2])


if __name__ == "__main__":
  main(sys.argv)
