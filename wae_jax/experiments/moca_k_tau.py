"""MoCA Table 5 / Fig. 10: the queue size K, and the best λ per temperature τ.

    python -m wae_jax.experiments.moca_k_tau --out=DIR [--size=mnist --data_dir=IDX] [--size=paper]

Appendix D of the paper (moca.txt) runs its ablations on CelebA with τ = 1,
m0 = 0.999, λ = 3000, K = 60,000 unless it says otherwise. Table 5 (D.5):
"The performance is largely stable across different values of K unless K is
too small" (K = 100 is much worse). Figure 10 (D.4): for each τ a sweep of
λ, "Optimal λ is lower for lower τ. Best FID is better for lower τ."

mnist (CPU, the committed numbers): MoCA on real MNIST 28x28, MLP (256, 256),
latent 16, batch 100, Adam lr 1e-3, 2 epochs (1200 steps), seeds 0, 1, 2,
appendix D's τ = 1 and m0 = 0.999, λ scaled by the pixel count from CelebA
64x64x3 (12,288) to 784 (appendix D.2, Table 3): 3000 -> 191.4.
Table 5: K in {100, 1000, 10000} (below the 60,000 images) at that λ and τ.
Figure 10: τ in {0.05, 1} (the paper's image value and appendix D's
default), each with appendix A's λ grid {100, 1000, 3000, 6000} scaled the
same way, {6.38, 63.8, 191.4, 382.8}, at K = 10,000 (K cut to three values to
fit the CPU budget). A first run without λ = 100 put the best λ of every seed
at the grid's lower edge for both τ, so the grid is the paper's whole one. Sample distance:
`fd_mnist_idx_classifier` (10,000 samples against the 10,000 test images,
pinned MNIST net). Deviations: the MLP and latent 16 instead of A2 and 128,
2 epochs instead of 200 (Figure 10's runs: 50), K scaled to MNIST's size.
small (digits): the same grid with λ scaled by 64 / 12288, K in {100, 300,
1000, 1400} (K = 1000 for the λ sweep), 1000 steps, 1000 samples.
Paper: appendix D's base, configs/celeba_moca_a2.py with τ = 1, m0 = 0.999,
λ = 3000: K in Table 5's {100, 5000, 10000, 30000, 60000, 120000} rounded
down to multiples of the batch 64, and τ in {0.05, 1} each with the λ grid
{100, 1000, 3000, 6000} at K = 59968.

Checks, written before the mnist run, each decided over the seeds by
stats.compare (held only beyond twice the standard error of the
difference): K = 100 gives a higher distance than each larger K; the best
distance over λ (per seed) is lower at τ = 0.05 than at τ = 1; the best λ
(per seed, on a log scale) is lower at τ = 0.05 than at τ = 1.
"""

import math
import time
from typing import Optional

import numpy as np

from wae_jax.experiments import common
from wae_jax.experiments import stats

NAME = "moca_k_tau"
SOURCE = "MoCA (Arpit et al. 2021), appendix D.4-D.5, Table 5 and Fig. 10"
CLAIM = ("The sample quality is stable across K unless K is too small (100); a lower τ "
         "has a lower optimal λ and a better best distance.")
APPENDIX_D = {"temperature": 1.0, "momentum_base": 0.999, "lambda": 3000.0}
PAPER_LAMBDAS = (100.0, 1000.0, 3000.0, 6000.0)  # moca.txt appendix A's grid
MNIST_LAMBDAS = PAPER_LAMBDAS  # the whole grid (the docstring says why)
APPENDIX_D_PIXELS = 64 * 64 * 3  # CelebA
TAUS = (0.05, 1.0)
# Paper: Table 5's K rounded down to multiples of the batch 64, around appendix D's 60000.
QUEUES = {"toy": (8, 16), "small": (100, 300, 1000, 1400),
          "mnist": (100, 1000, 10_000), "paper": (64, 4992, 9984, 29952, 59968, 119936)}
SWEEP_QUEUE = {"toy": 16, "small": 1000, "mnist": 10_000, "paper": 59968}
MNIST_EPOCHS = 2


def scaled(lambda_reg: float, size: str) -> float:
  """λ scaled from appendix D's CelebA pixel count to this size's (appendix D.2)."""
  if size == "paper":
    return lambda_reg
  pixels = {"mnist": common.MNIST_PIXELS}.get(size, 8 * 8)
  return round(lambda_reg * pixels / APPENDIX_D_PIXELS, 2)


def grid(size: str) -> list:
  """(K, τ, λ) cells: Table 5's K sweep, then Figure 10's λ sweep per τ (no repeats)."""
  default_lambda = scaled(APPENDIX_D["lambda"], size)
  cells = [(k, APPENDIX_D["temperature"], default_lambda) for k in QUEUES[size]]
  lambdas = {"toy": PAPER_LAMBDAS[1:3], "mnist": MNIST_LAMBDAS}.get(size, PAPER_LAMBDAS)
  for tau in TAUS:
    for lambda_reg in lambdas:
      cell = (SWEEP_QUEUE[size], tau, scaled(lambda_reg, size))
      if cell not in cells:
        cells.append(cell)
  return cells


def cell_name(queue_size: int, temperature: float, lambda_reg: float) -> str:
  return f"K{queue_size}_tau{temperature:g}_lambda{lambda_reg:g}"


def make_configs(size: str, out: str, data_dir: str) -> dict:
  configs = {}
  for queue_size, temperature, lambda_reg in grid(size):
    if size == "paper":
      config = common.file_config("celeba_moca_a2", data_dir)  # appendix D's base
      config.evaluation.final_metrics = ("full",)
    else:
      if size == "mnist":
        config = common.mnist_config(data_dir)
        config.num_train_steps = MNIST_EPOCHS * 60_000 // config.batch_size
        config.evaluation.probe_train_examples = 1000  # the probes are not read here
      else:
        config = common.base_config()
        config.num_train_steps = 1000
        config.evaluation.num_samples = 1000
      common.set_method(config, "moca")
      config.latent_dim = 16
      config.eval_every_steps = config.num_train_steps
      config.checkpoint_every_steps = config.num_train_steps
      config.evaluation.final_metrics = ("fd_classifier",)
    config.moca.momentum_base = APPENDIX_D["momentum_base"]
    if size == "toy":
      common.shrink_to_toy(config, out)
    config.moca.queue_size = queue_size
    config.moca.temperature = temperature
    config.lambda_reg = lambda_reg
    configs[cell_name(queue_size, temperature, lambda_reg)] = config
  return configs


def run(out: str, size: str = "small", data_dir: str = "",
        pack: Optional[int] = None) -> dict:
  start = time.time()
  seeds = common.SEEDS[size]
  cells = make_configs(size, out, data_dir)
  runs = common.train_runs(common.seeded(cells, seeds), out, pack)
  names = list(cells)
  distance = common.sample_distance(runs[common.seed_run_name(names[0], seeds[0])]["final"])
  values = {c: common.per_seed(runs, c, seeds, distance) for c in names}
  by_cell = {c: {"K": int(cells[c].moca.queue_size), "tau": float(cells[c].moca.temperature),
                 "lambda": float(cells[c].lambda_reg), distance: stats.aggregate(values[c])}
             for c in names}

  default_lambda = scaled(APPENDIX_D["lambda"], size)
  k_cells = [cell_name(k, APPENDIX_D["temperature"], default_lambda) for k in QUEUES[size]]
  checks = {}
  for cell in k_cells[1:]:
    checks[f"K={by_cell[cell]['K']} beats K={by_cell[k_cells[0]]['K']}"] = stats.compare(
        values[cell], values[k_cells[0]])
  sweeps = {tau: sorted((by_cell[c]["lambda"], c) for c in names
                        if by_cell[c]["K"] == SWEEP_QUEUE[size] and by_cell[c]["tau"] == tau)
            for tau in TAUS}
  best, best_lambda = {}, {}
  for tau, sweep in sweeps.items():
    table = np.asarray([values[c] for _, c in sweep])  # (λ, seed)
    best[tau] = table.min(0).tolist()
    best_lambda[tau] = [sweep[i][0] for i in table.argmin(0)]
  low, high = TAUS
  checks[f"the best {distance} over λ is lower at τ={low:g} than at τ={high:g}"] = (
      stats.compare(best[low], best[high]))
  checks[f"the best λ is lower at τ={low:g} than at τ={high:g}"] = stats.compare(
      [math.log10(l) for l in best_lambda[low]], [math.log10(l) for l in best_lambda[high]])
  summary = {"distance": distance, "by_cell": by_cell,
             "best_over_lambda": {f"tau{t:g}": {"distance": stats.aggregate(best[t]),
                                                "best_lambda_per_seed": best_lambda[t]}
                                  for t in TAUS}}

  figure, (k_axis, lambda_axis) = common.plt.subplots(1, 2, figsize=(11, 4.2))
  k_means = [np.mean(values[c]) for c in k_cells]
  k_stds = [np.std(values[c], ddof=1) if len(seeds) > 1 else 0.0 for c in k_cells]
  k_axis.errorbar([by_cell[c]["K"] for c in k_cells], k_means, yerr=k_stds, marker="o",
                  capsize=4)
  k_axis.set(xlabel="queue size K", ylabel=f"{distance} (mean ± std, {len(seeds)} seeds)",
             xscale="log", title=f"Table 5: τ={APPENDIX_D['temperature']:g}, "
                                 f"λ={default_lambda:g}")
  for index, (tau, sweep) in enumerate(sweeps.items()):
    lambdas = [l for l, _ in sweep]
    per_seed = np.asarray([values[c] for _, c in sweep]).T  # (seed, λ)
    common.band(lambda_axis, lambdas, per_seed, f"τ={tau:g}", color=f"C{index}")
    mean = per_seed.mean(0)
    lambda_axis.plot(lambdas[int(mean.argmin())], mean.min(), marker="*", markersize=15,
                     color=f"C{index}", markeredgecolor="k")
  lambda_axis.set(xlabel="λ", xscale="log", title=f"Fig. 10: K={SWEEP_QUEUE[size]} "
                                                  "(★ best λ of the mean)")
  for axis in (k_axis, lambda_axis):
    axis.grid(alpha=0.3)
  lambda_axis.legend(fontsize=8)
  plots = [common.save_figure(figure, out, "k_tau.png")]

  settings = {"dataset": cells[names[0]].dataset, "grid": [list(c) for c in grid(size)],
              "momentum_base": APPENDIX_D["momentum_base"],
              "num_train_steps": int(cells[names[0]].num_train_steps)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start, seeds, data_dir, pack)


if __name__ == "__main__":
  common.main(run)
