"""Steps/s of a population of runs trained as one vmapped program (wae_jax/population.py).

For WAE-MMD with the default MLP (256, 256; latent 8; batch 100) and with the
WAE paper's MNIST DCGAN at 1/8 width, both on MNIST-sized 28x28x1 images,
times on one device:
  solo: one run's step, the trainer's valued step (train.make_train_step);
  P = 1, 2, 4, 8, 16, 32: the population step over P members (their seeds and
    λ differ), parallel.make_parallel_step(population=True).
Each call runs --steps_per_call steps (lax.scan), as the trainer does, on
batches of uniform noise (the cost does not depend on pixel values) put on
the device once, outside the timing. Each population's calls alternate with
the solo run's (one call of each per round), so that load from other
processes slows both alike. Columns:
  member steps/s  P x steps per second of the population (the solo run's own
                  steps/s, over all rounds, on the solo row);
  speed-up        P sequential solo runs' time / the population's time: the
                  median over rounds of P x solo call time / population call
                  time, each round's two calls taken back to back;
  MiB/member      XLA's memory for the compiled call (arguments, outputs and
                  temporaries, compiled.memory_analysis()) over P.
On a GPU or TPU each row also gives the model TFLOP/s and MFU
(benchmarks/step.py's FLOP count and peaks).

  python benchmarks/population.py
  python benchmarks/population.py --nets=mlp --populations=1,8 --steps_per_call=10
"""

import argparse
import os
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout
sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

from wae_jax import xla_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

xla_flags.set_cpu_flags()  # Before jax is imported: the trainer's CPU flags.

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

import step as step_bench  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import config as wae_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import flops  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import hparams  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import methods  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import parallel  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import population  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax import train  # pylint: disable=g-import-not-at-top,wrong-import-position

IMAGE_SHAPE = (28, 28, 1)
NETS = ("mlp", "dcgan")


def member_config(net: str, seed: int, batch_size: int):
  """WAE-MMD on 28x28x1: the default MLP, or the WAE paper's 1/8-width DCGAN."""
  config = (wae_config.for_method("wae_mmd") if net == "mlp"
            else step_bench.make_config("wae_mmd", "dcgan", batch_size))
  config.image_size = 28
  config.batch_size = batch_size
  config.steps_per_epoch = 100
  config.seed = seed
  config.lambda_reg = 10.0 * (1 + seed)
  return config


def _batch(num_members: int, batch_size: int, steps_per_call: int, seed: int = 0):
  shape = (steps_per_call,) + ((num_members,) if num_members else ()) + (batch_size,)
  return {"image": np.random.default_rng(seed).uniform(
      size=shape + IMAGE_SHAPE).astype(np.float32)}


class _Timed:
  """A compiled call and its state, which each call donates and replaces."""

  def __init__(self, fn, args):
    self.fn, self.state, self.rest = fn, args[0], args[1:]
    self.call()  # warm-up

  def call(self) -> float:
    """Seconds of one call, to its metrics being ready."""
    start = time.perf_counter()
    self.state, metrics = self.fn(self.state, *self.rest)
    jax.block_until_ready(metrics)
    return time.perf_counter() - start


def _alternate(solo: _Timed, pop: _Timed, min_calls: int, max_seconds: float):
  """(solo seconds per call, population seconds per call) of rounds of one
  call each, back to back, until min_calls rounds and max_seconds (at most 50)."""
  times = []
  begin = time.perf_counter()
  while len(times) < min_calls or (time.perf_counter() - begin < max_seconds
                                   and len(times) < 50):
    times.append((solo.call(), pop.call()))
  return np.asarray(times)


def _memory_mib(compiled, num_members: int) -> float:
  analysis = compiled.memory_analysis()
  if analysis is None:
    return float("nan")
  total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           + analysis.temp_size_in_bytes)
  return total / max(num_members, 1) / 2**20


def measure(net: str, sizes, batch_size: int, steps_per_call: int, min_calls: int,
            max_seconds: float) -> list:
  """Rows {net, members, member_steps_per_s, speedup, mib_per_member, tflops}."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  method = methods.get("wae_mmd")
  example = {"image": np.zeros((batch_size,) + IMAGE_SHAPE, np.float32)}
  init = lambda config: jax.jit(lambda rng: method.init(config, rng, example))(
      jax.random.PRNGKey(config.seed))
  step_flops = flops.step_model_flops(member_config(net, 0, batch_size), method, example)
  peak = step_bench.bf16_peak_flops(jax.devices()[0].device_kind)

  # One run: the trainer's step.
  config = member_config(net, 0, batch_size)
  solo_step, put_batch, put_state = train.make_train_step(method, mesh, steps_per_call)
  solo_args = (put_state(init(config)), put_batch(_batch(0, batch_size, steps_per_call)))
  compiled = train._parallel_step(method, mesh, steps_per_call).lower(  # pylint: disable=protected-access
      solo_args[0], train._replicated_values(solo_args[0].config, mesh),  # pylint: disable=protected-access
      solo_args[1]).compile()
  solo_memory = _memory_mib(compiled, 1)
  solo = _Timed(solo_step, solo_args)

  rows, solo_times = [], []
  pop_step = train._parallel_step(method, mesh, steps_per_call, population=True)  # pylint: disable=protected-access
  for size in sizes:
    configs = [member_config(net, seed, batch_size) for seed in range(size)]
    states = parallel.replicate(population.stack([init(c) for c in configs]), mesh)
    values = parallel.replicate(hparams.values(configs), mesh)
    batch = parallel.shard_batch(_batch(size, batch_size, steps_per_call), mesh,
                                 parallel.batch_axis(steps_per_call) + 1)
    compiled = pop_step.lower(states, values, batch).compile()
    times = _alternate(solo, _Timed(pop_step, (states, values, batch)), min_calls, max_seconds)
    solo_times.extend(times[:, 0])
    seconds = float(np.median(times[:, 1])) / steps_per_call
    rows.append({"net": net, "members": size, "member_steps_per_s": size / seconds,
                 "speedup": float(np.median(size * times[:, 0] / times[:, 1])),
                 "mib_per_member": _memory_mib(compiled, size),
                 "tflops": size * step_flops / seconds / 1e12})
    print(_format(rows[-1], peak), flush=True)
  solo_seconds = float(np.median(solo_times)) / steps_per_call
  rows.insert(0, {"net": net, "members": "solo", "member_steps_per_s": 1 / solo_seconds,
                  "speedup": 1.0, "mib_per_member": solo_memory,
                  "tflops": step_flops / solo_seconds / 1e12})
  return rows


def _format(row: dict, peak) -> str:
  mfu = f" {100 * row['tflops'] * 1e12 / peak:6.2f}%" if peak else ""
  return (f"| {row['net']:5s} | {str(row['members']):>5s} | {row['member_steps_per_s']:9.1f} | "
          f"{row['speedup']:6.2f}x | {row['mib_per_member']:8.2f} | {row['tflops']:7.4f}{mfu} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--nets", default="mlp,dcgan")
  parser.add_argument("--populations", default="1,2,4,8,16,32")
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--steps_per_call", type=int, default=10)
  parser.add_argument("--min_calls", type=int, default=3)
  parser.add_argument("--max_seconds", type=float, default=5.0)
  args = parser.parse_args()
  sizes = [int(p) for p in args.populations.split(",")]
  peak = step_bench.bf16_peak_flops(jax.devices()[0].device_kind)
  print(f"device: {jax.devices()[0].device_kind}, load average "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.steps_per_call} steps "
        f"per call, batch {args.batch_size}")
  header = ("| net   | P     | member steps/s | speed-up | MiB/member | TFLOP/s"
            + (" MFU" if peak else "") + " |")
  rows = []
  for net in args.nets.split(","):
    if net not in NETS:
      sys.exit(f"error: unknown net {net!r}; use one of {', '.join(NETS)}.")
    rows += measure(net, sizes, args.batch_size, args.steps_per_call, args.min_calls,
                    args.max_seconds)
  print(header)
  print("|" + "---|" * (6 if not peak else 6))
  for row in rows:
    print(_format(row, peak))
  print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
  main()
