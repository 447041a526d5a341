"""Symmetric WAE (Sun & Guo 2021): Fig. 1 and the classification claim.

    python -m wae_jax.experiments.swae_fig1 --out=DIR [--size=paper]

The paper's Figure 1 trains SWAE with MLPs on a 2-D Gaussian mixture; its
tables report that SWAE's codes classify better (k-NN) than those of the
other autoencoders.

Figure: `swae_gmm2d.run` on configs/swae_gmm2d.py (3000 steps, the paper's
setting at both sizes): data and pseudo-inputs, prior samples and codes,
generated points; summarised by the share of generated points within 3 std
of a component mean.
Classification, small (CPU): SWAE, WAE-MMD, the VAE and MoCA from
configs/swae_digits.py with only the method changed (the MLP (256, 256),
latent 8, batch 100, Adam lr 5e-4 β1 0.9 without gradient normalisation,
1400 steps = 100 epochs, seed 14): WAE-MMD λ 10, MoCA λ 10 with K 1000 and
τ 0.05, the VAE with its Gaussian encoder and Bernoulli decoder. The
evaluator's probes: `latent_knn_accuracy` (k = 5) and
`latent_linear_accuracy` (logistic regression), fitted on all 1497 training
codes, scored on the 300 test images.
Paper: the same four methods from configs/swae_mnist.py (MNIST, the gated
nets, latent 40, K 4000, 200 epochs), probes on 10,000 training codes.

Checks: SWAE's k-NN accuracy, and its linear-probe accuracy, above each other
method's.
"""

import os
import time

from wae_jax.experiments import common
from wae_jax.experiments import swae_gmm2d

NAME = "swae_fig1"
SOURCE = "Symmetric WAE (Sun & Guo 2021), Fig. 1 and the classification tables"
CLAIM = "SWAE fits the 2-D mixture, and its codes classify better than WAE-MMD's, the VAE's and MoCA's."
METHODS = ("swae", "wae_mmd", "vae", "moca")
PROBES = ("latent_knn_accuracy", "latent_linear_accuracy")
FIGURE_FILE = "gmm2d.png"


def make_configs(size: str, out: str, data_dir: str) -> dict:
  configs = {}
  # The toy wires one method besides SWAE (the others run through the same code).
  for method in METHODS[:2] if size == "toy" else METHODS:
    if size == "paper":
      config = common.file_config("swae_mnist", data_dir)
    else:
      config = common.file_config("swae_digits")
      config.num_train_steps = 1400
      config.optimizer.normalize_gradients = False
      config.evaluation.final_metrics = ()
    config.eval_every_steps = config.num_train_steps
    config.checkpoint_every_steps = config.num_train_steps
    config.evaluation.probe_train_examples = 10_000
    common.set_method(config, method)
    config.lambda_reg = 10.0
    if size == "toy":
      common.shrink_to_toy(config, out)
      config.swae.num_pseudo_inputs = 8
    configs[method] = config
  return configs


def figure_config(size: str):
  config = common.file_config("swae_gmm2d")
  if size == "toy":
    config.num_train_steps = 2
    config.batch_size = 8
    config.synthetic_num_points = 64
    config.model.hidden_sizes = (16,)
    config.swae.num_pseudo_inputs = 8
  return config


def run(out: str, size: str = "small", data_dir: str = "") -> dict:
  start = time.time()
  configs = make_configs(size, out, data_dir)
  common.check_data(configs.values())
  print(f"[gmm2d] {FIGURE_FILE}", flush=True)
  figure = swae_gmm2d.run(figure_config(size), os.path.join(out, FIGURE_FILE))
  runs = common.train_runs(configs, out)
  by_run = {name: {k: runs[name]["final"][k] for k in PROBES + ("test_reconstruction",)}
            for name in runs}
  summary = {"by_run": by_run, "gmm2d": figure}
  checks = {f"SWAE's {probe} > {other}'s": by_run["swae"][probe] > by_run[other][probe]
            for probe in PROBES for other in runs if other != "swae"}

  figure_axes = common.plt.subplots(1, len(PROBES), figsize=(9, 3.4), sharey=True)
  for axis, probe in zip(figure_axes[1], PROBES):
    axis.bar(list(runs), [by_run[n][probe] for n in runs])
    axis.set_title(probe, fontsize=9)
    axis.grid(alpha=0.3, axis="y")
  figure_axes[1][0].set_ylabel("test accuracy")
  plots = [FIGURE_FILE, common.save_figure(figure_axes[0], out, "probes.png")]

  settings = {"dataset": configs["swae"].dataset, "network": configs["swae"].model.network,
              "latent_dim": int(configs["swae"].latent_dim),
              "num_train_steps": int(configs["swae"].num_train_steps)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start)


if __name__ == "__main__":
  common.main(run)
