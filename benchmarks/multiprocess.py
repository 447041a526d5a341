"""Steps/s of one job on 8 CPU devices: one process, and 2 processes x 4 over gloo.

Runs the README's examples (configs/default.py, batch 96) for --steps steps,
each in a fresh workdir, in turn --rounds times:

  1 x 8   XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m wae_jax.main ...
  2 x 4   python -m wae_jax.multiprocess --num_processes=2 --devices_per_process=4 -- \\
              python -m wae_jax.main ...

and prints, for each, the training rate the trainer logs (metrics.jsonl's
steps_per_second, the median over its lines after the first, which holds
the compilation) and the wall time of the whole command (imports, compiles,
evaluation and checkpoints included), with their medians over rounds and
the ratio of the rates.

  python benchmarks/multiprocess.py                 # 600 steps, 2 rounds
  python benchmarks/multiprocess.py --steps=3000    # the README example's length
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def command(layout: str, workdir: str, steps: int) -> tuple[list, dict]:
  """(argv, env) of one run of `layout`, '1x8' or '2x4'."""
  main = [sys.executable, "-m", "wae_jax.main", "--config=configs/default.py",
          "--config.batch_size=96", f"--config.num_train_steps={steps}",
          f"--config.eval_every_steps={steps}", f"--workdir={workdir}"]
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)
  if layout == "1x8":
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return main, env
  return [sys.executable, "-m", "wae_jax.multiprocess", "--num_processes=2",
          "--devices_per_process=4", "--"] + main, env


def run(layout: str, steps: int) -> dict:
  with tempfile.TemporaryDirectory(prefix=f"wae_{layout}_") as tmp:
    workdir = os.path.join(tmp, "run")
    argv, env = command(layout, workdir, steps)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
      raise RuntimeError(f"{layout} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
      rates = [r["steps_per_second"] for r in map(json.loads, f) if "steps_per_second" in r]
  return {"rate": statistics.median(rates[1:] or rates), "seconds": seconds}


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--steps", type=int, default=600)
  parser.add_argument("--rounds", type=int, default=2)
  args = parser.parse_args()
  results = {"1x8": [], "2x4": []}
  for _ in range(args.rounds):
    for layout, runs in results.items():
      runs.append(run(layout, args.steps))
      print(f"{layout}: {runs[-1]['rate']:.1f} steps/s, {runs[-1]['seconds']:.1f} s",
            file=sys.stderr, flush=True)
  load = os.getloadavg()[0]
  print(f"\nconfigs/default.py, batch 96, {args.steps} steps, median of {args.rounds} "
        f"alternating rounds; {os.cpu_count()} CPUs, load average {load:.1f} at the end\n")
  print("| layout | training steps/s | whole command s |")
  print("|---|---|---|")
  medians = {}
  for layout, runs in results.items():
    medians[layout] = statistics.median(r["rate"] for r in runs)
    print(f"| {layout} | {medians[layout]:.1f} | "
          f"{statistics.median(r['seconds'] for r in runs):.1f} |")
  print(f"\n1x8 / 2x4 steps/s: {medians['1x8'] / medians['2x4']:.2f}")


if __name__ == "__main__":
  main()
