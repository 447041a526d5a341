"""This library's jitted trainer step against a layer-for-layer PyTorch eager twin.

For each workload the JAX side is what the trainer runs (the method's
`train_step` through `parallel.make_parallel_step`: shard_map under jit on one
device, state donated) or the jitted loss's value and gradient; the torch side
is the same layers (same shapes and parameter counts), the same
loss and the same optimizer (Adam, and the adversary's own Adam for WAE-GAN;
MoCA's EMA key encoder and queue), in eager mode with 2 threads (--torch_threads).
Workloads:

  MLP step of every method: the default config (digits 8x8, MLP 256-256,
    latent 8, batch 100; MoCA with K=1000)
  DCGAN step: the WAE paper's MNIST nets (28x28, batch 100, WAE-MMD) at 1/8
    and full width
  mmd_penalty (IMQ, 7 scales) forward+backward at (B, d) = (100, 8),
    (256, 64), (1024, 128); moca_loss forward+backward at (B, d) = (64, 128)
    with K = 16384 and 65536

The two frameworks run in two processes (this one for JAX, a child for torch)
that take turns: each round times a block of torch iterations, then a block of
JAX iterations, so both see the same machine load; the table gives medians
over rounds of the times and of each round's ratio = torch time / JAX time
(above 1: this library is faster). It also measures the machine's GEMM peak
(the best of jnp.dot and torch.matmul on 2048^3 float32) and, for the conv
steps, the model FLOPs per step (wae_jax/flops.py: the plain layers'
dots and convolutions) as a share of it.

torch is an optional, benchmark-only dependency (`pip install torch`, the CPU
build); without it this prints a message and exits.

  python benchmarks/vs_torch.py                    # every workload (a few minutes)
  python benchmarks/vs_torch.py --only=mlp,losses  # a subset: mlp, dcgan, losses
  python benchmarks/vs_torch.py --rounds=7
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)  # run as a script from a checkout

from wae_jax.flops import step_model_flops  # pylint: disable=g-import-not-at-top,wrong-import-position
from wae_jax.xla_flags import CPU_FLAGS  # pylint: disable=g-import-not-at-top,wrong-import-position

# The methods with a PyTorch port in this file (not every registered method has one).
TORCH_PORTED_METHODS = ("wae_mmd", "wae_gan", "vae", "moca")
MMD_SHAPES = ((100, 8), (256, 64), (1024, 128))
MOCA_SHAPES = ((64, 128, 16384), (64, 128, 65536))
GEMM_SIZE = 2048


def workloads(only):
  """(name, kind, spec) of every workload the flags select, in table order."""
  rows = []
  if "mlp" in only:
    rows += [(f"{m} step, MLP 256-256, batch 100", "step",
              {"method": m, "net": "mlp", "width": 1.0}) for m in TORCH_PORTED_METHODS]
  if "dcgan" in only:
    rows += [(f"WAE MNIST DCGAN step, {label} width, batch 100", "step",
              {"method": "wae_mmd", "net": "dcgan", "width": width})
             for label, width in (("1/8", 0.125), ("full", 1.0))]
  if "losses" in only:
    rows += [(f"mmd_penalty fwd+bwd ({b}, {d})", "mmd", {"batch": b, "dim": d})
             for b, d in MMD_SHAPES]
    rows += [(f"moca_loss fwd+bwd ({b}, {d}, K={k})", "moca", {"batch": b, "dim": d, "k": k})
             for b, d, k in MOCA_SHAPES]
  return rows


def step_config(spec):
  """The trainer config of a step workload (what benchmarks/step.py times)."""
  from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top
  config = step_benchmark.make_config(spec["method"], spec["net"], 100)
  if spec["net"] == "dcgan":
    config.model.width_multiplier = spec["width"]
  if spec["method"] == "moca":
    config.moca.queue_size = 1000
  return config


def twin_spec(spec):
  """What the torch twin needs to know about a step workload's config."""
  config = step_config(spec)
  return {"method": spec["method"], "net": spec["net"], "width": spec["width"],
          "batch": config.batch_size, "latent": config.latent_dim,
          "hidden": list(config.model.hidden_sizes),
          "adversary_hidden": list(config.adversary.hidden_sizes),
          "lr": config.optimizer.learning_rate, "b1": config.optimizer.b1,
          "b2": config.optimizer.b2, "adversary_lr": config.adversary.learning_rate,
          "adversary_b1": config.adversary.b1, "lam": config.lambda_reg,
          "adversary_log_prior": config.adversary_log_prior,
          "scales": list(config.mmd.scales), "prior_var": config.prior_var,
          "queue": config.moca.queue_size, "tau": config.moca.temperature,
          "m0": config.moca.momentum_base,
          "image": [8, 8, 1] if spec["net"] == "mlp" else [28, 28, 1]}


# ----------------------------------------------------------------------------
# JAX side (this process).


class JaxWorkload:
  """run(n) runs n iterations and waits for them; flops: model FLOPs or None."""

  def __init__(self, kind, spec):
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    self.flops = None
    rng = np.random.default_rng(0)
    if kind == "step":
      from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top
      from wae_jax import methods  # pylint: disable=g-import-not-at-top
      config = step_config(spec)
      host_batch = step_benchmark.random_batch(100, spec["net"])
      self.step, self.state, self.batch = step_benchmark.build_step(config, host_batch)
      if spec["net"] == "dcgan":
        self.flops = step_model_flops(config, methods.get(spec["method"]), host_batch)

      def run(n):
        for _ in range(n):
          self.state, metrics = self.step(self.state, self.batch)
        jax.block_until_ready(metrics)
      self.run = run
    else:
      from wae_jax import losses  # pylint: disable=g-import-not-at-top
      if kind == "mmd":
        b, d = spec["batch"], spec["dim"]
        args = (rng.normal(size=(b, d)).astype(np.float32) + 0.3,
                rng.normal(size=(b, d)).astype(np.float32))
        fn = jax.jit(jax.value_and_grad(lambda q, p: losses.mmd_penalty(q, p)))
      else:
        b, d, k = spec["batch"], spec["dim"], spec["k"]
        unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)
        args = (unit(rng.normal(size=(b, d))).astype(np.float32),
                unit(rng.normal(size=(b, d))).astype(np.float32),
                unit(rng.normal(size=(k, d))).astype(np.float32))
        fn = jax.jit(jax.value_and_grad(lambda q, kk, queue: losses.moca_loss(
            q, kk, queue, 0.05)))
      args = jax.device_put(args)

      def run(n):
        for _ in range(n):
          out = fn(*args)
        jax.block_until_ready(out)
      self.run = run


def jax_gemm_seconds() -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jax.random.normal(jax.random.PRNGKey(0), (GEMM_SIZE, GEMM_SIZE), jnp.float32)
  matmul = jax.jit(jnp.dot)
  matmul(a, a).block_until_ready()
  times = []
  for _ in range(5):
    start = time.perf_counter()
    matmul(a, a).block_until_ready()
    times.append(time.perf_counter() - start)
  return min(times)


# ----------------------------------------------------------------------------
# torch side (the child process): the twins.


def torch_worker(threads: int):
  """Reads JSON commands on stdin, answers one JSON line each on stdout."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  workload = None
  for line in sys.stdin:
    request = json.loads(line)
    if request["cmd"] == "setup":
      workload = TorchWorkload(torch, request["kind"], request["spec"])
      workload.run(1)  # warm-up
      answer = {"ok": True}
    elif request["cmd"] == "time":
      start = time.perf_counter()
      workload.run(request["n"])
      answer = {"seconds": time.perf_counter() - start}
    elif request["cmd"] == "gemm":
      a = torch.randn(GEMM_SIZE, GEMM_SIZE)
      torch.mm(a, a)
      times = []
      for _ in range(5):
        start = time.perf_counter()
        torch.mm(a, a)
        times.append(time.perf_counter() - start)
      answer = {"seconds": min(times), "version": torch.__version__}
    else:
      return
    print(json.dumps(answer), flush=True)


def imq_mmd(torch, q, p, scales, prior_var):
  """mmd_penalty's unbiased IMQ MMD^2, summed over C = 2 d prior_var s."""
  n, d = q.shape
  off = 1.0 - torch.eye(n)
  dqq, dpp, dqp = torch.cdist(q, q) ** 2, torch.cdist(p, p) ** 2, torch.cdist(q, p) ** 2
  total = 0.0
  for s in scales:
    c = 2.0 * d * prior_var * s
    total = total + ((c / (c + dqq)) * off).sum() / (n * (n - 1)) + (
        (c / (c + dpp)) * off).sum() / (n * (n - 1)) - 2 * (c / (c + dqp)).mean()
  return total


def moca_loss(torch, q, k, queue, tau):
  logits = torch.cat([(q * k).sum(-1, keepdim=True), q @ queue.T], dim=1) / tau
  return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


class TorchWorkload:
  """The torch twin of one workload; run(n) runs n iterations."""

  def __init__(self, torch, kind, spec):
    self.torch = torch
    gen = torch.Generator().manual_seed(0)
    if kind == "mmd":
      q = (torch.randn(spec["batch"], spec["dim"], generator=gen) + 0.3).requires_grad_()
      p = torch.randn(spec["batch"], spec["dim"], generator=gen)
      scales = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
      self.iteration = lambda: torch.autograd.grad(imq_mmd(torch, q, p, scales, 1.0), q)
    elif kind == "moca":
      unit = lambda x: x / x.norm(dim=-1, keepdim=True)
      q = unit(torch.randn(spec["batch"], spec["dim"], generator=gen)).requires_grad_()
      k = unit(torch.randn(spec["batch"], spec["dim"], generator=gen))
      queue = unit(torch.randn(spec["k"], spec["dim"], generator=gen))
      self.iteration = lambda: torch.autograd.grad(moca_loss(torch, q, k, queue, 0.05), q)
    else:
      self._build_step(spec, gen)

  def run(self, n):
    for _ in range(n):
      self.iteration()

  def _build_step(self, s, gen):
    torch = self.torch
    nn = torch.nn
    h, w, c = s["image"]
    latent, batch = s["latent"], s["batch"]
    gaussian = s["method"] == "vae"
    if s["net"] == "mlp":
      hidden = s["hidden"]
      def mlp(sizes):
        layers = []
        for a, b in zip(sizes[:-1], sizes[1:]):
          layers += [nn.Linear(a, b), nn.ReLU()]
        return layers[:-1]
      encoder = nn.Sequential(nn.Flatten(), *mlp([h * w * c] + hidden), nn.ReLU(),
                              nn.Linear(hidden[-1], latent * (2 if gaussian else 1)))
      decoder = nn.Sequential(*mlp([latent] + hidden[::-1] + [h * w * c]),
                              nn.Unflatten(1, (c, h, w)))
    else:
      ch = [max(1, round(x * s["width"])) for x in (128, 256, 512, 1024)]
      layers, in_ch, size = [], c, h
      for out_ch in ch:  # 4x4 stride 2; padding 2 where 'SAME' pads (1, 2) (7 -> 4)
        pad = 1 if size % 2 == 0 else 2
        layers += [nn.Conv2d(in_ch, out_ch, 4, 2, pad), nn.BatchNorm2d(out_ch, momentum=0.1),
                   nn.ReLU()]
        in_ch, size = out_ch, (size + 1) // 2
      encoder = nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_ch * size * size, latent))
      dec = [max(1, round(x * s["width"])) for x in (1024, 512, 256)]
      decoder = nn.Sequential(
          nn.Linear(latent, dec[0] * (h // 4) * (w // 4)), nn.ReLU(),
          nn.Unflatten(1, (dec[0], h // 4, w // 4)),
          nn.ConvTranspose2d(dec[0], dec[1], 4, 2, 1), nn.BatchNorm2d(dec[1]), nn.ReLU(),
          nn.ConvTranspose2d(dec[1], dec[2], 4, 2, 1), nn.BatchNorm2d(dec[2]), nn.ReLU(),
          nn.Conv2d(dec[2], c, 4, 1, "same"))
    after_step = lambda: None
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=s["lr"], betas=(s["b1"], s["b2"]))
    x = torch.rand(batch, c, h, w, generator=gen)
    lam, scales, prior_var = s["lam"], s["scales"], s["prior_var"]
    reconstruction = lambda out: ((torch.sigmoid(out) - x) ** 2).sum((1, 2, 3)).mean()

    if s["method"] == "wae_mmd":
      def loss_fn():
        z = encoder(x)
        return reconstruction(decoder(z)) + lam * imq_mmd(
            torch, z, torch.randn(batch, latent) * prior_var ** 0.5, scales, prior_var)
    elif s["method"] == "vae":
      def loss_fn():
        mean, logvar = encoder(x).chunk(2, dim=1)
        logvar = logvar.clamp(-10.0, 5.0)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        nll = nn.functional.binary_cross_entropy_with_logits(
            decoder(z), x, reduction="none").sum((1, 2, 3)).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
        return nll + kl
    elif s["method"] == "wae_gan":
      sizes = [latent] + s["adversary_hidden"]
      adversary = nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:])
                                  for m in (nn.Linear(a, b), nn.ReLU())],
                                nn.Linear(sizes[-1], 1))
      adv_opt = torch.optim.Adam(adversary.parameters(), lr=s["adversary_lr"],
                                 betas=(s["adversary_b1"], 0.999))
      log_prior = lambda z: -0.5 * (z ** 2).sum(1) / prior_var
      if s["adversary_log_prior"]:
        logit = lambda z: adversary(z)[:, 0] + log_prior(z)
      else:
        logit = lambda z: adversary(z)[:, 0]
      bce = nn.functional.binary_cross_entropy_with_logits
      def loss_fn():
        z = encoder(x)
        prior = torch.randn(batch, latent)
        adv_loss = bce(logit(prior), torch.ones(batch)) + bce(logit(z.detach()),
                                                               torch.zeros(batch))
        adv_opt.zero_grad()
        adv_loss.backward()
        adv_opt.step()
        return reconstruction(decoder(z)) + lam * bce(logit(z), torch.ones(batch))
    else:  # moca
      import copy  # pylint: disable=g-import-not-at-top
      key_encoder = copy.deepcopy(encoder)
      for p in key_encoder.parameters():
        p.requires_grad_(False)
      unit = lambda v: v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
      queue = unit(torch.randn(s["queue"], latent, generator=gen))
      state = {"ptr": 0}
      def loss_fn():
        with torch.no_grad():
          for kp, qp in zip(key_encoder.parameters(), encoder.parameters()):
            kp.mul_(s["m0"]).add_(qp, alpha=1 - s["m0"])
          keys = unit(key_encoder(x))
        q = unit(encoder(x))
        state["keys"] = keys
        return reconstruction(decoder(q)) + lam * moca_loss(torch, q, keys, queue, s["tau"])

      def enqueue():  # after the backward pass, which reads the queue
        queue[state["ptr"]:state["ptr"] + batch] = state["keys"]
        state["ptr"] = (state["ptr"] + batch) % queue.shape[0]
      after_step = enqueue

    def iteration():
      opt.zero_grad()
      loss_fn().backward()
      opt.step()
      after_step()
    self.iteration = iteration


# ----------------------------------------------------------------------------
# Driver.


class TorchProcess:
  """The torch child: setup(kind, spec), then seconds(n) runs n iterations."""

  def __init__(self, threads: int):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--torch_worker",
         f"--torch_threads={threads}"], cwd=REPO_ROOT,
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

  def ask(self, **request):
    self.process.stdin.write(json.dumps(request) + "\n")
    self.process.stdin.flush()
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError("the torch worker exited; see its error above.")
    return json.loads(line)

  def close(self):
    self.process.stdin.close()
    self.process.wait()


def iterations_per_round(seconds_per_iteration: float, round_seconds: float) -> int:
  return max(1, int(round_seconds / max(seconds_per_iteration, 1e-6)))


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", default="mlp,dcgan,losses")
  parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per workload")
  parser.add_argument("--round_seconds", type=float, default=0.5,
                      help="time per framework per round (at least one iteration)")
  parser.add_argument("--torch_threads", type=int, default=2,
                      help="torch's intra-op threads (1 is fairer on a machine others load: "
                      "its OpenMP barriers stall when the cores are oversubscribed)")
  parser.add_argument("--torch_worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.torch_worker:
    torch_worker(args.torch_threads)
    return
  if importlib.util.find_spec("torch") is None:
    print("benchmarks/vs_torch.py needs PyTorch, an optional benchmark-only dependency: "
          "pip install torch (the CPU build); skipped.")
    return
  os.environ.setdefault("XLA_FLAGS", CPU_FLAGS)  # what wae_jax.main sets on a CPU
  import jax  # pylint: disable=g-import-not-at-top

  torch_process = TorchProcess(args.torch_threads)
  try:
    gemm_torch = torch_process.ask(cmd="gemm")
    gemm_seconds = min(jax_gemm_seconds(), gemm_torch["seconds"])
    peak = 2 * GEMM_SIZE ** 3 / gemm_seconds
    rows = []
    for name, kind, spec in workloads(args.only.split(",")):
      jax_side = JaxWorkload(kind, spec)
      jax_side.run(1)  # compile
      torch_process.ask(cmd="setup", kind=kind,
                        spec=twin_spec(spec) if kind == "step" else spec)
      # Size the blocks from one timed iteration of each.
      start = time.perf_counter()
      jax_side.run(1)
      n_jax = iterations_per_round(time.perf_counter() - start, args.round_seconds)
      n_torch = iterations_per_round(torch_process.ask(cmd="time", n=1)["seconds"],
                                     args.round_seconds)
      jax_times, torch_times = [], []
      for _ in range(args.rounds):
        torch_times.append(torch_process.ask(cmd="time", n=n_torch)["seconds"] / n_torch)
        start = time.perf_counter()
        jax_side.run(n_jax)
        jax_times.append((time.perf_counter() - start) / n_jax)
      # Each round's ratio compares two adjacent blocks, so it holds while a
      # shared VM's speed drifts; the ratio reported is their median.
      ratios = [t / j for t, j in zip(torch_times, jax_times)]
      row = {"name": name, "jax_ms": 1e3 * statistics.median(jax_times),
             "torch_ms": 1e3 * statistics.median(torch_times),
             "ratio": statistics.median(ratios), "flops": jax_side.flops}
      rows.append(row)
      print(f"{name}: jax {row['jax_ms']:.2f} ms, torch {row['torch_ms']:.2f} ms",
            file=sys.stderr, flush=True)
      del jax_side
  finally:
    torch_process.close()

  device = jax.devices()[0]
  print(f"\nJAX {jax.__version__} ({device.platform}, XLA_FLAGS={os.environ['XLA_FLAGS']}) "
        f"vs PyTorch {gemm_torch['version']} eager, {args.torch_threads} thread(s); median of "
        f"{args.rounds} "
        "interleaved rounds; ratio = median over rounds of torch / JAX (above 1: this "
        "library is faster)")
  print(f"GEMM peak ({GEMM_SIZE}^3 float32, best of jnp.dot and torch.mm): "
        f"{peak / 1e9:.0f} GFLOP/s\n")
  print("| workload | JAX ms | torch ms | ratio | JAX model GFLOP/s | % of GEMM peak |")
  print("|---|---|---|---|---|---|")
  for r in rows:
    rate = r["flops"] / (r["jax_ms"] / 1e3) if r["flops"] else None
    print(f"| {r['name']} | {r['jax_ms']:.2f} | {r['torch_ms']:.2f} | "
          f"{r['ratio']:.2f} | "
          f"{f'{rate / 1e9:.0f}' if rate else '-'} | "
          f"{f'{100 * rate / peak:.0f}%' if rate else '-'} |")


if __name__ == "__main__":
  main()
