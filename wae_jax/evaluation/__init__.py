"""Evaluation: FID/KID, sharpness, image SWD, latent diagnostics, a classifier FD.

The trainer's entry point (see evaluator.py for the metric groups and names):

    from wae_jax.evaluation import Evaluator
    evaluator = Evaluator(method, data_source, config)
    metrics = evaluator(state)                      # cheap: every eval period
    metrics = evaluator(state, metrics=("full",))   # everything available, at the end
    evaluator.feature_nets                          # which net each FD/FID came from

Building blocks, usable on their own (numpy in, float out):
  fid.frechet_distance(mu1, sigma1, mu2, sigma2), fid.frechet_distance_from_features,
  fid.kernel_inception_distance; inception.InceptionFeatures (FID Inception,
  weights from a local file); sharpness.sharpness; swd.sliced_wasserstein_images;
  latent.latent_distances / singular_value_summary; feature_net.load_or_train.
Saved checkpoints: `python -m wae_jax.evaluate --workdir=<dir>`.
"""

from wae_jax.evaluation.evaluator import ALL_METRICS
from wae_jax.evaluation.evaluator import CHEAP_METRICS
from wae_jax.evaluation.evaluator import Evaluator
from wae_jax.evaluation.evaluator import evaluate

__all__ = ["ALL_METRICS", "CHEAP_METRICS", "Evaluator", "evaluate"]
