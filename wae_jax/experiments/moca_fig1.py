"""MoCA Fig. 1: matching the latent distribution without reconstruction.

    python -m wae_jax.experiments.moca_fig1 --out=DIR [--size=mnist]

The paper maps 1000 points of 100-d synthetic data through a 2-layer MLP to
128-d unit codes and trains the encoder on the regulariser alone (no
reconstruction term): MoCA's contrastive loss with its EMA key encoder and
queue, MMD, sliced Wasserstein and Sinkhorn; Adam, lr 1e-3, 80 epochs. Every
epoch it measures the SWD between the codes and uniform samples on the
sphere: the contrastive term gets there fastest.

Here: the library's `synthetic` data (1000 N(0, I) points in 100-d), the MLP
encoder 100 -> 256 -> 128 with unit-norm codes (`model.encoder=sphere`), the
sphere prior, `reconstruction_scale=0` (the decoder gets no gradient), λ = 1,
Adam (lr 1e-3, betas 0.9/0.999), batch 100 (10 steps per epoch), 80 epochs.
MoCA: `moca` with m0 = 0.99, both forms of the contrastive loss
(`algorithm1`, the paper's Algorithm 1 cross-entropy, and `eq6`, its Eq. 6
alignment + entropy form) at two temperatures: τ = 0.05 (the paper's image
experiments, moca.txt appendix A) and τ = 1 (its CelebA-HQ run); the paper
does not give Fig. 1's τ or K. K = 500, half the data set (at K = 1000 the
queue would hold every point's key: the issue's finding). The baselines:
`wae_mmd` with regularizer mmd (IMQ, the library's scales), sliced (64
directions) and sinkhorn (ε = 0.1, 50 iterations). Each epoch: `latent_swd`
and `latent_mmd` of the codes of the 1000 training points against 1000
uniform samples (the evaluator's latent diagnostics, fixed draws). The dashed
line is the SWD between two independent uniform samples of that size, the
floor. The training loop is `method.train_step` under jax.jit, not the
trainer: the trainer would checkpoint at each of the 80 measurements.

Every arm runs with seeds 0, 1, 2 (toy: 0, 1; the seed sets the network's
initialisation and the batch order, the data stay fixed); --size=mnist and
small are the same synthetic experiment (there is no MNIST here), paper
too. The plot is Fig. 1's form: log SWD against the epoch, mean over seeds
with a ± std band.

Checks, written before the run: for each MoCA arm (loss form x τ) and each
baseline, MoCA's SWD averaged over the 80 epochs (lower = matched sooner)
is below the baseline's, decided over the seeds by stats.compare (held only
beyond twice the standard error of the difference).
"""

import time

import jax
import numpy as np

from wae_jax import losses
from wae_jax import methods
from wae_jax import priors
from wae_jax import train as train_lib
from wae_jax.evaluation import latent
from wae_jax.experiments import common
from wae_jax.experiments import stats
from wae_jax.methods.shared import autoencoder

NAME = "moca_fig1"
SOURCE = "MoCA (Arpit et al. 2021), Fig. 1"
CLAIM = ("Trained on the regulariser alone, MoCA's contrastive loss matches the uniform "
         "distribution on the sphere faster than MMD, sliced Wasserstein and Sinkhorn.")
# arm: (method, wae_mmd regularizer, MoCA temperature τ, MoCA loss form)
RUNS = {"moca_algorithm1_tau0.05": ("moca", None, 0.05, "algorithm1"),
        "moca_eq6_tau0.05": ("moca", None, 0.05, "eq6"),
        "moca_algorithm1_tau1": ("moca", None, 1.0, "algorithm1"),
        "moca_eq6_tau1": ("moca", None, 1.0, "eq6"),
        "mmd": ("wae_mmd", "mmd", None, None), "sliced": ("wae_mmd", "sliced", None, None),
        "sinkhorn": ("wae_mmd", "sinkhorn", None, None)}
MOCA_RUNS = tuple(name for name, arm in RUNS.items() if arm[0] == "moca")
EPOCHS = 80
NUM_POINTS = 1000
QUEUE_SIZE = 500  # K < the 1000 points (a multiple of the batch)


def make_config(name: str, size: str, seed: int):
  method, regularizer, temperature, loss_form = RUNS[name]
  config = common.base_config()
  common.set_method(config, method)
  config.model.encoder = "sphere"
  config.prior = "sphere"
  if regularizer:
    config.regularizer = regularizer
  if temperature:
    config.moca.temperature = temperature
    config.moca.loss_form = loss_form
    config.moca.momentum_base = 0.99  # m0, moca.txt appendix A
  config.seed = seed
  config.dataset = "synthetic"
  config.synthetic_num_points = NUM_POINTS
  config.synthetic_dim = 100
  config.model.decoder_output = "logits"  # the data is not in [0, 1]
  config.model.hidden_sizes = (256,)
  config.latent_dim = 128
  config.reconstruction_scale = 0.0
  config.lambda_reg = 1.0
  config.optimizer.b1 = 0.9
  config.batch_size = 100
  config.moca.queue_size = QUEUE_SIZE
  if size == "toy":
    config.synthetic_num_points = 32
    config.batch_size = 8
    config.model.hidden_sizes = (16,)
    config.moca.queue_size = 16
  return config


def train_latent_matching(config, epochs: int, key: jax.Array) -> list:
  """Trains `config` for `epochs`; the latent SWD/MMD of the training codes after each.

  Returns:
    [{"step", "epoch", "latent_swd", "latent_mmd"}] for epochs 0 .. `epochs`.
  """
  method = methods.get(config.method)
  config, source = train_lib.prepare_config(config, num_devices=1)
  config.num_train_steps = epochs * source.steps_per_epoch  # MoCA's momentum schedule
  state = train_lib.initial_state(method, config, source)
  step = jax.jit(method.train_step)
  points, _ = common.train_images(config, config.synthetic_num_points)
  batches = source.train_batches(0)
  history = []
  for epoch in range(epochs + 1):
    if epoch:
      for _ in range(source.steps_per_epoch):
        state, _ = step(state, next(batches))
    distances = latent.latent_distances(common.encode(state, config, points), config, key,
                                        mmd_settings=autoencoder.mmd_settings(config))
    history.append({"step": epoch * source.steps_per_epoch, "epoch": epoch, **distances})
  return history


def sphere_floor(config, key: jax.Array) -> float:
  """SWD between two independent uniform samples as large as the data, on the sphere."""
  first, second, directions = jax.random.split(key, 3)
  num, dim = int(config.synthetic_num_points), int(config.latent_dim)
  sphere = priors.SpherePrior()
  return float(losses.sliced_wasserstein(
      sphere.sample(first, num, dim), sphere.sample(second, num, dim), directions,
      num_projections=latent.LATENT_SWD_PROJECTIONS))


def run(out: str, size: str = "small", data_dir: str = "") -> dict:
  del data_dir  # synthetic data only
  start = time.time()
  seeds = common.SEEDS[size]
  epochs = 2 if size == "toy" else EPOCHS
  key = jax.random.PRNGKey(0)
  runs, curves = {}, {}
  # The toy checks the wiring of both kinds of method (MoCA, wae_mmd).
  names = ("moca_eq6_tau0.05", "mmd") if size == "toy" else tuple(RUNS)
  for name in names:
    curves[name] = []
    for seed in seeds:
      run_name = common.seed_run_name(name, seed)
      config = make_config(name, size, seed)
      print(f"[{run_name}] {epochs} epochs", flush=True)
      history = train_latent_matching(config, epochs, key)
      runs[run_name] = {"config": common.overrides(config, common.base_config()),
                        "history": history}
      curves[name].append([h["latent_swd"] for h in history])

  config = make_config("mmd", size, 0)
  floor = sphere_floor(config, key)
  means = {name: [float(np.mean(c[1:])) for c in curves[name]] for name in names}
  by_method = {name: {"mean_swd_over_epochs": stats.aggregate(means[name]),
                      "final_swd": stats.aggregate([c[-1] for c in curves[name]]),
                      "initial_swd": stats.aggregate([c[0] for c in curves[name]])}
               for name in names}
  summary = {"by_method": by_method, "swd_floor": floor}
  checks = {f"{moca}'s mean SWD over the epochs < {name}'s":
                stats.compare(means[moca], means[name])
            for moca in names if moca in MOCA_RUNS
            for name in names if name not in MOCA_RUNS}
  epochs_axis = list(range(epochs + 1))
  figure, axis = common.plt.subplots(figsize=(7, 4.5))
  for index, name in enumerate(names):
    style = {"color": f"C{index}", "linestyle": "--" if "tau1" in name else "-"}
    common.band(axis, epochs_axis, curves[name], name, **style)
  axis.axhline(floor, color="grey", linestyle=":", label="two uniform samples")
  axis.set(xlabel="epoch", ylabel="SWD(codes, uniform on the sphere)", yscale="log",
           title=f"regulariser alone, {config.synthetic_num_points} points, "
                 f"d={config.latent_dim}, K={config.moca.queue_size} "
                 f"(mean ± std, {len(seeds)} seeds)")
  axis.legend(fontsize=7)
  axis.grid(alpha=0.3)
  plots = [common.save_figure(figure, out, "swd_vs_epoch.png")]

  settings = {"dataset": "synthetic", "num_points": int(config.synthetic_num_points),
              "data_dim": int(config.synthetic_dim), "latent_dim": int(config.latent_dim),
              "epochs": epochs, "batch_size": int(config.batch_size),
              "queue_size": int(make_config(names[0], size, 0).moca.queue_size)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start, seeds)


if __name__ == "__main__":
  common.main(run, reads_mnist=False, packs=False)
