"""ms per WAE-MMD-like training step of the WAE MNIST dcgan on this machine.

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
  """Median ms per jitted train step (encoder + decoder + Adam), batch of MNIST shape."""
  import jax
  import jax.numpy as jnp
  import ml_collections
  import numpy as np
  import optax

  from wae_jax import models

  config = ml_collections.ConfigDict({
      "method": "wae_mmd", "latent_dim": 8, "prior": "gaussian", "prior_var": 1.0,
      "model": {"network": "dcgan", "hidden_sizes": (), "width_multiplier": width,
                "encoder": "deterministic", "decoder_output": "sigmoid",
                "logvar_clip": (-10.0, 5.0), "upsample": upsample},
      "adversary": {"hidden_sizes": ()}, "adversary_log_prior": False})
  image_shape = (28, 28, 1)
  nets = models.build_networks(config, image_shape)
  rng = jax.random.PRNGKey(0)
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch_size,) + image_shape),
                       jnp.float32)
  enc_vars = nets.encoder.init(rng, images, train=False)
  dec_vars = nets.decoder.init(rng, jnp.zeros((batch_size, config.latent_dim)), train=False)
  params = {"encoder": enc_vars["params"], "decoder": dec_vars["params"]}
  stats = {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]}
  tx = optax.adam(1e-3, b1=0.5)
  opt_state = tx.init(params)

  def imq_mmd(z, prior_z):
    n = z.shape[0]
    def kernel_sum(a, b):
      d2 = jnp.sum((a[:, None] - b[None]) ** 2, -1)
      return sum(c / (c + d2) for c in (2.0 * z.shape[1] * s for s in (0.1, 1.0, 10.0)))
    off = 1.0 - jnp.eye(n)
    return (jnp.sum(kernel_sum(z, z) * off) + jnp.sum(kernel_sum(prior_z, prior_z) * off)
            ) / (n * (n - 1)) - 2 * jnp.mean(kernel_sum(z, prior_z))

  def loss_fn(params, stats, images, key):
    (z, _), enc_upd = nets.encoder.apply(
        {"params": params["encoder"], "batch_stats": stats["encoder"]}, images, train=True,
        mutable=["batch_stats"])
    recon, dec_upd = nets.decoder.apply(
        {"params": params["decoder"], "batch_stats": stats["decoder"]}, z, train=True,
        mutable=["batch_stats"])
    rec = jnp.mean(jnp.sum((recon - images) ** 2, axis=(1, 2, 3)))
    loss = rec + 10.0 * imq_mmd(z, jax.random.normal(key, z.shape))
    return loss, {"encoder": enc_upd["batch_stats"], "decoder": dec_upd["batch_stats"]}

  @jax.jit
  def step(params, stats, opt_state, images, key):
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats, images, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), stats, opt_state, loss

  t0 = time.perf_counter()
  params, stats, opt_state, loss = step(params, stats, opt_state, images, rng)
  loss.block_until_ready()
  compile_s = time.perf_counter() - t0
  times = []
  start = time.perf_counter()
  for i in range(steps):
    t0 = time.perf_counter()
    params, stats, opt_state, loss = step(params, stats, opt_state, images,
                                          jax.random.fold_in(rng, i))
    loss.block_until_ready()
    times.append(time.perf_counter() - t0)
    if time.perf_counter() - start > max_seconds:
      break
  return {"width": width, "upsample": upsample, "flag": CPU_FLAGS in os.environ.get("XLA_FLAGS", ""),
          "ms_per_step": 1000 * float(np.median(times)), "steps": len(times),
          "compile_s": compile_s, "loss": float(loss)}


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
  print(f"\nWAE MNIST dcgan, batch {args.batch_size}, median ms/step (jit, Adam), "
        f"backend cpu\n")
  print("| width | upsample | ynn reduce flag | ms/step | steps timed | compile s |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['width']:g} | {r['upsample']} | {'on' if r['flag'] else 'off'} | "
          f"{r['ms_per_step']:.0f} | {r['steps']} | {r['compile_s']:.1f} |")


if __name__ == "__main__":
  main()
