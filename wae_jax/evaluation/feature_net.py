"""An offline domain feature distance: Fréchet distance in a small classifier's features.

FID needs the Inception weights file; this needs nothing but the labelled
dataset. The library trains a small MLP classifier (pixels -> 256 -> 128 ->
classes, ReLU, Adam) on the training split, caches its parameters per dataset
and image shape, and reports the Fréchet distance between the 128-d
penultimate (post-ReLU) features of generated and test images under the
metric name `fd_<dataset>_classifier` (e.g. `fd_digits_classifier`). Numbers
are comparable only between runs that use the same net: the `feature_net`
entry of eval.jsonl names it, with its test accuracy and fingerprint.

Pinned nets: MNIST (28x28, for the datasets mnist_idx and mnist) and the
digits (8x8) have a committed net under wae_jax/evaluation/feature_nets/,
trained once by `python -m wae_jax.evaluation.train_feature_net`; the same
samples give the same FD on any machine. Its fingerprint is the SHA-256 of
its parameters (`fingerprint`), stored in the file and checked on load.
Every other dataset (and a caller that asks with pinned=False) trains a net
on first use and caches it:

Cache: <cache_dir>/feature_net_<dataset>_<H>x<W>x<C>_<key>.npz, where
cache_dir is, in order, the argument, config.evaluation.cache_dir, the
environment variable WAE_JAX_CACHE_DIR, ~/.cache/wae_jax; <key> hashes the
architecture and training settings. Written atomically (tmp + os.replace), so
concurrent runs of a sweep can share it.
"""

import hashlib
import json
import os
import tempfile
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from wae_jax.evaluation import metric_names

CACHE_ENV_VAR = "WAE_JAX_CACHE_DIR"
PINNED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "feature_nets")
# dataset name -> the pinned net's data (datasets holding the same images share it)
PINNED_DATASETS = {"mnist_idx": "mnist", "mnist": "mnist", "digits": "digits"}
HIDDEN_SIZES = (256, 128)
NUM_TRAIN_STEPS = metric_names.CONFIG["evaluation"]["feature_net_steps"]
LEARNING_RATE = 1e-3
_FORMAT_VERSION = 1


class MLPClassifier(nn.Module):
  """images (N, H, W, C) -> (logits (N, classes), features (N, hidden[-1]))."""

  num_classes: int
  hidden_sizes: Sequence[int] = HIDDEN_SIZES

  @nn.compact
  def __call__(self, images):
    x = images.reshape(images.shape[0], -1)
    for size in self.hidden_sizes:
      x = nn.relu(nn.Dense(size)(x))
    return nn.Dense(self.num_classes)(x), x


def metric_name(dataset: str) -> str:
  """'fd_<dataset>_classifier', the name FD numbers from this net carry."""
  return f"fd_{dataset}_classifier"


def cache_directory(cache_dir: Optional[str] = None, config=None) -> str:
  """The cache folder (argument, config.evaluation.cache_dir, $WAE_JAX_CACHE_DIR, ~/.cache/wae_jax)."""
  if not cache_dir and config is not None:
    evaluation = config.get("evaluation", None)
    if evaluation is not None:
      cache_dir = evaluation.get("cache_dir", "") or ""
  cache_dir = cache_dir or os.environ.get(CACHE_ENV_VAR, "") or os.path.join(
      "~", ".cache", "wae_jax")
  return os.path.expanduser(cache_dir)


def _cache_path(cache_dir: str, dataset: str, image_shape: Tuple[int, ...],
                num_classes: int, num_steps: int, seed: int) -> str:
  settings = json.dumps([_FORMAT_VERSION, list(HIDDEN_SIZES), num_classes, num_steps,
                         seed, LEARNING_RATE])
  key = hashlib.sha256(settings.encode()).hexdigest()[:10]
  shape = "x".join(str(d) for d in image_shape)
  return os.path.join(cache_dir, f"feature_net_{dataset}_{shape}_{key}.npz")


def pinned_path(dataset: str, image_shape: Sequence[int]) -> Optional[str]:
  """The committed net's file for this dataset and image shape, or None."""
  pinned = PINNED_DATASETS.get(dataset)
  if pinned is None:
    return None
  shape = "x".join(str(int(d)) for d in image_shape)
  path = os.path.join(PINNED_DIR, f"{pinned}_{shape}.npz")
  return path if os.path.exists(path) else None


def fingerprint(params: Any) -> str:
  """SHA-256 (hex) of the parameters: every leaf's path, dtype, shape and bytes,
  in sorted path order, as little-endian float32."""
  digest = hashlib.sha256()
  for name, leaf in sorted(_flat_leaves(params).items()):
    array = np.ascontiguousarray(np.asarray(leaf, "<f4"))
    digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def _flat_leaves(params: Any) -> Dict[str, np.ndarray]:
  return {"/".join(str(k.key) for k in key_path): np.asarray(leaf)
          for key_path, leaf in jax.tree_util.tree_leaves_with_path(params)}


def train_classifier(batches: Iterator[Dict[str, np.ndarray]], num_classes: int,
                     num_steps: int = NUM_TRAIN_STEPS, seed: int = 0) -> Any:
  """Trains `MLPClassifier` with Adam on labelled batches.

  Args:
    batches: iterator of {'image': (B, H, W, C) float32, 'label': (B,) int}.
    num_classes: number of labels.
    num_steps: optimizer steps (one batch each).
    seed: parameter initialisation seed.

  Returns:
    The trained params.
  """
  model = MLPClassifier(num_classes)
  first = next(batches)
  params = model.init(jax.random.key(seed), jnp.asarray(first["image"][:1]))["params"]
  tx = optax.adam(LEARNING_RATE)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, images, labels):
    def loss_fn(p):
      logits, _ = model.apply({"params": p}, images)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  batch = first
  for index in range(num_steps):
    if index > 0:
      batch = next(batches)
    params, opt_state = step(params, opt_state, jnp.asarray(batch["image"]),
                             jnp.asarray(batch["label"], jnp.int32))
  return params


class ClassifierFeatures:
  """Callable images (N, H, W, C) in [0, 1] -> (N, 128) penultimate features.

  Attributes:
    name: the metric name of FDs in this feature space, 'fd_<dataset>_classifier'.
    path: the file the params came from (or were written to).
    test_accuracy: the classifier's accuracy on the test split at training time.
    sha256: `fingerprint(params)`.
    pinned: whether the params are the committed net (else trained on first use).
  """

  def __init__(self, params: Any, num_classes: int, dataset: str, path: str = "",
               test_accuracy: float = float("nan"), batch_size: int = 1000,
               pinned: bool = False):
    self.params = params
    self.sha256 = fingerprint(params)
    self.pinned = pinned
    self.num_classes = num_classes
    self.dataset = dataset
    self.name = metric_name(dataset)
    self.path = path
    self.test_accuracy = test_accuracy
    self.batch_size = batch_size
    model = MLPClassifier(num_classes)
    self._apply = jax.jit(lambda p, x: model.apply({"params": p}, x))

  def logits_and_features(self, images) -> Tuple[np.ndarray, np.ndarray]:
    images = np.asarray(images, np.float32)
    logits, features = [], []
    for start in range(0, images.shape[0], self.batch_size):
      batch_logits, batch_features = self._apply(
          self.params, images[start:start + self.batch_size])
      logits.append(np.asarray(batch_logits))
      features.append(np.asarray(batch_features))
    return np.concatenate(logits), np.concatenate(features)

  def __call__(self, images) -> np.ndarray:
    return self.logits_and_features(images)[1]

  def describe(self) -> str:
    """One line naming the net, e.g. for eval.jsonl's 'feature_net'."""
    where = (f"pinned {os.path.basename(self.path)}" if self.pinned
             else f"trained on first use, {self.path}")
    return (f"MLP classifier {list(HIDDEN_SIZES)} on {self.dataset} ({where}; "
            f"test accuracy {self.test_accuracy:.4f}; sha256 {self.sha256})")


def save(path: str, params: Any, num_classes: int, test_accuracy: float) -> None:
  """Writes the params, class count, test accuracy and fingerprint as .npz (atomically)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  leaves = {k: np.asarray(v, np.float32) for k, v in _flat_leaves(params).items()}
  handle, tmp_path = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                      suffix=".npz")
  os.close(handle)
  os.chmod(tmp_path, 0o644)  # mkstemp's 0600 would keep a committed file from others
  np.savez_compressed(tmp_path, __num_classes__=num_classes,
                      __test_accuracy__=test_accuracy,
                      __sha256__=np.bytes_(fingerprint(leaves_to_tree(leaves))), **leaves)
  os.replace(tmp_path, path)


def leaves_to_tree(leaves: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """{'a/b/c': array} -> {'a': {'b': {'c': array}}}."""
  params: Dict[str, Any] = {}
  for name, value in leaves.items():
    node = params
    *parents, leaf = name.split("/")
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return params


def _load(path: str) -> Tuple[Any, int, float]:
  """(params, num_classes, test_accuracy) of a saved net; ValueError when its
  parameters do not match the fingerprint stored with them."""
  params: Dict[str, Any] = {}
  with np.load(path, allow_pickle=False) as archive:
    num_classes = int(archive["__num_classes__"])
    test_accuracy = float(archive["__test_accuracy__"])
    stored = archive["__sha256__"].item().decode() if "__sha256__" in archive.files else None
    for name in archive.files:
      if name.startswith("__"):
        continue
      node = params
      *parents, leaf = name.split("/")
      for parent in parents:
        node = node.setdefault(parent, {})
      node[leaf] = archive[name]
  if stored is not None and stored != fingerprint(params):
    raise ValueError(f"The feature net {path} does not match its stored SHA-256 "
                     f"fingerprint; the file is damaged: restore it (git checkout) "
                     "or retrain it.")
  return params, num_classes, test_accuracy


def load_or_train(data_source, config=None, dataset: Optional[str] = None,
                  cache_dir: Optional[str] = None, num_steps: int = NUM_TRAIN_STEPS,
                  seed: int = 0, pinned: bool = True) -> ClassifierFeatures:
  """The pinned classifier of this dataset, else the cached one, trained first if none.

  Args:
    data_source: a labelled data.ArraySource (`train_batches`, `test_batches`,
      `image_shape`, `has_labels`).
    config: optional run config (config.dataset, config.evaluation.cache_dir).
    dataset: dataset name for the cache and the metric; default
      config.dataset, else data_source.name.
    cache_dir: overrides the cache folder.
    num_steps: training steps when there is no cached net.
    seed: initialisation seed.
    pinned: use the committed net when this dataset and image shape have one
      (num_steps and seed are then ignored).

  Returns:
    A `ClassifierFeatures`.

  Raises:
    ValueError: the dataset has no labels.
  """
  if dataset is None:
    dataset = config.dataset if config is not None else data_source.name
  if not getattr(data_source, "has_labels", True):
    raise ValueError(
        f"The {dataset} data has no labels, so no classifier feature distance "
        "can be trained for it; use fid_inception (or drop "
        f"{metric_name(dataset)} from the metrics).")
  pinned_file = pinned_path(dataset, data_source.image_shape) if pinned else None
  if pinned_file:
    params, num_classes, test_accuracy = _load(pinned_file)
    return ClassifierFeatures(params, num_classes, dataset, pinned_file, test_accuracy,
                              pinned=True)
  test_labels = np.concatenate([b["label"] for b in data_source.test_batches(1000)])
  train_first = next(data_source.train_batches(0))
  num_classes = int(max(test_labels.max(), train_first["label"].max())) + 1
  path = _cache_path(cache_directory(cache_dir, config), dataset,
                     tuple(data_source.image_shape), num_classes, num_steps, seed)
  if os.path.exists(path):
    params, num_classes, test_accuracy = _load(path)
    return ClassifierFeatures(params, num_classes, dataset, path, test_accuracy)
  params = train_classifier(data_source.train_batches(0), num_classes, num_steps, seed)
  net = ClassifierFeatures(params, num_classes, dataset, path)
  net.test_accuracy = accuracy_on_test(net, data_source)
  save(path, params, num_classes, net.test_accuracy)
  return net


def accuracy_on_test(net: ClassifierFeatures, data_source) -> float:
  """The net's accuracy on data_source's whole test split."""
  correct = total = 0
  for batch in data_source.test_batches(1000):
    logits, _ = net.logits_and_features(batch["image"])
    correct += int(np.sum(np.argmax(logits, -1) == batch["label"]))
    total += len(batch["label"])
  return correct / total
