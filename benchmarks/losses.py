"""Microseconds per forward+backward call of the hot losses.

Times `jax.jit(jax.value_and_grad(loss))` (gradient w.r.t. the codes / the
queries), after one warm-up call, as the median over repeated calls, each
ended with `block_until_ready`.

  python benchmarks/losses.py [--repeats 20]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from wae_jax import losses


def time_call(fn, *args, repeats):
  """Median wall-clock microseconds of fn(*args), compiled beforehand."""
  jax.block_until_ready(fn(*args))
  samples = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    samples.append((time.perf_counter() - start) * 1e6)
  return statistics.median(samples)


def unit_rows(key, shape):
  x = jax.random.normal(key, shape)
  return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()

  rows = []
  mmd_step = jax.jit(jax.value_and_grad(losses.mmd_penalty))
  for batch, dim in [(100, 8), (256, 64), (1024, 128)]:
    key_q, key_p = jax.random.split(jax.random.PRNGKey(batch))
    z_q = jax.random.normal(key_q, (batch, dim))
    z_p = jax.random.normal(key_p, (batch, dim))
    rows.append(("mmd_penalty (imq, 7 scales)", f"B={batch}, d={dim}",
                 time_call(mmd_step, z_q, z_p, repeats=args.repeats)))

  moca_step = jax.jit(jax.value_and_grad(losses.moca_loss))
  for batch, dim, queue_size in [(64, 128, 16384), (64, 128, 65536)]:
    key_q, key_k, key_queue = jax.random.split(jax.random.PRNGKey(queue_size), 3)
    q = unit_rows(key_q, (batch, dim))
    k = unit_rows(key_k, (batch, dim))
    queue = unit_rows(key_queue, (queue_size, dim))
    rows.append(("moca_loss", f"B={batch}, d={dim}, K={queue_size}",
                 time_call(moca_step, q, k, queue, 0.05, repeats=args.repeats)))

  device = jax.devices()[0]
  print(f"device: {device.platform} ({device.device_kind}), jax {jax.__version__}, "
        f"median of {args.repeats} calls of jit(value_and_grad(loss))")
  print(f"| {'loss':<28} | {'shape':<24} | {'us / fwd+bwd':>13} |")
  print(f"|{'-' * 30}|{'-' * 26}|{'-' * 15}|")
  for name, shape, micros in rows:
    print(f"| {name:<28} | {shape:<24} | {micros:>13,.0f} |")


if __name__ == "__main__":
  main()
