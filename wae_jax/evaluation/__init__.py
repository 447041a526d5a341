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
metric_names.py (no JAX) owns the metric names, the evaluator's config fields
and the checks of best_metric / final_metrics.
Saved checkpoints: `python -m wae_jax.evaluate --workdir=<dir>`.
"""

_EVALUATOR_NAMES = ("ALL_METRICS", "CHEAP_METRICS", "Evaluator", "evaluate")
__all__ = list(_EVALUATOR_NAMES)


def __getattr__(name):
  # Loaded on first use, so `from wae_jax.evaluation import metric_names`
  # (the launcher, the config checks) does not import JAX.
  if name in _EVALUATOR_NAMES:
    from wae_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
    return getattr(evaluator, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
