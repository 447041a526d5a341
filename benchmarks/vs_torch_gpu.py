"""The trainer's step against its PyTorch twin on one GPU, as a PyTorch user would run it.

For each workload the JAX side is the trainer's step (`parallel.make_parallel_step`
on one device, state donated, what `steps_per_call=1` runs) in float32 and in
bfloat16 compute (config.model.dtype; params, optimizer and losses float32).
The torch side is vs_torch.py's layer-for-layer twin in three variants:

  eager                       float32, NCHW (TF32 dots and convs, as JAX's default
                              float32 precision on these GPUs)
  bf16_channels_last          torch.autocast(bfloat16) with channels_last tensors
  compile_bf16_channels_last  the same under torch.compile (default mode)

Float32 JAX is compared with eager, bfloat16 JAX with the two bfloat16
variants. Workloads (the issue's): the WAE MNIST DCGAN at full width (batch 64
and 512), MoCA's ResNet-18 on 32x32x3 (batch 256 and 512, K = 2048), the
WAE-MMD MLP step of configs/default.py (batch 100).

The frameworks run in two processes that take turns on the GPU (JAX does not
preallocate its memory here): each round times a block of every torch variant
and of each JAX dtype; the table gives median ms per step over rounds, the
median over rounds of torch / JAX (above 1: this library is faster) and the
MFU of each: the model FLOPs of the step (wae_jax/flops.py, the same layers
on both sides) over the time, as a share of the GPU's dense bfloat16 peak
(benchmarks/step.py's table).

  python benchmarks/vs_torch_gpu.py                 # the whole table (GPU)
  python benchmarks/vs_torch_gpu.py --smoke         # tiny sizes, any device (a test)
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

TORCH_VARIANTS = {"float32": ["eager"],
                  "bfloat16": ["bf16_channels_last", "compile_bf16_channels_last"]}
# (row name, spec): spec as vs_torch.step_config reads it.
WORKLOADS = (
    ("WAE MNIST DCGAN, full width, batch 64",
     {"method": "wae_mmd", "net": "dcgan", "width": 1.0, "batch": 64}),
    ("WAE MNIST DCGAN, full width, batch 512",
     {"method": "wae_mmd", "net": "dcgan", "width": 1.0, "batch": 512}),
    ("MoCA ResNet-18 32x32, batch 256, K 2048",
     {"method": "moca", "net": "resnet18", "width": 1.0, "batch": 256, "queue": 2048}),
    ("MoCA ResNet-18 32x32, batch 512, K 2048",
     {"method": "moca", "net": "resnet18", "width": 1.0, "batch": 512, "queue": 2048}),
    ("WAE-MMD MLP 256-256, batch 100",
     {"method": "wae_mmd", "net": "mlp", "width": 1.0, "batch": 100}),
)


def smoke_workloads():
  """The same workloads at sizes a CPU runs in seconds (the test's)."""
  return tuple((f"{name} (smoke)", dict(spec, width=1 / 16 if spec["net"] != "mlp" else 1.0,
                                        batch=8, **({"queue": 32} if "queue" in spec else {})))
               for name, spec in WORKLOADS[::2])


def seconds_of(run, n=1) -> float:
  start = time.perf_counter()
  run(n)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--round_seconds", type=float, default=0.5)
  parser.add_argument("--only", default="", help="comma-separated substrings of row names")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny sizes, one round: checks the benchmark runs (any device)")
  parser.add_argument("--json", default="", help="also write the rows to this file")
  args = parser.parse_args()
  if vs_torch.torch_missing("benchmarks/vs_torch_gpu.py", "with CUDA on a GPU"):
    return
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top

  workloads = smoke_workloads() if args.smoke else WORKLOADS
  if args.only:
    workloads = [w for w in workloads if any(o in w[0] for o in args.only.split(","))]
  rounds, round_seconds = (1, 0.01) if args.smoke else (args.rounds, args.round_seconds)
  device = jax.devices()[0]
  torch_device = "cuda" if device.platform == "gpu" else "cpu"
  peak = step_benchmark.bf16_peak_flops(device.device_kind)
  torch_process = vs_torch.TorchProcess(threads=os.cpu_count() or 1)
  rows = []
  try:
    torch_info = torch_process.ask(cmd="version")
    for name, spec in workloads:
      jax_sides = {dtype: vs_torch.JaxWorkload("step", dict(spec, dtype=dtype))
                   for dtype in TORCH_VARIANTS}
      for side in jax_sides.values():
        side.run(2)  # compile, autotune
      variants = [v for vs in TORCH_VARIANTS.values() for v in vs]
      torch_process.ask(cmd="setup", kind="step", spec=vs_torch.twin_spec(spec),
                        variants=variants, device=torch_device, warmup=3)

      n_jax = {dtype: vs_torch.iterations_per_round(seconds_of(side.run), round_seconds)
               for dtype, side in jax_sides.items()}
      n_torch = {v: vs_torch.iterations_per_round(
          torch_process.ask(cmd="time", variant=v, n=1)["seconds"], round_seconds)
                 for v in variants}
      jax_times = {dtype: [] for dtype in jax_sides}
      torch_times = {v: [] for v in variants}
      for _ in range(rounds):  # per dtype: its torch variants, then JAX, adjacent
        for dtype, side in jax_sides.items():
          for v in TORCH_VARIANTS[dtype]:
            torch_times[v].append(
                torch_process.ask(cmd="time", variant=v, n=n_torch[v])["seconds"] / n_torch[v])
          jax_times[dtype].append(seconds_of(side.run, n_jax[dtype]) / n_jax[dtype])
      flops = jax_sides["float32"].flops
      row = {"name": name, "flops": flops,
             "jax_ms": {d: 1e3 * statistics.median(t) for d, t in jax_times.items()},
             "torch_ms": {v: 1e3 * statistics.median(t) for v, t in torch_times.items()},
             "ratio": {v: vs_torch.median_ratio(torch_times[v], jax_times[dtype])
                       for dtype, vs in TORCH_VARIANTS.items() for v in vs}}
      rows.append(row)
      print(f"{name}: {json.dumps(row)}", file=sys.stderr, flush=True)
      del jax_sides
  finally:
    torch_process.close()

  mfu = lambda flops, ms: (f"{100 * flops / (ms / 1e3) / peak:.1f}%"
                           if flops and peak else "-")
  peak_text = (f"MFU against the dense bfloat16 peak ({peak / 1e12:.0f} TFLOP/s)" if peak
               else "no bfloat16 peak known for this device, so no MFU")
  print(f"\n{device.device_kind}: JAX {jax.__version__} vs PyTorch {torch_info['version']} "
        f"({torch_info['device']}); median of {rounds} interleaved rounds; ratio = torch / "
        f"JAX (above 1: this library is faster); {peak_text}")
  print("\n| workload | JAX f32 ms (MFU) | torch eager f32 ms (MFU) | ratio | JAX bf16 ms (MFU) "
        "| torch bf16+CL ms (MFU) | ratio | torch.compile bf16+CL ms (MFU) | ratio |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    cells = []
    for dtype, vs in TORCH_VARIANTS.items():
      ms = r["jax_ms"][dtype]
      cells.append(f"{ms:.2f} ({mfu(r['flops'], ms)})")
      for v in vs:
        cells.append(f"{r['torch_ms'][v]:.2f} ({mfu(r['flops'], r['torch_ms'][v])})")
        cells.append(f"{r['ratio'][v]:.2f}")
    print(f"| {r['name']} | " + " | ".join(cells) + " |")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"device": device.device_kind, "rows": rows}, f, indent=1)


if __name__ == "__main__":
  main()
