"""Input-pipeline throughput: index-gather + device-prefetch thread vs tf.data.

    python benchmarks/input.py [--shape=cifar10|celeb_a] [--batches=200]

Data: random uint8 images the size of the dataset (in memory, or the
memory-mapped .npy cache that wae_jax.data.tfds_source writes). Pipelines:

  numpy            ArraySource.train_batches (what wae_jax.data uses)
  numpy+prefetch2  the same behind data.prefetch(size=2, put=jax.device_put)
  tf.data          from_tensor_slices -> shuffle -> batch -> map(/255) ->
                   prefetch(AUTOTUNE) -> as_numpy_iterator
  tf.data+prefetch2  the same behind data.prefetch

Columns: iterator alone (host batches/s; numpy arrays, no device copy); with
a simulated step (a jitted encoder-sized matmul stack that consumes the batch,
dispatched asynchronously as a training loop does, device_put per batch), and
that step's own rate on a device-resident batch (the ceiling).
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wae_jax import data  # pylint: disable=g-import-not-at-top,wrong-import-position

SHAPES = {
    "cifar10": dict(num=50_000, image=(32, 32, 3), batch=128),
    "celeb_a": dict(num=20_000, image=(64, 64, 3), batch=64),
}


def make_source(images, batch_size):
  return data.ArraySource(name="bench", train_images=images,
                          test_images=images[:10], train_labels=None,
                          test_labels=None, batch_size=batch_size, seed=0,
                          process_index=0, process_count=1)


def tf_data_iterator(images, batch_size, shuffle_buffer=10_000):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  ds = tf.data.Dataset.from_tensor_slices(np.asarray(images))
  ds = ds.shuffle(shuffle_buffer, seed=0).repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(lambda x: {"image": tf.cast(x, tf.float32) / 255.0},
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()


def make_step(image_shape, width=256, depth=2):
  """A jitted stand-in for a train step: an MLP's forward/backward cost."""
  dim = int(np.prod(image_shape))
  keys = jax.random.split(jax.random.key(0), depth + 1)
  weights = [jax.random.normal(keys[0], (dim, width)) / np.sqrt(dim)]
  weights += [jax.random.normal(k, (width, width)) / np.sqrt(width)
              for k in keys[1:]]

  @jax.jit
  def step(weights, images):
    def loss(weights):
      h = images.reshape(images.shape[0], -1)
      for w in weights:
        h = jnp.tanh(h @ w)
      return jnp.mean(h ** 2)
    return jax.grad(loss)(weights)

  return step, weights


def rate(iterator, num_batches, consume=None):
  """Batches per second over num_batches, after 5 warm-up batches."""
  for _ in range(5):
    out = next(iterator)
    if consume is not None:
      out = consume(out)
  jax.block_until_ready(out)
  start = time.perf_counter()
  for _ in range(num_batches):
    out = next(iterator)
    if consume is not None:
      out = consume(out)
  jax.block_until_ready(out)
  return num_batches / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--shape", choices=sorted(SHAPES), default="cifar10")
  parser.add_argument("--batches", type=int, default=200)
  args = parser.parse_args()
  shape = SHAPES[args.shape]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (shape["num"],) + shape["image"],
                        dtype=np.uint8)
  batch_size = shape["batch"]
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "images.npy")
    np.save(path, images)
    memmapped = np.load(path, mmap_mode="r")
    step, weights = make_step(shape["image"])
    device_batch = jax.device_put(np.zeros((batch_size,) + shape["image"],
                                           np.float32))
    step_only = rate(iter(lambda: device_batch, None), args.batches,
                     lambda b: step(weights, b))

    def with_step(batch):
      return step(weights, jax.device_put(batch["image"]))

    def on_device_step(batch):
      return step(weights, batch["image"])

    pipelines = {
        "numpy (in memory)": lambda: make_source(images, batch_size)
        .train_batches(),
        "numpy (memmap cache)": lambda: make_source(memmapped, batch_size)
        .train_batches(),
        "tf.data": lambda: tf_data_iterator(images, batch_size),
    }
    rows = []
    for name, make in pipelines.items():
      alone = rate(make(), args.batches)
      stepped = rate(make(), args.batches, with_step)
      prefetcher = data.prefetch(make(), size=2)
      prefetched = rate(prefetcher, args.batches, on_device_step)
      prefetcher.close()
      rows.append((name, alone, stepped, prefetched))

  print(f"\n{args.shape}: {shape['num']} x {shape['image']} uint8, batch "
        f"{batch_size}, {args.batches} batches, backend "
        f"{jax.default_backend()}, {os.cpu_count()} CPUs")
  print(f"simulated step alone (device-resident batch): {step_only:8.1f} "
        "steps/s\n")
  header = ("pipeline", "iterator batches/s", "+step steps/s",
            "+prefetch(2)+step steps/s")
  print(f"| {header[0]:22} | {header[1]:>18} | {header[2]:>13} | "
        f"{header[3]:>25} |")
  print(f"|{'-' * 24}|{'-' * 20}|{'-' * 15}|{'-' * 27}|")
  for name, alone, stepped, prefetched in rows:
    print(f"| {name:22} | {alone:18.1f} | {stepped:13.1f} | "
          f"{prefetched:25.1f} |")


if __name__ == "__main__":
  main()
