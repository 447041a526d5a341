"""Evaluates a run's saved checkpoints and marks the best one.

  python -m wae_jax.evaluate --workdir=<dir> [--checkpoints=all|latest|<s1>,<s2>]
      [--metrics=full|cheap|<group>,<group>] [--best_metric=<name>]
      [--num_samples=10000] [--fid_weights=<file>]

The big-WAE procedure: evaluate intermediate checkpoints and keep the one
with the lowest FID. For every chosen checkpoint (restored with
wae_jax.checkpoint.restore_state and the run's config.json) this appends one
line {"step", "metrics": {...}, "feature_net": {metric: which net}} to
<workdir>/eval.jsonl, then writes <workdir>/best_checkpoint.json
{"step", "metric", "value"} (atomically) for the lowest --best_metric among
the checkpoints evaluated now. Metric groups are those of
wae_jax.evaluation.evaluator; 'full' (the default) is every metric the run
can compute (FID/KID only when the Inception weights file is found; name
fid_inception explicitly to fail at once when it is not). The default
--best_metric is fid_inception when computed, else fd_<dataset>_classifier,
else swd_image_avg, else config.best_metric.
"""

import json
import os
from typing import Dict, List, Optional, Sequence

from absl import flags
from absl import logging

from wae_jax import cli
from wae_jax import run_files
from wae_jax.evaluation import metric_names

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI flags; defined only when run as a program, so that importing this
  module next to wae_jax.main (which also defines --workdir) is safe."""
  flags.DEFINE_string("workdir", None,
                      "The run's workdir (holds config.json and checkpoints/).")
  flags.DEFINE_string("checkpoints", "all", "'all', 'latest', or comma-separated steps.")
  flags.DEFINE_string("metrics", "full",
                      "'full', 'cheap', or comma-separated metric groups of "
                      "wae_jax.evaluation.evaluator (e.g. fid_inception,swd_image).")
  flags.DEFINE_string("best_metric", "",
                      "Metric that picks the best checkpoint (lower is better).")
  flags.DEFINE_integer("num_samples", 0,
                       "Generated images for FID/KID/FD/SWD; 0: config or 10,000.")
  flags.DEFINE_string("fid_weights", "",
                      "FID Inception weights file (else config / $WAE_JAX_FID_WEIGHTS).")
  flags.mark_flags_as_required(["workdir"])


BEST_CHECKPOINT_FILE = "best_checkpoint.json"


def choose_steps(available: Sequence[int], which: str) -> List[int]:
  """Steps to evaluate from --checkpoints ('all', 'latest' or 's1,s2')."""
  available = sorted(available)
  if not available:
    raise cli.UserError("The workdir has no complete checkpoint; train first with "
                        "python -m wae_jax.main.")
  if which == "all":
    return available
  if which == "latest":
    return available[-1:]
  try:
    steps = [int(s) for s in which.split(",") if s.strip()]
  except ValueError as error:
    raise cli.UserError(f"--checkpoints={which!r} is not 'all', 'latest' or comma-separated "
                        "steps.") from error
  missing = [s for s in steps if s not in available]
  if missing:
    raise cli.UserError(f"--checkpoints: no checkpoint for step(s) {missing}; the workdir has "
                        f"{available}.")
  return steps


def parse_metrics(text: str, evaluator) -> tuple:
  """--metrics ('full', 'cheap', or comma-separated groups, which may include those) -> groups."""
  return evaluator.expand(name.strip() for name in text.split(",") if name.strip())


def default_best_metric(metrics: Dict[str, float], config) -> str:
  return metric_names.preferred_metric(metrics, fallback=config.best_metric)


def evaluate_workdir(workdir: str, checkpoints: str = "all", metrics: str = "full",
                     best_metric: str = "", num_samples: Optional[int] = None,
                     fid_weights: Optional[str] = None) -> dict:
  """Evaluates checkpoints of `workdir`, appends to eval.jsonl, writes best_checkpoint.json.

  Returns:
    The best_checkpoint.json record {"step", "metric", "value"}.
  """
  # pylint: disable=g-import-not-at-top
  from wae_jax import checkpoint
  from wae_jax import data
  from wae_jax import methods
  from wae_jax.evaluation import evaluator as evaluator_lib
  # pylint: enable=g-import-not-at-top

  if num_samples is not None and num_samples < 1:
    raise cli.UserError(f"--num_samples={num_samples} must be at least 1 (or 0 for the "
                        "config's evaluation.num_samples).")
  if best_metric:
    try:
      best_group = metric_names.metric_group(best_metric)
    except cli.UserError as error:
      raise cli.UserError(str(error).replace("config.best_metric=", "--best_metric=")) from error
  workdir = cli.check_run_workdir(workdir, checkpoint.CONFIG_FILE)
  config = checkpoint.load_config(workdir)
  steps = choose_steps(checkpoint.all_steps(workdir), checkpoints)
  method = methods.get(config.method)
  source = data.build(config)
  evaluator = evaluator_lib.Evaluator(method, source, config, num_samples=num_samples,
                                      fid_weights=fid_weights)
  groups = parse_metrics(metrics, evaluator)
  evaluator.check_metrics(groups, f"--metrics={metrics}")  # Fail before restoring anything.
  if best_metric and best_group not in evaluator.expand(groups):
    raise cli.UserError(f"--best_metric={best_metric} is computed by the {best_group!r} "
                        f"group, which --metrics={metrics} leaves out; add it to --metrics.")
  records = []
  for step in steps:
    state = checkpoint.restore_state(workdir, config, step)
    values = evaluator(state, groups)
    record = {"step": int(step), "metrics": values, "feature_net": dict(evaluator.feature_nets)}
    logging.info("Checkpoint %d: %s", step, values)
    with open(os.path.join(workdir, run_files.EVAL_FILE), "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")
    records.append(record)
  metric = best_metric or default_best_metric(records[-1]["metrics"], config)
  if metric not in records[-1]["metrics"]:
    raise cli.UserError(f"--best_metric={metric!r} was not computed; choose one of "
                        f"{sorted(records[-1]['metrics'])}.")
  best = min(records, key=lambda r: r["metrics"][metric])
  summary = {"step": best["step"], "metric": metric, "value": best["metrics"][metric]}
  checkpoint.write_json_atomic(os.path.join(workdir, BEST_CHECKPOINT_FILE), summary)
  return summary


def main(argv):
  del argv  # cli.run_absl refuses extra arguments.
  if FLAGS.num_samples < 0:
    raise cli.UserError(f"--num_samples={FLAGS.num_samples} must be at least 1 (or 0 for the "
                        "config's evaluation.num_samples).")
  summary = evaluate_workdir(FLAGS.workdir, FLAGS.checkpoints, FLAGS.metrics,
                             FLAGS.best_metric, FLAGS.num_samples or None,
                             FLAGS.fid_weights or None)
  print(json.dumps(summary))


if __name__ == "__main__":
  define_flags()
  cli.run_absl(main)
