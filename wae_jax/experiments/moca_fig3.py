"""MoCA Fig. 3: a larger λ makes the latent codes more isotropic.

    python -m wae_jax.experiments.moca_fig3 --out=DIR [--size=mnist --data_dir=IDX] [--size=paper]

The paper trains MoCA on CIFAR-10 with λ in {0, 500, 1000, 3000} and plots
the singular values of the codes of 10,000 training images: "Larger λ
results in more uniform singular values, i.e., closer to uniform
distribution, and lower (better) FID for generated samples" (moca.txt,
section 4.2 and Figure 3).

mnist (CPU, the committed numbers): MoCA on real MNIST 28x28, MLP (256, 256),
latent 16, batch 100, Adam lr 1e-3 (moca.txt appendix A), 2 epochs (1200
steps), K = 10,000, τ = 0.05, m0 = 0.99 (appendix A's CIFAR-10 values),
seeds 0, 1, 2. λ is the paper's scaled by the pixel count, 784 / 3072
(appendix D.2, Table 3): {0, 127.6, 255.2, 765.6}. Codes of 10,000 training
images; sample quality: `fd_mnist_idx_classifier` (10,000 samples against
the 10,000 test images, pinned MNIST net). Deviations: the MLP and latent 16
instead of A2 and 128, 2 epochs instead of 100.
small (digits): the same with λ scaled by 64 / 3072, 1500 steps, the 1400
training codes, `fd_digits_classifier` on 1000 samples.
Paper: configs/cifar10_moca_a2.py with the paper's λ values, 10,000 codes,
FID when the Inception weights are found (else the image SWD).

Checks, written before the mnist run, each decided over the seeds by
stats.compare (held only beyond twice the standard error of the
difference): sv_min / sv_max of the codes rises at every step up in λ; the
sample distance falls at every step up in λ.
"""

import time
from typing import Optional

import numpy as np

from wae_jax.evaluation import latent
from wae_jax.experiments import common
from wae_jax.experiments import stats

NAME = "moca_fig3"
SOURCE = "MoCA (Arpit et al. 2021), section 4.2 and Fig. 3"
CLAIM = ("A larger λ makes MoCA's latent codes more isotropic (a flatter singular-value "
         "spectrum), and the samples better.")
PAPER_LAMBDAS = (0.0, 500.0, 1000.0, 3000.0)
PAPER_PIXELS = 32 * 32 * 3  # Figure 3 trains on CIFAR-10
NUM_CODES = 10_000
MNIST_EPOCHS = 2


def lambdas(size: str) -> tuple:
  """The paper's λ, scaled by the pixel count (moca.txt appendix D.2)."""
  if size == "paper":
    return PAPER_LAMBDAS
  pixels = common.MNIST_PIXELS if size == "mnist" else 8 * 8
  chosen = PAPER_LAMBDAS[::3] if size == "toy" else PAPER_LAMBDAS
  return tuple(round(l * pixels / PAPER_PIXELS, 3) for l in chosen)


def make_configs(size: str, out: str, data_dir: str) -> dict:
  """{cell: config}, one per λ (the seeds are added by common.seeded)."""
  configs = {}
  for lambda_reg in lambdas(size):
    if size == "paper":
      config = common.file_config("cifar10_moca_a2", data_dir)
      config.evaluation.final_metrics = ("full",)
    else:
      if size == "mnist":
        config = common.mnist_config(data_dir)
        config.num_train_steps = MNIST_EPOCHS * 60_000 // config.batch_size
        config.evaluation.probe_train_examples = 1000  # the probes are not read here
        config.moca.queue_size = 10_000
      else:
        config = common.base_config()
        config.num_train_steps = 1500
        config.evaluation.num_samples = 1000
        config.moca.queue_size = 1000
      common.set_method(config, "moca")
      config.latent_dim = 16
      config.moca.temperature = 0.05  # moca.txt appendix A (CIFAR-10)
      config.moca.momentum_base = 0.99
      config.eval_every_steps = config.num_train_steps
      config.checkpoint_every_steps = config.num_train_steps
      config.evaluation.final_metrics = ("fd_classifier",)
    config.lambda_reg = lambda_reg
    if size == "toy":
      common.shrink_to_toy(config, out)
    configs[f"lambda{lambda_reg:g}"] = config
  return configs


def run(out: str, size: str = "small", data_dir: str = "",
        pack: Optional[int] = None) -> dict:
  start = time.time()
  seeds = common.SEEDS[size]
  cells = make_configs(size, out, data_dir)
  runs = common.train_runs(common.seeded(cells, seeds), out, pack)
  spectra = {}
  for cell, config in cells.items():
    images = common.train_images(config, NUM_CODES)[0]
    for seed in seeds:
      name = common.seed_run_name(cell, seed)
      codes = common.encode(common.final_state(out, name), config, images)
      spectra[name] = latent.code_singular_values(codes)
      runs[name]["singular_values"] = spectra[name].tolist()
      runs[name]["num_codes"] = int(codes.shape[0])

  names = list(cells)
  distance = common.sample_distance(runs[common.seed_run_name(names[0], seeds[0])]["final"])
  ratios = {c: [float(spectra[common.seed_run_name(c, s)][-1]
                      / spectra[common.seed_run_name(c, s)][0]) for s in seeds] for c in names}
  distances = {c: common.per_seed(runs, c, seeds, distance) for c in names}
  by_cell = {c: {"lambda": cells[c].lambda_reg, "sv_min_over_max": stats.aggregate(ratios[c]),
                 distance: stats.aggregate(distances[c])} for c in names}
  summary = {"distance": distance, "by_cell": by_cell}
  checks = {}
  for lower, higher in zip(names, names[1:]):
    checks[f"sv_min/sv_max rises from {lower} to {higher}"] = stats.compare(
        ratios[lower], ratios[higher])
    checks[f"{distance} falls from {lower} to {higher}"] = stats.compare(
        distances[higher], distances[lower])

  figure, (spectrum_axis, distance_axis) = common.plt.subplots(1, 2, figsize=(11, 4.2))
  for index, cell in enumerate(names):
    normalised = [spectra[common.seed_run_name(cell, s)] / spectra[common.seed_run_name(
        cell, s)][0] for s in seeds]
    common.band(spectrum_axis, np.arange(1, len(normalised[0]) + 1), normalised,
                f"λ={cells[cell].lambda_reg:g}", color=f"C{index}")
  dim = len(spectra[common.seed_run_name(names[0], seeds[0])])
  spectrum_axis.set(xlabel="index", ylabel="singular value / the largest",
                    title=f"codes of {runs[common.seed_run_name(names[0], seeds[0])]['num_codes']}"
                          f" training images (mean ± std, {len(seeds)} seeds)")
  spectrum_axis.legend(fontsize=8)
  spectrum_axis.grid(alpha=0.3)
  common.bars(distance_axis, [f"λ={cells[c].lambda_reg:g}" for c in names],
              [distances[c] for c in names], f"{distance} (lower is better)")
  plots = [common.save_figure(figure, out, "singular_values.png")]

  settings = {"dataset": cells[names[0]].dataset, "latent_dim": dim,
              "lambdas": [cells[n].lambda_reg for n in names],
              "num_train_steps": int(cells[names[0]].num_train_steps)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start, seeds, data_dir, pack)


if __name__ == "__main__":
  common.main(run)
