"""WAE paper (Tolstikhin et al. 2018), Table 1 and Figs. 3-4: WAE against the VAE.

    python -m wae_jax.experiments.wae_vs_vae --out=DIR [--size=mnist --data_dir=IDX] [--size=paper]

The paper trains WAE-MMD, WAE-GAN and a VAE with the same networks and
budget: WAE samples are sharper (the variance of the Laplace-filtered image,
closer to the test images'), have a lower FID, and WAE reconstructs the
test images better (wae_tolstikhin2018.txt, section 4 and Table 1).

Every cell (method) runs with seeds 0, 1, 2 (toy: 0, 1).

mnist (CPU, the committed numbers): real MNIST 28x28 with the WAE paper's
MNIST settings, configs/mnist_wae_mmd.py, mnist_wae_gan.py and mnist_vae.py
(sources in configs/paper_settings.md): latent 8, prior N(0, I), batch 100,
Adam lr 1e-3 β1 0.5, λ 10; for both WAEs the code's cost 0.05 ||x - y||^2,
encoder pretraining and truncated input noise 0.01; WAE-GAN's adversary
(4 x 512, Adam 5e-4, β1 0.5) without the log-prior trick
(adversary_log_prior=False, set here explicitly: the released WAE code's
MNIST config, configs.py:95 `gan_p_trick`); the VAE with a Gaussian encoder
and a Bernoulli decoder. Deviations, for a 2-core CPU: the MLP (256, 256)
for all three instead of the paper's DCGAN nets, and 10 epochs (6000 steps)
instead of 100 (so the piecewise decay, which starts at epoch 30, never
applies). At the end: sharpness of 1000 samples, `fd_mnist_idx_classifier`
(10,000 samples against the 10,000 test images, in the pinned MNIST net's
features), the test reconstruction error over the 10,000 test images;
sample, reconstruction and interpolation grids side by side (seed 0).
small (digits): configs/default.py's MLP, λ 10, 2000 steps; the same checks.
Paper: configs/celeba_wae_mmd.py, celeba_wae_gan.py and celeba_vae.py (the
paper's Table 1), with every metric available (FID when the Inception weights
are found).

Checks, written before the mnist run, for WAE-MMD and WAE-GAN each against
the VAE, each decided over the seeds by stats.compare (held only when the
difference of the means exceeds twice its standard error): sharper samples,
a lower sample distance (FID, else the classifier FD), a lower test
reconstruction error.
"""

import os
import time
from typing import Optional

from wae_jax.experiments import common
from wae_jax.experiments import stats

NAME = "wae_vs_vae"
SOURCE = "WAE (Tolstikhin et al. 2018), Table 1, Figs. 3-4"
CLAIM = ("With the same networks and budget, WAE-MMD and WAE-GAN give sharper samples, "
         "a lower sample distance and better test reconstructions than the VAE.")
METHODS = ("wae_mmd", "wae_gan", "vae")
PAPER_CONFIGS = {"wae_mmd": "celeba_wae_mmd", "wae_gan": "celeba_wae_gan", "vae": "celeba_vae"}
MNIST_CONFIGS = {"wae_mmd": "mnist_wae_mmd", "wae_gan": "mnist_wae_gan", "vae": "mnist_vae"}
MNIST_EPOCHS = 10


def mnist_cell(method: str, data_dir: str):
  """The WAE paper's MNIST config of `method` on the idx files, with the MLP and 10 epochs."""
  config = common.file_config(MNIST_CONFIGS[method], data_dir)
  mnist = common.mnist_config(data_dir)
  for field in ("dataset", "data_dir", "image_size", "batch_size"):
    config[field] = mnist[field]
  config.model.network = "mlp"
  config.model.hidden_sizes = tuple(mnist.model.hidden_sizes)
  config.evaluation.num_samples = mnist.evaluation.num_samples
  config.evaluation.probe_train_examples = mnist.evaluation.probe_train_examples
  if method == "wae_gan":
    config.adversary_log_prior = False  # the WAE code's MNIST config (configs.py:95)
  steps = MNIST_EPOCHS * 60_000 // config.batch_size
  config.num_train_steps = steps
  config.eval_every_steps = steps
  config.checkpoint_every_steps = steps
  config.evaluation.final_metrics = ("full",)
  return config


def make_configs(size: str, out: str, data_dir: str) -> dict:
  """{method: config}, one cell per method (the seeds are added by common.seeded)."""
  configs = {}
  for method in METHODS:
    if size == "paper":
      config = common.file_config(PAPER_CONFIGS[method], data_dir)
      config.evaluation.final_metrics = ("full",)
    elif size == "mnist":
      config = mnist_cell(method, data_dir)
    else:
      config = common.base_config()
      common.set_method(config, method)
      config.lambda_reg = 10.0
      if method == "wae_gan":
        config.adversary_log_prior = False  # the WAE code's MNIST config (configs.py:95)
      config.num_train_steps = 2000
      config.eval_every_steps = config.num_train_steps
      config.evaluation.num_samples = 1000
      config.evaluation.final_metrics = ("full",)
    if size == "toy":
      common.shrink_to_toy(config, out)
    configs[method] = config
  return configs


def run(out: str, size: str = "small", data_dir: str = "",
        pack: Optional[int] = None) -> dict:
  start = time.time()
  seeds = common.SEEDS[size]
  cells = make_configs(size, out, data_dir)
  runs = common.train_runs(common.seeded(cells, seeds), out, pack)
  first = common.seed_run_name("vae", seeds[0])
  distance = common.sample_distance(runs[first]["final"])
  keys = ("sharpness_samples", "sharpness_test", distance, "swd_image_avg",
          "test_reconstruction")
  values = {m: {k: common.per_seed(runs, m, seeds, k) for k in keys} for m in METHODS}
  by_method = {m: {k: stats.aggregate(v) for k, v in values[m].items()} for m in METHODS}
  summary = {"distance": distance, "by_method": by_method}
  vae = values["vae"]
  checks = {}
  for method in ("wae_mmd", "wae_gan"):
    ours = values[method]
    checks[f"{method} samples are sharper than the VAE's"] = stats.compare(
        vae["sharpness_samples"], ours["sharpness_samples"])
    checks[f"{method} has a lower {distance} than the VAE"] = stats.compare(
        ours[distance], vae[distance])
    checks[f"{method} reconstructs the test set better than the VAE"] = stats.compare(
        ours["test_reconstruction"], vae["test_reconstruction"])

  plots = []
  for kind in ("samples", "reconstructions", "interpolations"):
    panels = {m: os.path.join(common.run_dir(out, common.seed_run_name(m, seeds[0])), "images",
                              f"{kind}_latest.png") for m in METHODS}
    plots.append(common.image_panels(out, f"{kind}.png", panels,
                                     f"{kind}: same networks and budget (seed {seeds[0]})"))
  figure, axes = common.plt.subplots(1, 3, figsize=(10, 3.4))
  for axis, key in zip(axes, ("sharpness_samples", distance, "test_reconstruction")):
    common.bars(axis, list(METHODS), [values[m][key] for m in METHODS],
                f"{key} (mean ± std, {len(seeds)} seeds)")
  axes[0].axhline(by_method["vae"]["sharpness_test"]["mean"], color="grey", linestyle="--",
                  label="test images")
  axes[0].legend(fontsize=8)
  plots.append(common.save_figure(figure, out, "metrics.png"))

  config = cells["vae"]
  settings = {"dataset": config.dataset, "num_train_steps": int(config.num_train_steps),
              "network": config.model.network,
              "hidden_sizes": list(config.model.hidden_sizes),
              "latent_dim": int(config.latent_dim),
              "adversary_log_prior": bool(cells["wae_gan"].adversary_log_prior)}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start, seeds, data_dir, pack)


if __name__ == "__main__":
  common.main(run)
