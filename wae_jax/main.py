"""Trains one experiment: python -m wae_jax.main --config=configs/x.py --workdir=DIR.

Running the same command again resumes from the latest complete checkpoint.
Override any field with --config.<field>=<value> (e.g. --config.num_train_steps=500);
--config.method=<name> also sets the values that method requires, unless
another flag sets them differently (then it is an error).
--show_config prints the resolved config (after overrides and the method's
values) and exits without writing anything; --workdir is then not needed.
Every field and its default: wae_jax/config.py and the method modules.
SIGTERM (preemption) or SIGINT (Ctrl-C) checkpoints the step in flight, prints
one line and exits with 143 or 130 (see wae_jax/preemption.py).
"""

import os
import sys

from wae_jax import xla_flags

xla_flags.set_cpu_flags()  # Before jax is imported.

from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position
from ml_collections import config_flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from wae_jax import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, e.g. configs/default.py[:runlocal]; override "
    "any field with --config.<field>=<value> (every field: --show_config). "
    "--config.method=<name> also sets what that method requires.",
    lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and images "
                    "(required unless --show_config).")
flags.DEFINE_bool("show_config", False, "Print the resolved config (after the overrides and "
                  "the method's required values) and exit without writing anything.")
flags.mark_flags_as_required(["config"])


def _enable_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache, so a second run of a job
  loads its compiled programs instead of compiling them again.

  The cache lives in ~/.cache/wae_jax/jax_cache ($WAE_JAX_CACHE_DIR/jax_cache)
  unless the user (or the sweep launcher, per sweep) set
  JAX_COMPILATION_CACHE_DIR. Every program is kept: JAX's default keeps only
  those that took over a second to compile, and most of the trainer's take less.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from wae_jax.evaluation import feature_net  # pylint: disable=g-import-not-at-top
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(feature_net.cache_directory(), "jax_cache"))
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def resolved_config(argv):
  """FLAGS.config with the required values of a method chosen on the command line.

  --config.method=X applies X's required values to the fields no flag set;
  a flag that sets one of them differently is a cli.UserError.
  """
  config = FLAGS.config
  user_fields = cli.config_override_fields(argv, "config")
  if "method" not in user_fields:
    return config
  from wae_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from wae_jax import methods  # pylint: disable=g-import-not-at-top
  if config.method not in methods.names():
    return config  # check_values names the choices.
  return config_lib.use_method(config, config.method, user_fields)


def main(argv):
  del argv  # cli.run_absl refuses extra arguments.
  config = resolved_config(sys.argv)
  if FLAGS.show_config:
    sys.stdout.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    return
  if FLAGS.workdir is None:
    raise cli.UserError("--workdir is missing; pass the run's directory, e.g. "
                        "--workdir=/tmp/wae_run (or --show_config to only print the config).")
  # Cheap checks first: the workdir (no JAX), then the config's values before
  # the trainer's imports, so a mistake costs a fraction of the start-up.
  workdir = cli.check_workdir_writable(FLAGS.workdir)
  from wae_jax import config_checks  # pylint: disable=g-import-not-at-top
  config_checks.check_values(config)
  from wae_jax import multihost  # pylint: disable=g-import-not-at-top
  from wae_jax import parallel  # pylint: disable=g-import-not-at-top
  from wae_jax import preemption  # pylint: disable=g-import-not-at-top
  from wae_jax import train  # pylint: disable=g-import-not-at-top
  _enable_compilation_cache()
  distributed = parallel.initialize_distributed()
  try:
    train.train_and_evaluate(config, workdir)
  except preemption.Stopped as stopped:  # SIGTERM / SIGINT: checkpointed, one line.
    if distributed:
      multihost.finish()
    sys.stderr.write(f"{stopped}\n")
    sys.stderr.flush()
    sys.exit(stopped.exit_status)
  if distributed:
    multihost.finish()  # Before exit, so the peers never take this one for dead.


if __name__ == "__main__":
  cli.run_absl(main)
