"""The Symmetric WAE paper's Figure 1: SWAE with MLPs on a 2-D Gaussian mixture.

  python -m wae_jax.experiments.swae_gmm2d --out=/tmp/swae_gmm2d.png [--config=configs/swae_gmm2d.py] [--config.num_train_steps=3000]

Trains SWAE on the gmm2d points (five components with means (i, i),
covariance diag(0.2), as the released code's sample_GMM draws them) with the
data-parallel step of the trainer, then draws three panels with
matplotlib: the test data (coloured by component) with the learned
pseudo-inputs, 2000 prior samples in the 2-D latent space with the encoded
test points, and 2000 generated points G(z) over the data. It prints (and
writes next to the PNG as JSON) the fraction of generated points within 2 std
(0.89) of a component mean next to the same fraction of the test points (at
least 1 - exp(-2) = 0.865 for the true mixture), the generated points' share
of each component, the mean log-density of the encoded test points under the
learned prior, and the final loss terms.
"""

import json
import os

from absl import app
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
NUM_DRAWS = 2000
NEAR_MODE_RADIUS = 2 * 0.2 ** 0.5  # two component stds (offline.GMM2D_STD)


def define_flags() -> None:
  config_flags.DEFINE_config_file(
      "config", os.path.join(os.path.dirname(__file__), "..", "..", "configs",
                             "swae_gmm2d.py"),
      "The SWAE gmm2d config.", lock_config=True)
  flags.DEFINE_string("out", None, "Where the PNG goes (a .json summary lands next to it).")
  flags.mark_flags_as_required(["out"])


def mode_summary(points, means, radius: float = NEAR_MODE_RADIUS) -> dict:
  """How generated points (n, 2) sit on the mixture's components (K, 2)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  distances = np.linalg.norm(points[:, None, :] - np.asarray(means)[None], axis=-1)
  nearest = distances.argmin(1)
  near = distances.min(1) <= radius
  shares = np.bincount(nearest[near], minlength=len(means)) / max(int(near.sum()), 1)
  return {"fraction_near_a_mode": float(near.mean()),
          "share_per_mode": [float(s) for s in shares]}


def coverage_summary(generated, centers, points, labels, means) -> dict:
  """Whether generated points cover the components or sit on the pseudo-inputs.

  Args:
    generated: (n, 2) points G(z), z drawn from the prior.
    centers: (n, 2) G(mean of the prior component each z was drawn from).
    points: (m, 2) test points; labels: (m,) their components.
    means: (C, 2) the mixture's means.

  Returns:
    {"data_spread": the test points' mean distance to their component's mean,
    "generated_spread": the generated points' mean distance to the nearest
    mixture mean, "distance_to_own_center": their mean distance to their own
    prior component's decoded mean, and both divided by data_spread.}
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  means = np.asarray(means, np.float64)
  data_spread = float(np.mean(np.linalg.norm(points - means[labels], axis=-1)))
  generated_spread = float(np.mean(np.min(np.linalg.norm(
      generated[:, None, :] - means[None], axis=-1), axis=1)))
  own_center = float(np.mean(np.linalg.norm(generated - centers, axis=-1)))
  return {"data_spread": data_spread, "generated_spread": generated_spread,
          "generated_spread_over_data": generated_spread / data_spread,
          "distance_to_own_center": own_center,
          "distance_to_own_center_over_data": own_center / data_spread}


def run(config, out: str) -> dict:
  """Trains, draws the figure to `out`, returns the summary."""
  # pylint: disable=g-import-not-at-top
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  from wae_jax import methods
  from wae_jax import parallel
  from wae_jax import priors
  from wae_jax import train
  from wae_jax.data import offline
  from wae_jax.methods import swae
  # pylint: enable=g-import-not-at-top

  if config.dataset != "gmm2d" or config.method != "swae":
    raise ValueError("This experiment trains method 'swae' on dataset 'gmm2d'; use "
                     "configs/swae_gmm2d.py.")
  config, source = train.prepare_config(config, jax.device_count())
  method = methods.get(config.method)
  mesh = parallel.make_mesh()
  step, put_batch, put_state = train.make_train_step(method, mesh)
  state = put_state(train.initial_state(method, config, source))
  metrics = {}
  for batch in source.train_batches(0):
    if int(state.step) >= config.num_train_steps:
      break
    state, metrics = step(state, put_batch(batch))
  state = jax.device_get(state)
  test = next(source.test_batches(NUM_DRAWS))
  points = test["image"].reshape(-1, 2)
  key = jax.random.PRNGKey(config.seed)
  prior, components = jax.jit(swae.sample_prior_with_components, static_argnums=2)(
      state, key, NUM_DRAWS)
  prior = np.asarray(prior)
  decode = jax.jit(method.decode)
  generated = np.asarray(decode(state, prior)).reshape(-1, 2)
  codes = np.asarray(jax.jit(method.encode)(state, test["image"]))
  pseudo = np.asarray(swae.pseudo_inputs(state.config, state.params["prior"])).reshape(-1, 2)
  # How well the learned prior covers the encoded data: mean log p(E(x)).
  log_prior = priors.gaussian_mixture_log_density(codes, *jax.jit(swae.prior_components)(state))

  figure, axes = plt.subplots(1, 3, figsize=(15, 5))
  axes[0].scatter(points[:, 0], points[:, 1], c=test["label"], cmap="tab10", s=3)
  axes[0].scatter(pseudo[:, 0], pseudo[:, 1], c="black", marker="x", s=20,
                  label="pseudo-inputs")
  axes[0].set_title("data (by component) and pseudo-inputs")
  axes[0].legend(loc="upper left")
  axes[1].scatter(codes[:, 0], codes[:, 1], c=test["label"], cmap="tab10", s=3, alpha=0.4,
                  label="E(x), test")
  axes[1].scatter(prior[:, 0], prior[:, 1], c="black", s=2, label="z ~ p(z)")
  axes[1].set_title("latent space: prior samples and codes")
  axes[1].legend(loc="upper left")
  axes[2].scatter(points[:, 0], points[:, 1], c="lightgrey", s=3, label="data")
  axes[2].scatter(generated[:, 0], generated[:, 1], c="crimson", s=3, label="G(z)")
  axes[2].set_title("generated samples")
  axes[2].legend(loc="upper left")
  for axis in (axes[0], axes[2]):
    axis.set_xlim(-1.5, 5.5)
    axis.set_ylim(-1.5, 5.5)
  figure.suptitle(f"SWAE on gmm2d, {config.num_train_steps} steps")
  figure.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  figure.savefig(out, dpi=100)
  plt.close(figure)

  summary = dict(mode_summary(generated, offline.GMM2D_MEANS),
                 data_fraction_near_a_mode=mode_summary(
                     points, offline.GMM2D_MEANS)["fraction_near_a_mode"],
                 steps=int(state.step), test_codes_log_prior=float(np.mean(log_prior)),
                 **{k: float(v) for k, v in jax.device_get(metrics).items()})
  component_means = jax.jit(swae.prior_components)(state)[0]
  centers = np.asarray(decode(state, component_means)).reshape(-1, 2)[np.asarray(components)]
  summary.update(coverage_summary(generated, centers, points, np.asarray(test["label"]),
                                  offline.GMM2D_MEANS))
  with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  print(json.dumps(run(FLAGS.config, FLAGS.out)))


if __name__ == "__main__":
  define_flags()
  app.run(main)
