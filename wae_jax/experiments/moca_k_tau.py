"""MoCA Table 5 / Fig. 10: the queue size K and the temperature τ.

    python -m wae_jax.experiments.moca_k_tau --out=DIR [--size=paper]

The paper's ablation varies K and τ and reports the generated samples'
distance to the data: a large queue and a small temperature (its default
τ = 0.05) work best.

One factor at a time around the default (K, τ) = (1000, 0.05):
Small (CPU): MoCA on the digits, MLP (256, 256), latent 8, batch 100, λ = 10,
1000 steps; K in {100, 300, 1000, 1400} (multiples of the batch, up to the
1400 images of an epoch), τ in {0.01, 0.05, 0.2, 1.0}. Distances at the end:
`fd_digits_classifier` (1000 samples against the 300 test images) and the
image SWD.
Paper: the ablation base of moca.txt, appendix D: configs/celeba_moca_a2.py
with τ = 1, m0 = 0.999, λ = 3000, K = 60000 (59968); K in Table 5's {100,
5000, 10000, 30000, 60000, 120000} rounded down to multiples of 64 (64, 4992,
9984, 29952, 59968, 119936) at τ = 1, τ in {0.01, 0.05, 0.2, 1.0} at K =
59968 (Fig. 10's τ values are not in the text; it trains 50 epochs, we keep
the 200), classifier FD and FID when the Inception weights are found.

Checks: the largest K is better than the smallest; τ = 0.05 is better than
τ = 1.0 (by the classifier FD, or FID at paper size).
"""

import time

from wae_jax.experiments import common

NAME = "moca_k_tau"
SOURCE = "MoCA (Arpit et al. 2021), Table 5 and Fig. 10"
CLAIM = ("A larger queue K and a small temperature τ (the paper's 0.05) give samples "
         "closer to the data.")
DEFAULT_TAU = 0.05
TAUS = (0.01, 0.05, 0.2, 1.0)
SMALL_QUEUES = (100, 300, 1000, 1400)
# moca.txt, appendix D: Table 5's K (multiples of 64, rounded down) around the
# ablations' K = 60000, at their tau = 1, m0 = 0.999 and lambda = 3000.
PAPER_QUEUES = (64, 4992, 9984, 29952, 59968, 119936)
PAPER_DEFAULT_QUEUE = 59968
PAPER_TAU, PAPER_MOMENTUM, PAPER_LAMBDA = 1.0, 0.999, 3000.0


def queues(size: str) -> tuple:
  """(the K values, the default K at which τ varies)."""
  if size == "toy":
    return (8, 16), 16
  if size == "paper":
    return PAPER_QUEUES, PAPER_DEFAULT_QUEUE
  return SMALL_QUEUES, SMALL_QUEUES[2]


def queue_tau(size: str) -> float:
  """The τ at which K varies: appendix D's 1 at paper size, else 0.05."""
  return PAPER_TAU if size == "paper" else DEFAULT_TAU


def grid(size: str) -> list:
  """(K, τ) pairs: K varied at queue_tau(size), then τ varied at the default K."""
  values, default_queue = queues(size)
  taus = (DEFAULT_TAU, 1.0) if size == "toy" else TAUS
  k_tau = queue_tau(size)
  return ([(k, k_tau) for k in values]
          + [(default_queue, tau) for tau in taus
             if (default_queue, tau) != (default_queue, k_tau)])


def make_configs(size: str, out: str, data_dir: str) -> dict:
  configs = {}
  for queue_size, temperature in grid(size):
    if size == "paper":
      config = common.file_config("celeba_moca_a2", data_dir)
      config.moca.momentum_base = PAPER_MOMENTUM
      config.lambda_reg = PAPER_LAMBDA
      config.evaluation.final_metrics = ("full",)
    else:
      config = common.base_config()
      common.set_method(config, "moca")
      config.num_train_steps = 1000
      config.eval_every_steps = config.num_train_steps
      config.evaluation.num_samples = 1000
      config.evaluation.final_metrics = ("fd_classifier", "swd_image")
    if size == "toy":
      common.shrink_to_toy(config, out)
    config.moca.queue_size = queue_size
    config.moca.temperature = temperature
    configs[f"K{queue_size}_tau{temperature:g}"] = config
  return configs


def run(out: str, size: str = "small", data_dir: str = "") -> dict:
  start = time.time()
  configs = make_configs(size, out, data_dir)
  runs = common.train_runs(configs, out)
  distance = common.sample_distance(runs[next(iter(runs))]["final"])
  by_run = {name: {"K": int(configs[name].moca.queue_size),
                   "tau": float(configs[name].moca.temperature),
                   distance: runs[name]["final"][distance],
                   "swd_image_avg": runs[name]["final"]["swd_image_avg"]} for name in runs}
  summary = {"distance": distance, "by_run": by_run}
  default_queue = queues(size)[1]
  k_tau = queue_tau(size)
  at_default_tau = sorted((r["K"], r[distance]) for r in by_run.values()
                          if r["tau"] == k_tau)
  at_default_queue = sorted((r["tau"], r[distance]) for r in by_run.values()
                            if r["K"] == default_queue)
  checks = {
      f"K={at_default_tau[-1][0]} beats K={at_default_tau[0][0]} (τ={k_tau:g})":
          at_default_tau[-1][1] < at_default_tau[0][1],
      f"τ={DEFAULT_TAU} beats τ={at_default_queue[-1][0]:g} (K={default_queue})":
          dict(at_default_queue)[DEFAULT_TAU] < at_default_queue[-1][1],
  }

  figure, (k_axis, tau_axis) = common.plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  k_axis.plot([k for k, _ in at_default_tau], [d for _, d in at_default_tau], marker="o")
  k_axis.set(xlabel="queue size K", ylabel=distance, xscale="log",
             title=f"τ = {k_tau:g}")
  tau_axis.plot([t for t, _ in at_default_queue], [d for _, d in at_default_queue], marker="o")
  tau_axis.set(xlabel="temperature τ", xscale="log", title=f"K = {default_queue}")
  for axis in (k_axis, tau_axis):
    axis.grid(alpha=0.3)
  plots = [common.save_figure(figure, out, "k_tau.png")]

  settings = {"dataset": configs[next(iter(configs))].dataset,
              "lambda": configs[next(iter(configs))].lambda_reg,
              "grid": [list(pair) for pair in grid(size)]}
  return common.write_results(NAME, SOURCE, CLAIM, size, out, settings, runs, summary,
                              checks, plots, start)


if __name__ == "__main__":
  common.main(run)
