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
that take turns: each round times a block of torch iterations (for the conv
steps, one in torch's default NCHW layout and one in channels_last), then a
block of JAX iterations, so both see the same machine load; the table gives
medians over rounds of the times and of each round's ratio = torch time / JAX
time (above 1: this library is faster), against NCHW and against the faster
torch layout of the round. On a GPU see vs_torch_gpu.py. It also measures the machine's GEMM peak
(the best of jnp.dot and torch.matmul on 2048^3 float32) and, for the conv
steps, the model FLOPs per step (wae_jax/flops.py: the plain layers'
dots and convolutions) as a share of it.

torch is an optional, benchmark-only dependency (`pip install torch`, the CPU
build); without it this prints a message and exits.

  python benchmarks/vs_torch.py                    # every workload (a few minutes)
  python benchmarks/vs_torch.py --only=mlp,losses  # a subset: mlp, dcgan (or dcgan_eighth,
                                                   # dcgan_full), losses
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
  for label, width, token in (("1/8", 0.125, "dcgan_eighth"), ("full", 1.0, "dcgan_full")):
    if "dcgan" in only or token in only:
      rows.append((f"WAE MNIST DCGAN step, {label} width, batch 100", "step",
                   {"method": "wae_mmd", "net": "dcgan", "width": width}))
  if "losses" in only:
    rows += [(f"mmd_penalty fwd+bwd ({b}, {d})", "mmd", {"batch": b, "dim": d})
             for b, d in MMD_SHAPES]
    rows += [(f"moca_loss fwd+bwd ({b}, {d}, K={k})", "moca", {"batch": b, "dim": d, "k": k})
             for b, d, k in MOCA_SHAPES]
  return rows


def step_config(spec):
  """The trainer config of a step workload (what benchmarks/step.py times).

  spec: method, net (mlp | dcgan | resnet18), width (conv nets), and
  optionally batch (default 100), dtype (float32 | bfloat16) and queue
  (MoCA's K, default 1000).
  """
  from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top
  config = step_benchmark.make_config(spec["method"], spec["net"], spec.get("batch", 100),
                                      spec.get("dtype", "float32"))
  if spec["net"] != "mlp":
    config.model.width_multiplier = spec["width"]
  if spec["method"] == "moca":
    config.moca.queue_size = spec.get("queue", 1000)
  return config


def twin_spec(spec):
  """What the torch twin needs to know about a step workload's config."""
  from benchmarks import step as step_benchmark  # pylint: disable=g-import-not-at-top
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
          "m0": config.moca.momentum_base, "input_noise": config.encoder_input_noise,
          "image": list(step_benchmark.image_shape(spec["net"]))}


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
      host_batch = step_benchmark.random_batch(config.batch_size, spec["net"])
      self.step, self.state, self.batch = step_benchmark.build_step(config, host_batch)
      self.parameter_count = sum(x.size for x in jax.tree.leaves(self.state.params))
      if spec["net"] != "mlp":
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
  """Reads JSON commands on stdin, answers one JSON line each on stdout.

  setup(kind, spec, variants) builds one twin per variant (VARIANTS) of the
  workload; time(variant, n) runs n iterations of one of them.
  """
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  workloads = {}
  for line in sys.stdin:
    request = json.loads(line)
    if request["cmd"] == "setup":
      workloads = {}  # the previous workload's twins are freed first
      for variant in request.get("variants", ["eager"]):
        workloads[variant] = TorchWorkload(torch, request["kind"], request["spec"], variant,
                                           request.get("device", "cpu"))
        workloads[variant].run(request.get("warmup", 1))  # compiles, autotunes
      answer = {"ok": True}
    elif request["cmd"] == "time":
      workload = workloads[request.get("variant", "eager")]
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
    elif request["cmd"] == "version":
      answer = {"version": torch.__version__,
                "device": (torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")}
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


# How a PyTorch user would run the twin: name -> (channels_last, autocast
# bfloat16, torch.compile).
VARIANTS = {
    "eager": (False, False, False),
    "channels_last": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "compile_bf16_channels_last": (True, True, True),
}


def torch_resnet18(torch, image, latent, width, sphere):
  """MoCA's A2 ResNet-18 encoder and its mirrored decoder (wae_jax/models/
  resnet.py), layer for layer: the same convolutions, channels and parameter
  counts. Stride-2 3x3 convs pad (1, 1) where flax's 'SAME' pads (0, 1): the
  same shapes and FLOPs."""
  nn = torch.nn
  scale = lambda n: max(1, int(round(n * width)))
  stages = ((2, 64, 1), (2, 128, 2), (2, 256, 2), (2, 512, 2))

  class Block(nn.Module):
    """BasicBlock; up=True is the block run backwards (resnet.py)."""

    def __init__(self, cin, cout, stride, up):
      super().__init__()
      resize = stride == 2
      if up:
        self.first = nn.Conv2d(cin, cin, 3, 1, 1, bias=False)
        self.second = (nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=False)
                       if resize else nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        mid = cin
      else:
        self.first = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.second = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        mid = cout
      self.norm1, self.norm2 = nn.BatchNorm2d(mid), nn.BatchNorm2d(cout)
      self.project = None
      if resize or cin != cout:
        if up:
          conv = (nn.ConvTranspose2d(cin, cout, 2, 2, bias=False) if resize
                  else nn.Conv2d(cin, cout, 1, bias=False))
        else:
          conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.project = nn.Sequential(conv, nn.BatchNorm2d(cout))

    def forward(self, x):
      y = self.norm2(self.second(torch.relu(self.norm1(self.first(x)))))
      return torch.relu(y + (self.project(x) if self.project is not None else x))

  class Encoder(nn.Module):
    def __init__(self):
      super().__init__()
      layers, cin = [nn.Conv2d(image[2], scale(64), 3, 1, 1, bias=False),
                     nn.BatchNorm2d(scale(64)), nn.ReLU()], scale(64)
      for blocks, channels, stride in stages:
        for i in range(blocks):
          layers.append(Block(cin, scale(channels), stride if i == 0 else 1, up=False))
          cin = scale(channels)
      self.body = nn.Sequential(*layers)
      self.head = nn.Linear(cin, latent)

    def forward(self, x):
      z = self.head(self.body(x).mean((2, 3)))
      return z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12) if sphere else z

  class Decoder(nn.Module):
    def __init__(self):
      super().__init__()
      self.start = (scale(512), image[0] // 8, image[1] // 8)
      self.dense = nn.Linear(latent, self.start[0] * self.start[1] * self.start[2])
      layers, cin = [nn.BatchNorm2d(self.start[0]), nn.ReLU()], self.start[0]
      for s in reversed(range(len(stages))):
        blocks, channels, stride = stages[s]
        previous = stages[s - 1][1] if s > 0 else 64
        for i in range(blocks):
          last = i == blocks - 1
          cout = scale(previous if last else channels)
          layers.append(Block(cin, cout, stride if last else 1, up=True))
          cin = cout
      layers.append(nn.Conv2d(cin, image[2], 3, 1, 1))
      self.body = nn.Sequential(*layers)

    def forward(self, z):
      return self.body(self.dense(z).view(z.shape[0], *self.start))

  return Encoder(), Decoder()


class TorchWorkload:
  """The torch twin of one workload; run(n) runs n iterations (and waits for
  the GPU). `variant` is a key of VARIANTS; `device` 'cpu' or 'cuda'."""

  def __init__(self, torch, kind, spec, variant="eager", device="cpu"):
    self.torch = torch
    self.device = torch.device(device)
    self.channels_last, self.bf16, self.compiled = VARIANTS[variant]
    if device == "cuda":  # JAX's default float32 precision on these GPUs: TF32
      torch.backends.cuda.matmul.allow_tf32 = True
      torch.backends.cudnn.allow_tf32 = True
      torch.backends.cudnn.benchmark = True
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
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()

  def _networks(self, s):
    """(encoder, decoder) of the step's net, as torch modules."""
    torch = self.torch
    nn = torch.nn
    h, w, c = s["image"]
    latent = s["latent"]
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
      return encoder, decoder
    if s["net"] == "resnet18":
      return torch_resnet18(torch, (h, w, c), latent, s["width"], s["method"] == "moca")
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
    return encoder, decoder

  def _build_step(self, s, gen):
    torch = self.torch
    nn = torch.nn
    device = self.device
    h, w, c = s["image"]
    latent, batch = s["latent"], s["batch"]
    encoder, decoder = self._networks(s)
    memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
    encoder = encoder.to(device, memory_format=memory_format)
    decoder = decoder.to(device, memory_format=memory_format)
    self.encoder, self.decoder = encoder, decoder
    after_step = lambda: None
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.Adam(params, lr=s["lr"], betas=(s["b1"], s["b2"]))
    x = torch.rand(batch, c, h, w, generator=gen).to(device, memory_format=memory_format)
    lam, scales, prior_var = s["lam"], s["scales"], s["prior_var"]
    randn = lambda *shape: torch.randn(*shape, device=device)
    # The losses in float32, as the trainer computes them under bfloat16 too.
    reconstruction = lambda out: ((torch.sigmoid(out.float()) - x) ** 2).sum((1, 2, 3)).mean()
    # The WAE encoders' input noise (the paper configs' 'add_noise': a normal cut at 2 std),
    # drawn each step as the trainer draws it.
    noise_std = s.get("input_noise", 0.0)
    noisy = ((lambda images: images + noise_std * nn.init.trunc_normal_(
        torch.empty_like(images), a=-2.0, b=2.0)) if noise_std > 0 else (lambda images: images))

    if s["method"] == "wae_mmd":
      def loss_fn():
        z = encoder(noisy(x)).float()
        return reconstruction(decoder(z)) + lam * imq_mmd(
            torch, z, randn(batch, latent) * prior_var ** 0.5, scales, prior_var)
    elif s["method"] == "vae":
      def loss_fn():
        mean, logvar = encoder(x).float().chunk(2, dim=1)
        logvar = logvar.clamp(-10.0, 5.0)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        nll = nn.functional.binary_cross_entropy_with_logits(
            decoder(z).float(), x, reduction="none").sum((1, 2, 3)).mean()
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).sum(1).mean()
        return nll + kl
    elif s["method"] == "wae_gan":
      sizes = [latent] + s["adversary_hidden"]
      adversary = nn.Sequential(*[m for a, b in zip(sizes[:-1], sizes[1:])
                                  for m in (nn.Linear(a, b), nn.ReLU())],
                                nn.Linear(sizes[-1], 1)).to(device)
      adv_opt = torch.optim.Adam(adversary.parameters(), lr=s["adversary_lr"],
                                 betas=(s["adversary_b1"], 0.999))
      log_prior = lambda z: -0.5 * (z ** 2).sum(1) / prior_var
      if s["adversary_log_prior"]:
        logit = lambda z: adversary(z)[:, 0].float() + log_prior(z)
      else:
        logit = lambda z: adversary(z)[:, 0].float()
      bce = nn.functional.binary_cross_entropy_with_logits
      ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)
      def loss_fn():
        z = encoder(noisy(x)).float()
        prior = randn(batch, latent)
        adv_loss = bce(logit(prior), ones) + bce(logit(z.detach()), zeros)
        adv_opt.zero_grad()
        adv_loss.backward()
        adv_opt.step()
        return reconstruction(decoder(z)) + lam * bce(logit(z), ones)
    else:  # moca
      import copy  # pylint: disable=g-import-not-at-top
      key_encoder = copy.deepcopy(encoder)
      for p in key_encoder.parameters():
        p.requires_grad_(False)
      unit = lambda v: v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
      queue = unit(torch.randn(s["queue"], latent, generator=gen)).to(device)
      state = {"ptr": 0}
      def loss_fn():
        with torch.no_grad():
          for kp, qp in zip(key_encoder.parameters(), encoder.parameters()):
            kp.mul_(s["m0"]).add_(qp, alpha=1 - s["m0"])
          keys = unit(key_encoder(x).float())
        q = unit(encoder(x).float())
        state["keys"] = keys
        return reconstruction(decoder(q)) + lam * moca_loss(torch, q, keys, queue, s["tau"])

      def enqueue():  # after the backward pass, which reads the queue
        queue[state["ptr"]:state["ptr"] + batch] = state["keys"]
        state["ptr"] = (state["ptr"] + batch) % queue.shape[0]
      after_step = enqueue

    if self.bf16:
      plain_loss = loss_fn
      def loss_fn():
        with torch.autocast(device.type, dtype=torch.bfloat16):
          return plain_loss()
    if self.compiled:
      loss_fn = torch.compile(loss_fn)

    def iteration():
      opt.zero_grad()
      loss = loss_fn()
      loss.backward()
      opt.step()
      after_step()
      return loss
    self.iteration = iteration

  def parameter_count(self) -> int:
    return sum(p.numel() for m in (self.encoder, self.decoder) for p in m.parameters())


# ----------------------------------------------------------------------------
# Driver.


def torch_missing(script: str, build: str = "the CPU build") -> bool:
  """Whether torch, an optional benchmark-only dependency, is absent (then
  says that `script` is skipped)."""
  if importlib.util.find_spec("torch") is not None:
    return False
  print(f"{script} needs PyTorch, an optional benchmark-only dependency: pip install torch "
        f"({build}); skipped.")
  return True


class TorchProcess:
  """A torch child process that answers JSON requests one line each:
  this script's worker (setup(kind, spec, variants), then time(variant, n)),
  or the worker of `script`, started with --torch_worker."""

  def __init__(self, threads: int, script: str = __file__):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(script), "--torch_worker",
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


def interleaved(jax_run, torch_process, variants, rounds, round_seconds):
  """Times JAX and each torch variant in turn, `rounds` times.

  Returns:
    (JAX seconds per iteration per round, {variant: torch seconds per
    iteration per round}). Both sides are set up (and compiled) already.
  """
  start = time.perf_counter()
  jax_run(1)
  n_jax = iterations_per_round(time.perf_counter() - start, round_seconds)
  n_torch = {v: iterations_per_round(torch_process.ask(cmd="time", variant=v, n=1)["seconds"],
                                     round_seconds) for v in variants}
  jax_times, torch_times = [], {v: [] for v in variants}
  for _ in range(rounds):
    for v in variants:
      torch_times[v].append(
          torch_process.ask(cmd="time", variant=v, n=n_torch[v])["seconds"] / n_torch[v])
    start = time.perf_counter()
    jax_run(n_jax)
    jax_times.append((time.perf_counter() - start) / n_jax)
  return jax_times, torch_times


def median_ratio(torch_times, jax_times):
  """Median over rounds of torch / JAX (each round's blocks are adjacent, so
  the ratio holds while a shared machine's speed drifts)."""
  return statistics.median(t / j for t, j in zip(torch_times, jax_times))


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
  if torch_missing("benchmarks/vs_torch.py"):
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
      # Convolutions: torch's default NCHW and its channels_last layout.
      variants = ["eager", "channels_last"] if spec.get("net", "mlp") != "mlp" else ["eager"]
      torch_process.ask(cmd="setup", kind=kind, variants=variants,
                        spec=twin_spec(spec) if kind == "step" else spec)
      jax_times, torch_times = interleaved(jax_side.run, torch_process, variants,
                                           args.rounds, args.round_seconds)
      best = [min(ts) for ts in zip(*torch_times.values())]
      row = {"name": name, "jax_ms": 1e3 * statistics.median(jax_times),
             "torch_ms": {v: 1e3 * statistics.median(t) for v, t in torch_times.items()},
             "ratio": median_ratio(torch_times["eager"], jax_times),
             "best_ratio": median_ratio(best, jax_times), "flops": jax_side.flops}
      rows.append(row)
      print(f"{name}: jax {row['jax_ms']:.2f} ms, torch " + ", ".join(
          f"{v} {ms:.2f} ms" for v, ms in row["torch_ms"].items()), file=sys.stderr, flush=True)
      del jax_side
  finally:
    torch_process.close()

  device = jax.devices()[0]
  print(f"\nJAX {jax.__version__} ({device.platform}, XLA_FLAGS={os.environ['XLA_FLAGS']}) "
        f"vs PyTorch {gemm_torch['version']} eager, {args.torch_threads} thread(s); median of "
        f"{args.rounds} interleaved rounds; ratio = median over rounds of torch / JAX (above 1: "
        "this library is faster), against torch's default NCHW and against the faster of NCHW "
        "and channels_last in each round (convolutions only)")
  print(f"GEMM peak ({GEMM_SIZE}^3 float32, best of jnp.dot and torch.mm): "
        f"{peak / 1e9:.0f} GFLOP/s, load average {os.getloadavg()[0]:.1f}\n")
  print("| workload | JAX ms | torch ms | torch channels_last ms | ratio | ratio vs best torch "
        "| JAX model GFLOP/s | % of GEMM peak |")
  print("|---|---|---|---|---|---|---|---|")
  for r in rows:
    rate = r["flops"] / (r["jax_ms"] / 1e3) if r["flops"] else None
    channels_last = r["torch_ms"].get("channels_last")
    print(f"| {r['name']} | {r['jax_ms']:.2f} | {r['torch_ms']['eager']:.2f} | "
          f"{f'{channels_last:.2f}' if channels_last else '-'} | {r['ratio']:.2f} | "
          f"{r['best_ratio']:.2f} | "
          f"{f'{rate / 1e9:.0f}' if rate else '-'} | "
          f"{f'{100 * rate / peak:.0f}%' if rate else '-'} |")


if __name__ == "__main__":
  main()
