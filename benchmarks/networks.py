"""ms per trainer step (WAE-MMD) of the WAE MNIST dcgan on this machine.

Compares the plain XLA stride-2 layers (upsample=transpose) with the exact
stride-1 rewrites (upsample=phase), with and without the trainer's CPU
XLA_FLAGS (wae_jax/xla_flags.py). XLA flags are read
once per process, so every cell of the table runs in its own subprocess.

  python benchmarks/networks.py                      # the table, 1/8 width
  python benchmarks/networks.py --widths=0.125,1.0   # also full width (slow)
  python benchmarks/networks.py --single --width=0.125 --upsample=phase
"""

import argparse
import json
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout

from wae_jax.xla_flags import CPU_FLAGS  # pylint: disable=g-import-not-at-top,wrong-import-position


def time_step(width: float, upsample: str, steps: int, batch_size: int,
              max_seconds: float) -> dict:
  """Median ms per trainer step (WAE-MMD with the WAE paper's MNIST config at
  `width`, one device), batch of MNIST shape."""
  import jax
  import numpy as np

  from benchmarks import step as step_benchmark

  config = step_benchmark.make_config("wae_mmd", "dcgan", batch_size)
  config.model.width_multiplier = width
  config.model.upsample = upsample
  step, state, batch = step_benchmark.build_step(
      config, step_benchmark.random_batch(batch_size, "dcgan"))

  t0 = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - t0
  times = []
  start = time.perf_counter()
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
    if time.perf_counter() - start > max_seconds:
      break
  return {"width": width, "upsample": upsample, "flag": CPU_FLAGS in os.environ.get("XLA_FLAGS", ""),
          "ms_per_step": 1000 * float(np.median(times)), "steps": len(times),
          "compile_s": compile_s}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--single", action="store_true", help="time one cell in this process")
  parser.add_argument("--width", type=float, default=0.125)
  parser.add_argument("--widths", default="0.125")
  parser.add_argument("--upsample", default="phase")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=100)
  parser.add_argument("--max_seconds", type=float, default=60.0,
                      help="stop timing a cell after this long (at least one step)")
  args = parser.parse_args()
  if args.single:
    print(json.dumps(time_step(args.width, args.upsample, args.steps, args.batch_size,
                               args.max_seconds)))
    return
  rows = []
  for width in (float(w) for w in args.widths.split(",")):
    for flag in (False, True):
      for upsample in ("transpose", "phase"):
        env = dict(os.environ)
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + (" " + CPU_FLAGS if flag else "")).strip()
        cmd = [sys.executable, os.path.abspath(__file__), "--single", f"--width={width}",
               f"--upsample={upsample}", f"--steps={args.steps}",
               f"--batch_size={args.batch_size}", f"--max_seconds={args.max_seconds}"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO_ROOT)
        if out.returncode:
          raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr, flush=True)
  print(f"\nWAE MNIST dcgan, WAE-MMD, batch {args.batch_size}, median ms per trainer step, "
        f"backend cpu\n")
  print("| width | upsample | CPU XLA_FLAGS | ms/step | steps timed | compile s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['width']:g} | {r['upsample']} | {'on' if r['flag'] else 'off'} | "
          f"{r['ms_per_step']:.0f} | {r['steps']} | {r['compile_s']:.1f} |")


if __name__ == "__main__":
  main()
