"""MoCA Fig. 2: image-space convergence of MoCA and WAE-MMD across λ.

    python -m wae_jax.experiments.moca_fig2 --out=DIR [--size=mnist --data_dir=IDX] [--size=paper]

The paper trains MoCA and WAE-MMD with λ in {0, 1, 10, 100, 1000} on
CIFAR-10 (network A2) and plots the image SWD between the test images and
generated samples every 5 epochs (moca.txt, section 4.1, Figure 2). It makes
three observations: (1) faster convergence: at epoch 5 MoCA's SWD is below
WAE-MMD's at every λ; (2) better approximation: MoCA's final SWD is lower at
every λ; (3) stable optimisation: for MoCA a larger λ gives a smaller SWD.

mnist (CPU, the committed numbers): real MNIST 28x28, the MLP (256, 256) for
both methods, latent 16, batch 100, Adam lr 1e-3 (moca.txt appendix A; β1
0.5 as configs/default.py), 2 epochs (1200 steps), seeds 0, 1, 2. λ is the
paper's scaled by the pixel count, 784 / 3072 (moca.txt appendix D.2 and
Table 3: the best λ grows linearly with the input size): {0.255, 2.55, 25.5,
255}; λ = 0 (plain autoencoders, in the paper's plot but in no observation)
is left out at this size to fit the CPU budget. MoCA: sphere latent, K = 10,000 (below the 60,000 images; Table
5 finds K from 5,000 up equivalent), τ = 0.05, m0 = 0.99 (appendix A's
CIFAR-10 values); WAE-MMD: N(0, I) prior, the IMQ kernel. The image SWD
(`swd_image_avg`, 2000 samples against the first 2000 test images) after
every epoch. Deviations, for a 2-core CPU: the MLP instead of A2, 2 epochs
instead of 100, 2000 images per SWD instead of 10,000.
small (digits): the same with λ scaled by 64 / 3072, 1000 steps, SWD every
10 epochs of the 1400 digits.
Paper: CIFAR-10 with network A2 (configs/cifar10_moca_a2.py) for both methods,
WAE-MMD with an N(0, I) prior on the same network; SWD of 10,000 samples
every 5 epochs, the paper's λ.

Checks, written before the mnist run, each decided over the seeds by
stats.compare (held only beyond twice the standard error of the difference):
(1) at every λ > 0, MoCA's SWD after the first evaluation is below
WAE-MMD's; (2) at every λ > 0, MoCA's final SWD is below WAE-MMD's; (3) for
MoCA, the final SWD falls at every step up in λ > 0.
"""

import time
from typing import Optional

import numpy as np

from wae_jax.experiments import common
from wae_jax.experiments import stats

NAME = "moca_fig2"
SOURCE = "MoCA (Arpit et al. 2021), section 4.1 and Fig. 2"
CLAIM = ("MoCA's samples approach the test images (image SWD) faster than WAE-MMD's, end "
         "closer, and get closer as λ grows.")
METHODS = ("moca", "wae_mmd")
PAPER_LAMBDAS = (0.0, 1.0, 10.0, 100.0, 1000.0)
PAPER_PIXELS = 32 * 32 * 3  # CIFAR-10
METRIC = "swd_image_avg"
EVALUATION_EPOCHS = {"small": 10, "mnist": 1, "paper": 5}
MNIST_EPOCHS = 2


def lambdas(size: str) -> tuple:
  """The paper's λ, scaled by the pixel count (moca.txt appendix D.2)."""
  if size == "toy":
    return (10.0,)
  if size == "paper":
    return PAPER_LAMBDAS
  pixels = common.MNIST_PIXELS if size == "mnist" else 8 * 8
  chosen = PAPER_LAMBDAS[1:] if size == "mnist" else PAPER_LAMBDAS
  return tuple(round(l * pixels / PAPER_PIXELS, 3) for l in chosen)


def make_configs(size: str, out: str, data_dir: str) -> dict:
  """{cell: config} for every method and λ (the seeds are added by common.seeded)."""
  configs = {}
  for method in METHODS:
    for lambda_reg in lambdas(size):
      if size == "paper":
        config = common.file_config("cifar10_moca_a2", data_dir)
        config.evaluation.num_samples = 10_000
      elif size == "mnist":
        config = common.mnist_config(data_dir)
        config.latent_dim = 16
        config.num_train_steps = MNIST_EPOCHS * 60_000 // config.batch_size
        config.evaluation.num_samples = 2000
        config.evaluation.swd_images = 2000
        config.evaluation.probe_train_examples = 1000  # the probes are not read here
      else:
        config = common.base_config()
        config.num_train_steps = 1000
        config.evaluation.num_samples = 300  # the whole digits test split
      common.set_method(config, method)
      if method == "wae_mmd":  # the paper config is MoCA's: back to the WAE's N(0, I)
        config.prior = "gaussian"
        config.model.encoder = "deterministic"
      elif size != "paper":
        config.moca.queue_size = 10_000 if size == "mnist" else 1000
        config.moca.temperature = 0.05  # moca.txt appendix A (CIFAR-10)
        config.moca.momentum_base = 0.99
      config.lambda_reg = lambda_reg
      config.best_metric = METRIC  # so that every evaluation computes it
      if size == "toy":
        common.shrink_to_toy(config, out)
      configs[run_name(method, lambda_reg)] = config
  return configs


def run_name(method: str, lambda_reg: float) -> str:
  return f"{method}_lambda{lambda_reg:g}"


def checks_of(runs: dict, lambdas_run, seeds) -> tuple:
  """(summary, checks) from the runs' SWD curves."""
  first, final, by_cell = {}, {}, {}
  for method in METHODS:
    for lambda_reg in lambdas_run:
      cell = run_name(method, lambda_reg)
      curves = [common.curve(runs[common.seed_run_name(cell, s)]["history"], METRIC)[1]
                for s in seeds]
      first[cell] = [c[0] for c in curves]
      final[cell] = [c[-1] for c in curves]
      by_cell[cell] = {"first": stats.aggregate(first[cell]),
                       "final": stats.aggregate(final[cell]),
                       "mean_over_evaluations": stats.aggregate([np.mean(c) for c in curves])}
  positive = [l for l in lambdas_run if l > 0]
  checks = {}
  for lambda_reg in positive:
    moca, wae = run_name("moca", lambda_reg), run_name("wae_mmd", lambda_reg)
    checks[f"(1) λ={lambda_reg:g}: MoCA's SWD at the first evaluation < WAE-MMD's"] = (
        stats.compare(first[moca], first[wae]))
    checks[f"(2) λ={lambda_reg:g}: MoCA's final SWD < WAE-MMD's"] = stats.compare(
        final[moca], final[wae])
  for lower, higher in zip(positive, positive[1:]):
    checks[f"(3) MoCA's final SWD at λ={higher:g} < at λ={lower:g}"] = stats.compare(
        final[run_name("moca", higher)], final[run_name("moca", lower)])
  return {"by_cell": by_cell}, checks


def run(out: str, size: str = "small", data_dir: str = "",
        pack: Optional[int] = None) -> dict:
  start = time.time()
  seeds = common.SEEDS[size]
  cells = make_configs(size, out, data_dir)
  common.check_data(cells.values())
  if size != "toy":
    for config in cells.values():
      common.evaluate_every_epochs(config, EVALUATION_EPOCHS[size])
  runs = common.train_runs(common.seeded(cells, seeds), out, pack)
  lambdas_run = sorted({c.lambda_reg for c in cells.values()})
  summary, checks = checks_of(runs, lambdas_run, seeds)

  steps_per_epoch = common.steps_per_epoch(cells[next(iter(cells))])
  figure, axes = common.plt.subplots(1, len(METHODS), figsize=(11, 4.2), sharey=True)
  for axis, method in zip(axes, METHODS):
    for index, lambda_reg in enumerate(lambdas_run):
      cell = run_name(method, lambda_reg)
      histories = [runs[common.seed_run_name(cell, s)]["history"] for s in seeds]
      steps = common.curve(histories[0], METRIC)[0]
      epochs = [s / steps_per_epoch for s in steps]
      common.band(axis, epochs, [common.curve(h, METRIC)[1] for h in histories],
                  f"λ={lambda_reg:g}", color=f"C{index}")
    axis.set(title=method, xlabel="epoch", yscale="log")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  axes[0].set_ylabel(f"image SWD x1e3 (mean ± std, {len(seeds)} seeds)")
  plots = [common.save_figure(figure, out, "swd_vs_epoch.png")]

  settings = {"dataset": cells[next(iter(cells))].dataset, "lambdas": list(lambdas_run),
              "metric": METRIC, "methods": list(METHODS),
              "latent_dim": int(cells[next(iter(cells))].latent_dim),
              "num_train_steps": int(cells[next(iter(cells))].num_train_steps)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start, seeds, data_dir, pack)


if __name__ == "__main__":
  common.main(run)
