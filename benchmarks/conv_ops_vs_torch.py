"""The convolutions of the 1/8-width WAE MNIST step, one by one, against PyTorch's.

The decoder's two stride-2 transposed convolutions carry 7.7 of the step's
7.8 model GFLOP (batch 100). This times each of their three convolutions
alone: the forward pass, the input gradient and the weight gradient, as the
trainer computes them on a CPU (`conv_layers.conv_transpose_phase` and its
custom backward pass, XLA:CPU with the trainer's flags, Eigen's convolutions)
and as PyTorch computes them (`conv_transpose2d` and
`aten.convolution_backward` in channels_last: oneDNN's kernels). Both run on
one pinned core with one thread and are timed by CPU time in interleaved
rounds (a child process runs torch), so a loaded machine shifts both sides
alike; the table gives the medians and the median of each round's
torch / JAX ratio (below 1: torch is faster).

torch is an optional, benchmark-only dependency (`pip install torch`, the CPU
build); without it this prints a message and exits.

  python benchmarks/conv_ops_vs_torch.py --rounds=7
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout

from benchmarks import vs_torch  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.xla_flags import CPU_FLAGS  # pylint: disable=g-import-not-at-top,wrong-import-position

BATCH = 100
# (input side, input channels, output channels) of the decoder's transposed
# convs at 1/8 width: 7x7x128 -> 14x14x64 and 14x14x64 -> 28x28x32.
LAYERS = ((7, 128, 64), (14, 64, 32))
OPS = ("forward", "input grad", "weight grad")


def model_gflop(side, c, o):
  """Each of the three ops: 4 kernel taps per output pixel and input channel."""
  return BATCH * (2 * side) ** 2 * o * c * 4 * 2 / 1e9


def pin_to_one_core():
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def cpu_seconds(fn, n):
  start = time.process_time()
  for _ in range(n):
    fn()
  return (time.process_time() - start) / n


def torch_ops(torch, x, w, dy):
  """{op: fn} of PyTorch's three convolutions of conv_transpose2d(x, w, stride 2,
  padding 1) for torch tensors x (N, C, H, W), w (C, O, 4, 4) and the output
  gradient dy (N, O, 2H, 2W); each fn returns its result."""
  backward = torch.ops.aten.convolution_backward
  args = (dy, x, w, None, [2, 2], [1, 1], [1, 1], True, [0, 0], 1)
  return {"forward": lambda: torch.nn.functional.conv_transpose2d(x, w, None, 2, 1),
          "input grad": lambda: backward(*args, [True, False, False])[0],
          "weight grad": lambda: backward(*args, [False, True, False])[1]}


def jax_ops(x, w, dy):
  """{op: fn} of the trainer's three CPU convolutions of
  conv_transpose_phase(x, w) for x (N, H, W, C), w (4, 4, C, O) (flax's
  layout: torch's weight is w[::-1, ::-1] as (C, O, 4, 4), the same function)
  and dy (N, 2H, 2W, O); each fn returns its result."""
  import jax  # pylint: disable=g-import-not-at-top
  from wae_jax.models.conv_layers import conv_transpose_phase  # pylint: disable=g-import-not-at-top
  x, w, dy = jax.device_put((x, w, dy))
  # The custom backward pass, each gradient alone (XLA drops the other).
  input_grad = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv_transpose_phase(x, w), x)[1](dy)[0])
  weight_grad = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv_transpose_phase(x, w), w)[1](dy)[0])
  forward = jax.jit(conv_transpose_phase)
  return {"forward": lambda: jax.block_until_ready(forward(x, w)),
          "input grad": lambda: jax.block_until_ready(input_grad(x, w, dy)),
          "weight grad": lambda: jax.block_until_ready(weight_grad(x, w, dy))}


def layer_data(side, c, o, batch=BATCH, seed=0):
  """float32 numpy x (N, H, W, C), w (4, 4, C, O), dy (N, 2H, 2W, O)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(batch, side, side, c)).astype(np.float32),
          (rng.normal(size=(4, 4, c, o)) / 20).astype(np.float32),
          rng.normal(size=(batch, 2 * side, 2 * side, o)).astype(np.float32))


def to_torch(torch, x, w, dy):
  """The same data in torch's channels_last tensors and weight layout."""
  cl = torch.channels_last
  nchw = lambda a: torch.from_numpy(a.transpose(0, 3, 1, 2).copy()).to(memory_format=cl)
  weight = torch.from_numpy(w[::-1, ::-1].transpose(2, 3, 0, 1).copy())
  return nchw(x), weight.contiguous(memory_format=cl), nchw(dy)


def torch_worker():
  """Reads {"layer", "op", "n"} lines, answers {"seconds"}: the CPU seconds
  per call of torch's op (vs_torch.TorchProcess's protocol)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(1)
  fns = {}
  for i, shape in enumerate(LAYERS):
    for op, fn in torch_ops(torch, *to_torch(torch, *layer_data(*shape))).items():
      fns[i, op] = fn
      fn()
  for line in sys.stdin:
    request = json.loads(line)
    print(json.dumps({"seconds": cpu_seconds(fns[request["layer"], request["op"]],
                                             request["n"])}), flush=True)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--round_seconds", type=float, default=0.3)
  parser.add_argument("--torch_worker", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--torch_threads", type=int, default=1, help=argparse.SUPPRESS)
  args = parser.parse_args()
  pin_to_one_core()
  if args.torch_worker:
    torch_worker()
    return
  if vs_torch.torch_missing("benchmarks/conv_ops_vs_torch.py"):
    return
  os.environ.setdefault("XLA_FLAGS", CPU_FLAGS)  # what wae_jax.main sets on a CPU
  torch_process = vs_torch.TorchProcess(threads=1, script=__file__)

  fns = {}
  for i, shape in enumerate(LAYERS):
    for op, fn in jax_ops(*layer_data(*shape)).items():
      fns[i, op] = fn
      fn()  # compiles
  rows = []
  try:
    for (layer, op), fn in fns.items():
      n = vs_torch.iterations_per_round(cpu_seconds(fn, 1), args.round_seconds)
      jax_times, torch_times = [], []
      for _ in range(args.rounds):
        torch_times.append(torch_process.ask(layer=layer, op=op, n=n)["seconds"])
        jax_times.append(cpu_seconds(fn, n))
      rows.append((layer, op, statistics.median(jax_times), statistics.median(torch_times),
                   vs_torch.median_ratio(torch_times, jax_times)))
  finally:
    torch_process.close()
  print(f"\nOne core, one thread each, CPU ms per call, median of {args.rounds} interleaved "
        f"rounds; load average {os.getloadavg()[0]:.1f}; XLA_FLAGS={os.environ['XLA_FLAGS']}\n")
  print("| layer | op | JAX ms | JAX GFLOP/s | torch channels_last ms | torch GFLOP/s | "
        "torch / JAX |")
  print("|---|---|---|---|---|---|---|")
  for layer, op, jax_s, torch_s, ratio in rows:
    side, c, o = LAYERS[layer]
    gflop = model_gflop(side, c, o)
    print(f"| {side}x{side}x{c} -> {2 * side}x{2 * side}x{o} | {op} | {1e3 * jax_s:.2f} | "
          f"{gflop / jax_s:.0f} | {1e3 * torch_s:.2f} | {gflop / torch_s:.0f} | {ratio:.2f} |")
  total_jax = sum(r[2] for r in rows)
  total_torch = sum(r[3] for r in rows)
  print(f"| all six | | {1e3 * total_jax:.2f} | | {1e3 * total_torch:.2f} | | "
        f"{total_torch / total_jax:.2f} |")


if __name__ == "__main__":
  main()
