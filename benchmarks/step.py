"""Steps/s and images/s of each method's data-parallel train step.

Times `parallel.make_parallel_step(method.train_step, mesh)` (shard_map under
jit, state donated: what the trainer runs) on a mesh of 1, 2, 4 and 8 devices,
for every method (wae_mmd, wae_gan, vae, moca) and these networks:
  mlp:   the default MLP (256, 256), latent 8, on digits-sized 8x8x1 images;
  dcgan: the WAE paper's MNIST conv nets at 1/8 width, latent 8, 28x28x1;
  dcgan_full: the same at full width (22M params; default on GPU and TPU only);
  resnet18: MoCA's A2 ResNet-18 encoder and mirrored decoder, 32x32x3 (full
    width; default on GPU and TPU only).
Each cell runs in every --dtypes value (config.model.dtype: float32, or
bfloat16 compute with float32 params; default float32 on a CPU, both on GPU
and TPU).
The global batch is the same for every device count (default 64), so with N
devices each device runs batch/N examples and the codes are all-gathered.
Images are uniform noise in [0, 1] of that shape (the step's cost does not
depend on pixel values); the batch is sharded once, outside the timing.

On a CPU the N devices are fake (--xla_force_host_platform_device_count=N):
they share the machine's cores, so the table shows the cost of the
data-parallel program (per-device launches, all-gathers, gradient pmean), not
a speed-up. XLA flags are read once per process, so every device count runs
in its own subprocess, with the trainer's CPU XLA_FLAGS
(wae_jax/xla_flags.py). On a
machine with accelerators it uses the real devices (counts above the number
present are skipped). Every row gives the step's TFLOP/s (its model FLOPs,
wae_jax/flops.py: the plain layers' dots and convolutions on the
global batch, over the time), and on a GPU or TPU also MFU, that rate as a
share of the devices' dense bfloat16 peak.

  python benchmarks/step.py                                  # the table
  python benchmarks/step.py --devices=1,8 --nets=mlp --batch_size=64
  python benchmarks/step.py --devices=1 --nets=resnet18 --dtypes=bfloat16
  python benchmarks/step.py --single --num_devices=2         # one subprocess, JSON
"""

import argparse
import json
import os
import subprocess
import sys
import time

NETS = ("mlp", "dcgan", "dcgan_full", "resnet18")
CPU_NETS = ("mlp", "dcgan")
# Dense bfloat16 peak TFLOP/s per device, by a substring of jax's device_kind
# (vendor data sheets; the first match wins).
BF16_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0),
                    ("A100", 312.0), ("L4", 121.0), ("V100", 125.0),
                    ("TPU v6", 918.0), ("TPU v5 lite", 197.0), ("TPU v5e", 197.0),
                    ("TPU v5", 459.0), ("TPU v4", 275.0))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout

from wae_jax.flops import step_model_flops  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.xla_flags import CPU_FLAGS, has_accelerator_plugin  # pylint: disable=g-import-not-at-top,wrong-import-position


def make_config(method: str, net: str, batch_size: int, dtype: str = "float32"):
  """The run's config: configs/default.py (mlp) or the WAE paper's MNIST (dcgan)."""
  from configs import _wae_paper  # pylint: disable=g-import-not-at-top
  from wae_jax import config as wae_config  # pylint: disable=g-import-not-at-top
  from wae_jax import methods  # pylint: disable=g-import-not-at-top

  if net == "mlp":
    config = wae_config.for_method(method)
  elif net in ("dcgan", "dcgan_full"):
    config = _wae_paper.mnist(method)
    config.model.width_multiplier = 1 / 8 if net == "dcgan" else 1.0
  elif net == "resnet18":
    config = _wae_paper.mnist(method)
    config.model.network = "resnet18"
  else:
    raise ValueError(f"Unknown net {net!r}; use one of {NETS}.")
  config.batch_size = batch_size
  config.model.dtype = dtype
  config.steps_per_epoch = 100  # the schedules need it; the data is not read
  methods.apply_required(config)
  if method == "moca":
    config.moca.queue_size = 8 * batch_size
  return config


def image_shape(net: str):
  return {"mlp": (8, 8, 1), "dcgan": (28, 28, 1), "dcgan_full": (28, 28, 1),
          "resnet18": (32, 32, 3)}[net]


def bf16_peak_flops(device_kind: str):
  """The device's dense bfloat16 peak in FLOP/s, or None (CPUs, unknown kinds)."""
  for name, tflops in BF16_PEAK_TFLOPS:
    if name.lower() in device_kind.lower():
      return tflops * 1e12
  return None


def build_step(config, host_batch: dict, num_devices: int = 1):
  """The trainer's step (`parallel.make_parallel_step`, state donated) on the
  first num_devices devices: (step, initial state replicated, batch sharded)."""
  import jax  # pylint: disable=g-import-not-at-top

  from wae_jax import methods  # pylint: disable=g-import-not-at-top
  from wae_jax import parallel  # pylint: disable=g-import-not-at-top

  method = methods.get(config.method)
  mesh = parallel.make_mesh(jax.devices()[:num_devices])
  parallel.check_batch_size(config.batch_size, mesh)
  state = jax.jit(lambda rng: method.init(config, rng, host_batch))(jax.random.PRNGKey(0))
  return (parallel.make_parallel_step(method.train_step, mesh),
          parallel.replicate(state, mesh), parallel.shard_batch(host_batch, mesh))


def random_batch(batch_size: int, net: str) -> dict:
  """{'image': uniform noise in [0, 1] of (batch_size,) + image_shape(net)}."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return {"image": np.random.default_rng(0).uniform(
      size=(batch_size,) + image_shape(net)).astype(np.float32)}


def time_cell(method: str, net: str, dtype: str, num_devices: int, batch_size: int,
              min_steps: int, max_seconds: float) -> dict:
  """Compile time and median seconds per step of one (method, net, dtype, devices)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  from wae_jax import methods  # pylint: disable=g-import-not-at-top

  config = make_config(method, net, batch_size, dtype)
  host_batch = random_batch(batch_size, net)
  flops_per_step = step_model_flops(config, methods.get(method), host_batch)
  step, state, batch = build_step(config, host_batch, num_devices)
  start = time.perf_counter()
  step.lower(state, batch).compile()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - start

  times = []
  begin = time.perf_counter()
  while len(times) < min_steps or time.perf_counter() - begin < max_seconds:
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
    if time.perf_counter() - begin > 10 * max_seconds:
      break
  seconds = float(np.median(times))
  peak = bf16_peak_flops(jax.devices()[0].device_kind)
  return {"tflops": flops_per_step / seconds / 1e12,
          "mfu": flops_per_step / seconds / (peak * num_devices) if peak else None,
          "method": method, "net": net, "dtype": dtype, "devices": num_devices,
          "batch_size": batch_size, "compile_s": compile_s,
          "ms_per_step": 1000 * seconds, "steps_per_s": 1.0 / seconds,
          "images_per_s": batch_size / seconds, "steps_timed": len(times),
          "loss": float(metrics["loss"]), "platform": jax.devices()[0].platform,
          "device_kind": jax.devices()[0].device_kind}


def run_single(args) -> None:
  """All (net, method) cells of one device count, one JSON line each."""
  import jax  # pylint: disable=g-import-not-at-top

  if jax.device_count() < args.num_devices:
    print(json.dumps({"skipped": args.num_devices,
                      "available": jax.device_count()}), flush=True)
    return
  for net in args.nets.split(","):
    for dtype in args.dtypes.split(","):
      for method in args.methods.split(","):
        cell = time_cell(method, net, dtype, args.num_devices, args.batch_size,
                         args.min_steps, args.max_seconds)
        print(json.dumps(cell), flush=True)


def registered_methods() -> tuple:
  """Every method of wae_jax/methods (the registry), the --methods default."""
  from wae_jax import methods  # pylint: disable=g-import-not-at-top
  return methods.names()


def main():
  all_methods = registered_methods()
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--devices", default="1,2,4,8", help="device counts")
  parser.add_argument("--methods", default=",".join(all_methods))
  parser.add_argument("--nets", default=None,
                      help="default: mlp,dcgan on a CPU, and dcgan_full,resnet18 too on GPU/TPU")
  parser.add_argument("--dtypes", default=None,
                      help="config.model.dtype values; default: float32 on a CPU, "
                      "float32,bfloat16 on GPU/TPU")
  parser.add_argument("--batch_size", type=int, default=64, help="global batch")
  parser.add_argument("--min_steps", type=int, default=3)
  parser.add_argument("--max_seconds", type=float, default=1.0,
                      help="time each cell for at least this long")
  parser.add_argument("--single", action="store_true",
                      help="time one device count in this process")
  parser.add_argument("--num_devices", type=int, default=1)
  args = parser.parse_args()
  accelerator = has_accelerator_plugin()
  if args.nets is None:
    args.nets = ",".join(NETS if accelerator else CPU_NETS)
  if args.dtypes is None:
    args.dtypes = "float32,bfloat16" if accelerator else "float32"
  for name, values, allowed in (("--nets", args.nets, NETS), ("--methods", args.methods, all_methods),
                                ("--dtypes", args.dtypes, ("float32", "bfloat16"))):
    unknown = sorted(set(values.split(",")) - set(allowed))
    if unknown:
      parser.error(f"{name} has {', '.join(unknown)}, not among {', '.join(allowed)}.")
  if args.single:
    run_single(args)
    return

  rows = []
  for num_devices in (int(n) for n in args.devices.split(",")):
    env = dict(os.environ)
    if not accelerator:
      env["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={num_devices} "
                          f"{CPU_FLAGS}")
      env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, os.path.abspath(__file__), "--single",
           f"--num_devices={num_devices}", f"--methods={args.methods}",
           f"--nets={args.nets}", f"--dtypes={args.dtypes}", f"--batch_size={args.batch_size}",
           f"--min_steps={args.min_steps}", f"--max_seconds={args.max_seconds}"]
    with subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          text=True) as process:
      for line in process.stdout:
        row = json.loads(line)
        if "skipped" in row:
          print(f"skipped {row['skipped']} devices: only {row['available']} "
                "available", file=sys.stderr, flush=True)
          continue
        rows.append(row)
        mfu = f", MFU {100 * row['mfu']:.2f}%" if row["mfu"] is not None else ""
        print(f"{row['net']} {row['dtype']} {row['method']} x{row['devices']}: "
              f"{row['ms_per_step']:.2f} ms/step, {row['tflops']:.3f} TFLOP/s{mfu}, "
              f"compile {row['compile_s']:.1f} s",
              file=sys.stderr, flush=True)
    if process.returncode:
      raise RuntimeError(f"{' '.join(cmd)} failed (exit {process.returncode}).")
  if not rows:
    return
  first = rows[0]
  print(f"\nData-parallel train step (shard_map under jit), global batch "
        f"{args.batch_size}, {first['platform']} ({first['device_kind']}), "
        "median over timed steps\n")
  print("| net | dtype | method | devices | ms/step | steps/s | images/s | TFLOP/s "
        "| MFU (bf16 peak) | compile s |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    mfu = f"{100 * r['mfu']:.2f}%" if r["mfu"] is not None else "-"
    print(f"| {r['net']} | {r['dtype']} | {r['method']} | {r['devices']} | "
          f"{r['ms_per_step']:.2f} | "
          f"{r['steps_per_s']:.1f} | {r['images_per_s']:.0f} | {r['tflops']:.3f} | {mfu} | "
          f"{r['compile_s']:.1f} |")


if __name__ == "__main__":
  main()
