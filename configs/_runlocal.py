"""Helpers shared by the experiment configs: the laptop-size override.

Every config file calls `finalize(config, arg)` last, so
`--config=configs/<x>.py:runlocal` shrinks any experiment the same way.
"""

import ml_collections

from wae_jax import cli

# Steps, widths and periods of a `:runlocal` run: a laptop check that every
# piece (data, networks, step, evaluation, checkpoints) runs, not a result.
RUNLOCAL_STEPS = 6
RUNLOCAL_BATCH = 8


def round_queue_size(queue_size: int, batch_size: int) -> int:
  """The largest multiple of `batch_size` not above `queue_size` (at least one batch).

  Rounding down keeps the queue's memory within the paper's K.
  """
  return max(1, queue_size // batch_size) * batch_size


def runlocal(config: ml_collections.ConfigDict) -> None:
  """Shrinks `config` in place to a few steps and tiny widths."""
  config.num_train_steps = RUNLOCAL_STEPS
  config.batch_size = RUNLOCAL_BATCH
  config.model.hidden_sizes = (32, 32)
  config.model.width_multiplier = 1 / 16
  config.adversary.hidden_sizes = (32, 32)
  config.moca.queue_size = 4 * RUNLOCAL_BATCH
  config.pretrain.sample_size = 2 * RUNLOCAL_BATCH
  config.pretrain.max_steps = min(config.pretrain.max_steps, 2)
  config.swae.num_pseudo_inputs = min(config.swae.num_pseudo_inputs, 4 * RUNLOCAL_BATCH)
  config.evaluation.probe_train_examples = min(config.evaluation.probe_train_examples, 1000)
  config.log_every_steps = 1
  config.checkpoint_every_steps = 3
  config.eval_every_steps = 3
  config.num_eval_images = 16
  config.shuffle_buffer = 100


def finalize(config: ml_collections.ConfigDict, arg) -> ml_collections.ConfigDict:
  """Applies the config argument and locks the config (unknown fields fail)."""
  if arg == "runlocal":
    runlocal(config)
  elif arg:
    raise cli.UserError(f"unknown config argument {arg!r}; this config takes only "
                        "':runlocal' (a few steps at tiny widths) or none.")
  config.lock()
  return config
