"""Steps/s of the trainer's loop with the training split on the device vs read on the host.

Times what `train.train_and_evaluate` runs between two logs: `make_train_step`
(state donated, `steps_per_call` steps per call) fed through the prefetch
thread with `on_device.train_inputs`: host batches gathered in numpy and copied
to the device (data_on_device=false), or index batches gathered inside the
compiled step from the split placed once (data_on_device=true). The net is
configs/default.py's (WAE-MMD, MLP 256-256, latent 8, batch 100) on:

  digits      the real 8x8 digits (float32)
  mnist       60,000 random uint8 images of 28x28x1 (MNIST's shape)
  cifar10     50,000 random uint8 images of 32x32x3 (CIFAR-10's shape)

each with the trainer's steps per call (100, lowered on the host to keep a
call's stacked batches under 64 MiB) and with one step per call.

  python benchmarks/on_device.py [--calls_seconds=3] [--devices=1]
"""

import argparse
import math
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout

from wae_jax.xla_flags import CPU_FLAGS  # pylint: disable=g-import-not-at-top,wrong-import-position

SHAPES = {"mnist": (60_000, (28, 28, 1)), "cifar10": (50_000, (32, 32, 3))}


def make_source(name: str, config):
  import numpy as np  # pylint: disable=g-import-not-at-top

  from wae_jax import data  # pylint: disable=g-import-not-at-top
  if name == "digits":
    return data.build(config)
  num, shape = SHAPES[name]
  images = np.random.default_rng(0).integers(0, 256, (num,) + shape, dtype=np.uint8)
  return data.ArraySource(name=name, train_images=images, test_images=images[:100],
                          train_labels=None, test_labels=None, batch_size=config.batch_size,
                          seed=0, process_index=0, process_count=1)


class TrainerLoop:
  """The trainer's calls on one data path; round(seconds) -> steps/s."""

  def __init__(self, config, source, mesh, on_device_data: bool, steps_per_call: int):
    import jax  # pylint: disable=g-import-not-at-top

    from wae_jax import data  # pylint: disable=g-import-not-at-top
    from wae_jax import methods  # pylint: disable=g-import-not-at-top
    from wae_jax import train  # pylint: disable=g-import-not-at-top
    from wae_jax.data import on_device  # pylint: disable=g-import-not-at-top

    method = methods.get(config.method)
    device_data = on_device.place(source, mesh) if on_device_data else None
    self.steps_per_call = steps_per_call
    self.step, put_batch, put_state = train.make_train_step(method, mesh, steps_per_call,
                                                            device_data=device_data)
    self.state = put_state(train.initial_state(method, config, source))
    self.batches = data.prefetch(on_device.train_inputs(source, device_data, 0, steps_per_call),
                                 size=2, put=put_batch)
    self.window = train.DISPATCH_WINDOW
    self.state, metrics = self.step(self.state, next(self.batches))  # compile
    jax.block_until_ready(metrics)

  def round(self, seconds: float) -> float:
    import jax  # pylint: disable=g-import-not-at-top
    pending, calls, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
      self.state, metrics = self.step(self.state, next(self.batches))
      pending.append(metrics)
      if len(pending) > self.window:  # the trainer's dispatch window
        jax.block_until_ready(pending.pop(0))
      calls += 1
    jax.block_until_ready(pending)
    return calls * self.steps_per_call / (time.perf_counter() - start)

  def close(self):
    self.batches.close()


def compare(config, source, mesh, host_k: int, device_k: int, seconds: float,
            rounds: int) -> tuple[float, float]:
  """Median steps/s of the host and the on-device loop, their rounds alternating."""
  loops = [TrainerLoop(config, source, mesh, False, host_k),
           TrainerLoop(config, source, mesh, True, device_k)]
  try:
    rates = [[], []]
    for _ in range(rounds):
      for loop, out in zip(loops, rates):
        out.append(loop.round(seconds))
    return statistics.median(rates[0]), statistics.median(rates[1])
  finally:
    for loop in loops:
      loop.close()


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--seconds", type=float, default=2.0, help="per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--devices", type=int, default=1,
                      help="fake CPU devices (XLA_FLAGS; each its own program)")
  parser.add_argument("--datasets", default="digits,mnist,cifar10")
  args = parser.parse_args()
  os.environ.setdefault(
      "XLA_FLAGS", f"{CPU_FLAGS} --xla_force_host_platform_device_count={args.devices}")
  import jax  # pylint: disable=g-import-not-at-top

  from wae_jax import config as wae_config  # pylint: disable=g-import-not-at-top
  from wae_jax import parallel  # pylint: disable=g-import-not-at-top
  from wae_jax import train  # pylint: disable=g-import-not-at-top

  mesh = parallel.make_mesh(jax.devices()[:args.devices])
  rows = []
  for name in args.datasets.split(","):
    config = wae_config.for_method("wae_mmd")
    source = make_source(name, config)
    config.steps_per_epoch = source.steps_per_epoch
    image_bytes = 4 * config.batch_size * math.prod(source.image_shape)
    host_chunk = train.steps_per_call(config, 0, batch_bytes=image_bytes)
    device_chunk = train.steps_per_call(config, 0, batch_bytes=4 * config.batch_size)
    for host_k, device_k in ((host_chunk, device_chunk), (1, 1)):
      host, device = compare(config, source, mesh, host_k, device_k, args.seconds, args.rounds)
      rows.append((name, source.image_shape, host_k, host, device_k, device))
      print(rows[-1], file=sys.stderr, flush=True)
  print(f"\nJAX {jax.__version__} on {args.devices} {jax.devices()[0].platform} device(s), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; configs/default.py's "
        f"WAE-MMD MLP, batch 100; median of {args.rounds} alternating rounds of "
        f"{args.seconds:g} s\n")
  print("| data | image | host: steps per call | host steps/s | on device: steps per call "
        "| on device steps/s | speed-up |")
  print("|---|---|---|---|---|---|---|")
  for name, shape, host_k, host, device_k, device in rows:
    print(f"| {name} | {'x'.join(map(str, shape))} | {host_k} | {host:.0f} | {device_k} | "
          f"{device:.0f} | {device / host:.2f}x |")


if __name__ == "__main__":
  main()
