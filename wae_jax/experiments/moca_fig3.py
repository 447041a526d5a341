"""MoCA Fig. 3: a larger λ makes the latent codes more isotropic.

    python -m wae_jax.experiments.moca_fig3 --out=DIR [--size=paper]

The paper plots the singular values of the codes of 10,000 training images
for λ in {0, 500, 1000, 3000} (MoCA on CIFAR-10, latent 128; moca.txt,
section 4.2, "Isotropy", which names no architecture): the larger λ, the
flatter the spectrum, and the better the samples.

Small (CPU): MoCA on the digits, MLP (256, 256), latent 16, batch 100, 1500
steps, K = 1000, τ = 0.05, codes of all 1400 training images of one epoch.
λ is the paper's scaled by the ratio of pixel counts (64 / 3072, since the
reconstruction cost is a sum over pixels and the best λ grows with it,
appendix D.2): {0, 10.4, 20.8, 62.5}. Sample
quality: the Fréchet distance in the library's digits classifier features
(`fd_digits_classifier`, 1000 samples against the 300 test images).
Paper: configs/cifar10_moca_a2.py (A2, as Fig. 2 and appendix D.1 use on
CIFAR-10) with the paper's λ values, 10,000 codes,
FID when the Inception weights are found (else the image SWD).

Checks: sv_min / sv_max of the codes rises at every step up in λ; the sample
distance at the largest λ is below the one at λ = 0.
"""

import time

import numpy as np

from wae_jax.evaluation import latent
from wae_jax.experiments import common

NAME = "moca_fig3"
SOURCE = "MoCA (Arpit et al. 2021), Fig. 3"
CLAIM = ("A larger λ makes MoCA's latent codes more isotropic (a flatter singular-value "
         "spectrum), and the samples better.")
PAPER_LAMBDAS = (0.0, 500.0, 1000.0, 3000.0)
PAPER_PIXELS = 32 * 32 * 3  # CIFAR-10 (moca.txt, section 4.2)
NUM_CODES = 10_000


def lambdas(size: str) -> tuple:
  if size == "paper":
    return PAPER_LAMBDAS
  scale = 8 * 8 / PAPER_PIXELS  # the digits' pixel count over CIFAR-10's
  chosen = PAPER_LAMBDAS if size == "small" else PAPER_LAMBDAS[::3]
  return tuple(round(l * scale, 1) for l in chosen)


def make_configs(size: str, out: str, data_dir: str) -> dict:
  configs = {}
  for lambda_reg in lambdas(size):
    if size == "paper":
      config = common.file_config("cifar10_moca_a2", data_dir)
      config.evaluation.final_metrics = ("full",)
    else:
      config = common.base_config()
      common.set_method(config, "moca")
      config.latent_dim = 16
      config.num_train_steps = 1500
      config.eval_every_steps = config.num_train_steps
      config.evaluation.num_samples = 1000
      config.evaluation.final_metrics = ("fd_classifier",)
    config.lambda_reg = lambda_reg
    if size == "toy":
      common.shrink_to_toy(config, out)
    configs[f"lambda{lambda_reg:g}"] = config
  return configs


def run(out: str, size: str = "small", data_dir: str = "") -> dict:
  start = time.time()
  configs = make_configs(size, out, data_dir)
  runs, spectra = common.train_runs(configs, out), {}
  for name, config in configs.items():
    state = common.final_state(out, name)
    codes = common.encode(state, config, common.train_images(config, NUM_CODES)[0])
    spectra[name] = latent.code_singular_values(codes)
    runs[name]["singular_values"] = spectra[name].tolist()
    runs[name]["num_codes"] = int(codes.shape[0])

  distance = common.sample_distance(runs[next(iter(runs))]["final"])
  names = list(configs)
  by_run = {name: {"lambda": configs[name].lambda_reg,
                   "sv_min_over_max": float(spectra[name][-1] / spectra[name][0]),
                   distance: runs[name]["final"][distance]} for name in names}
  summary = {"distance": distance, "by_run": by_run}
  checks = {}
  for lower, higher in zip(names, names[1:]):
    checks[f"sv_min/sv_max rises from {lower} to {higher}"] = (
        by_run[higher]["sv_min_over_max"] > by_run[lower]["sv_min_over_max"])
  checks[f"{distance} is lower at {names[-1]} than at {names[0]}"] = (
      by_run[names[-1]][distance] < by_run[names[0]][distance])

  figure, (spectrum_axis, distance_axis) = common.plt.subplots(1, 2, figsize=(10, 4))
  for name in names:
    spectrum_axis.plot(np.arange(1, len(spectra[name]) + 1), spectra[name], marker="o",
                       markersize=3, label=f"λ={configs[name].lambda_reg:g}")
  dim = len(spectra[names[0]])
  spectrum_axis.axhline(1 / np.sqrt(dim), color="grey", linestyle="--",
                        label="uniform on the sphere")
  spectrum_axis.set(xlabel="index", ylabel="singular value of the codes", yscale="log",
                    title=f"codes of {runs[names[0]]['num_codes']} training images")
  spectrum_axis.legend(fontsize=8)
  spectrum_axis.grid(alpha=0.3)
  distance_axis.plot([f"{configs[n].lambda_reg:g}" for n in names],
                     [by_run[n][distance] for n in names], marker="o")
  distance_axis.set(xlabel="λ", ylabel=distance, title="sample distance (lower is better)")
  distance_axis.grid(alpha=0.3)
  plots = [common.save_figure(figure, out, "singular_values.png")]

  settings = {"dataset": configs[names[0]].dataset, "latent_dim": dim,
              "lambdas": [configs[n].lambda_reg for n in names]}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start)


if __name__ == "__main__":
  common.main(run)
