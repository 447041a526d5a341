"""Trains a pinned feature net for `fd_<dataset>_classifier` and writes it to the repository.

    python -m wae_jax.evaluation.train_feature_net --dataset=mnist_idx --data_dir=DIR
    python -m wae_jax.evaluation.train_feature_net --dataset=digits

Run once per dataset; the file it writes (wae_jax/evaluation/feature_nets/
<mnist|digits>_<H>x<W>x<C>.npz, float32 parameters, no pickle) is committed,
so that every machine measures the classifier FD in the same features. It
prints the net's test accuracy and SHA-256 fingerprint (both stored in the
file and written into every eval.jsonl line that uses the net). Training runs
on the CPU in float32 from seed 0: MNIST 6000 steps (10 epochs of batch 100),
the digits 2000 steps (feature_net.NUM_TRAIN_STEPS, as the first-use nets).
"""

import os

import ml_collections

from wae_jax import cli
from wae_jax import data
from wae_jax.evaluation import feature_net

# dataset -> (image size, training steps)
SETTINGS = {"mnist_idx": (28, 6000), "digits": (8, feature_net.NUM_TRAIN_STEPS)}
SEED = 0


def train(dataset: str, data_dir: str = "", out_dir: str = feature_net.PINNED_DIR) -> dict:
  """Trains the net of `dataset`, writes it to out_dir; returns its record."""
  image_size, num_steps = SETTINGS[dataset]
  config = ml_collections.ConfigDict({
      "dataset": dataset, "data_dir": data_dir, "image_size": image_size,
      "batch_size": 100, "seed": SEED, "shuffle_buffer": 10_000,
      "synthetic_num_points": 0, "synthetic_dim": 0, "keep_labels": ()})
  source = data.build(config)
  test_labels = [b["label"] for b in source.test_batches(1000)]
  num_classes = int(max(l.max() for l in test_labels)) + 1
  params = feature_net.train_classifier(source.train_batches(0), num_classes, num_steps,
                                        SEED)
  net = feature_net.ClassifierFeatures(params, num_classes, dataset)
  accuracy = feature_net.accuracy_on_test(net, source)
  shape = "x".join(str(d) for d in source.image_shape)
  path = os.path.join(out_dir, f"{feature_net.PINNED_DATASETS[dataset]}_{shape}.npz")
  feature_net.save(path, params, num_classes, accuracy)
  return {"path": path, "test_accuracy": accuracy, "sha256": net.sha256,
          "num_steps": num_steps, "bytes": os.path.getsize(path)}


def main(argv=None) -> None:
  parser = cli.ArgumentParser(prog="python -m wae_jax.evaluation.train_feature_net",
                              description=__doc__.split("\n")[0])
  parser.add_argument("--dataset", required=True, choices=sorted(SETTINGS))
  parser.add_argument("--data_dir", default="", help="the idx folder of mnist_idx")
  parser.add_argument("--out_dir", default=feature_net.PINNED_DIR)
  args = parser.parse_args(argv)
  print(train(args.dataset, args.data_dir, args.out_dir))


if __name__ == "__main__":
  import sys  # pylint: disable=g-import-not-at-top
  sys.exit(cli.run(main))
