"""The training loop: `train_and_evaluate(config, workdir)`.

Sections, in the order a run meets them:
  1. Config and data: validate, fill steps_per_epoch, write or check config.json.
  2. State: the latest complete checkpoint, or a fresh `method.init`
     (`resume_or_init`); nothing to do when the run is already complete.
  3. Devices and the step: the jitted (data-parallel) train step, running
     `steps_per_call` steps per call from the state's step.
  4. Evaluation: the evaluator's metric groups and the PNG grids.
  5. The loop: calls of steps, NaN/Inf guard, logging, evaluation, checkpoints.
  6. The end: run_complete.json, written atomically as the last act.

Steps are counted as completed optimizer updates: checkpoint `s` holds the
state after `s` steps and the next batch it sees is `train_batches(s)`'s first,
so a resumed run feeds exactly the batches an uninterrupted run would.
"""

import copy
import functools
import math
import os
import time
from typing import Any, Callable, Optional

import jax
import ml_collections
import numpy as np
from absl import logging

from wae_jax import checkpoint
from wae_jax import cli
from wae_jax import config_checks
from wae_jax import data
from wae_jax import images as images_lib
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import parallel
from wae_jax import run_files
from wae_jax.evaluation import evaluator as evaluator_lib
from wae_jax.evaluation import probes as probes_lib
from wae_jax.methods import pretraining
from wae_jax.state import TrainState

LOG_HISTORY_KEY = "log_history"  # In a checkpoint's metadata.
IMAGE_DIR = "images"
# Calls (of config.steps_per_call steps) dispatched ahead of the newest finished
# one. Unbounded asynchronous dispatch lets ~100 steps with all-gathers queue up,
# which deadlocks XLA:CPU's fake devices (a rendezvous timeout) and holds their
# buffers on accelerators; two in flight keep the device busy while the host
# prepares the next call.
DISPATCH_WINDOW = 2
# Host data one call may stack (config.steps_per_call batches): small images
# get the full count, large ones fewer steps per call.
MAX_CALL_BATCH_BYTES = 64 * 2**20


class NonFiniteLossError(FloatingPointError):
  """A loss term became NaN or Inf; the run stopped."""


# ----------------------------------------------------------------------------
# 1. Config and data.
# ----------------------------------------------------------------------------


def _unlocked_copy(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A mutable deep copy, so the trainer never changes the caller's config."""
  if isinstance(config, ml_collections.FrozenConfigDict):
    return ml_collections.ConfigDict(config.as_configdict())
  return copy.deepcopy(config)


def prepare_config(config: ml_collections.ConfigDict, num_devices: int):
  """Validates `config`, opens the data, fills steps_per_epoch.

  Returns:
    (config copy with steps_per_epoch filled, data.ArraySource).
  """
  config = _unlocked_copy(config)
  config_checks.check_values(config, num_devices)
  source = data.build(config)
  if config.steps_per_epoch <= 0:
    with config.unlocked():
      config.steps_per_epoch = int(source.steps_per_epoch)
  config_checks.check_networks(config, source.image_shape)
  config_checks.check_metrics_for_data(config, source.image_shape)
  return config, source


def _record_config(workdir: str, config: ml_collections.ConfigDict, is_chief: bool) -> None:
  """Writes config.json for a new run; for an existing one checks the config still fits.

  A damaged config.json is moved aside and rewritten: each checkpoint records
  its config, which restoring checks instead.
  """
  changed = None
  path = os.path.join(workdir, checkpoint.CONFIG_FILE)
  if os.path.exists(path):
    try:
      changed = checkpoint.check_resumable(workdir, config)
    except checkpoint.DamagedConfigError:
      if is_chief:
        os.replace(path, path + checkpoint.CORRUPT_SUFFIX)
        logging.warning("%s is damaged; moved it to %s and writing it again.", path,
                        path + checkpoint.CORRUPT_SUFFIX)
      changed = None
    if changed:
      logging.warning("Resuming %s with changed fields %s.", workdir, ", ".join(changed))
  if is_chief and (changed is None or changed):  # A new run, or allowed changes to record.
    checkpoint.save_config(workdir, config)


# ----------------------------------------------------------------------------
# 2. State.
# ----------------------------------------------------------------------------


def initial_state(method, config: ml_collections.ConfigDict, source) -> TrainState:
  """`method.init` on the run's seed and an example batch of the data's shape.

  Jitted: run eagerly, init compiles every small op on its own. A method that
  starts from training data (SWAE's pseudo-inputs) gets the data source
  through `method.init_from_data`.
  """
  example = checkpoint.example_batch(source.image_shape, config.batch_size)
  # The example batch stays a numpy constant: init reads only its shape.
  init = jax.jit(lambda rng: method.init(config, rng, example))
  state = init(jax.random.PRNGKey(config.seed))
  if method.init_from_data is not None:
    state = method.init_from_data(state, source)
  return state


def finished_summary(workdir: str, manager, num_train_steps: int,
                     is_chief: bool) -> Optional[dict]:
  """run_complete.json's summary when the run is already complete, else None.

  A run whose num_train_steps was raised since it finished is no longer
  complete: its run_complete.json is removed. Raises cli.UserError when the
  workdir holds a checkpoint beyond num_train_steps.
  """
  latest = manager.latest_step() or 0
  if latest > num_train_steps:
    raise cli.UserError(
        f"{workdir!r} already holds checkpoint {latest}, beyond "
        f"num_train_steps={num_train_steps}; raise num_train_steps or use a new --workdir.")
  done = run_files.read_run_complete(workdir)
  if done is not None and latest == num_train_steps:
    return done
  if is_chief and done is not None:
    os.remove(os.path.join(workdir, run_files.RUN_COMPLETE_FILE))
  return None


def resume_or_init(workdir: str, manager, method, config: ml_collections.ConfigDict,
                   source, mesh: jax.sharding.Mesh,
                   is_chief: bool) -> tuple[TrainState, int, dict]:
  """(state replicated on the mesh, its step, the checkpoint's saved metadata):
  the newest good checkpoint (checkpoint.restore_newest_good), or
  `method.init` at step 0 with {} when there is none; then the encoder's
  pretraining if the config asks for it and the state has not had it."""
  start_step, saved = manager.latest_step() or 0, {}
  if start_step:
    start_step, state, saved = checkpoint.restore_newest_good(
        manager, config, source.image_shape,
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()), is_chief)
    start_step = start_step or 0
  if start_step:
    logging.info("Resumed %s from checkpoint %d.", workdir, start_step)
  else:
    state = initial_state(method, config, source)
  state = parallel.replicate(state, mesh)
  if pretraining.wanted(state):  # Once per run: the state remembers it.
    state, losses = pretraining.pretrain_encoder(state, source.train_batches(0), mesh)
    state = parallel.replicate(state, mesh)
    logging.info("Pretrained the encoder for %d steps (moment loss %.4f -> %.4f).",
                 len(losses), losses[0], losses[-1])
  return state, start_step, saved


# ----------------------------------------------------------------------------
# 3. Devices and the step.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _parallel_step(train_step: Callable, mesh: jax.sharding.Mesh,
                   steps_per_call: int) -> Callable:
  """One jitted step per (method, mesh, steps per call) in a process, so a
  second run of an identical config (a resume in the same process, a test)
  reuses its executable."""
  return parallel.make_parallel_step(train_step, mesh, steps_per_call=steps_per_call)


def make_train_step(method, mesh: jax.sharding.Mesh,
                    steps_per_call: int = 1) -> tuple[Callable, Callable, Callable]:
  """The compiled data-parallel step and how batches and states reach the mesh.

  Returns:
    (step(state, sharded batch) -> (state, metrics), state donated; with
     steps_per_call=k > 1 it runs k steps on (k, B, ...) batches and returns
     (k,) metrics,
     put_batch(host-local numpy batch) -> global batch sharded over 'data',
     put_state(state) -> state replicated on every device).
  """
  step = _parallel_step(method.train_step, mesh, steps_per_call)
  axis = parallel.batch_axis(steps_per_call)
  return (step, lambda batch: parallel.shard_batch(batch, mesh, axis),
          lambda state: parallel.replicate(state, mesh))


def steps_per_call(config: ml_collections.ConfigDict, start_step: int,
                   batch_bytes: int = 0) -> int:
  """How many steps one compiled call runs: config.steps_per_call, lowered to
  divide every step where the loop must stop (logs, evaluations, checkpoints,
  the last step, the step it resumes from), so one program serves the run,
  and to keep a call's stacked batches (`batch_bytes` each) within
  MAX_CALL_BATCH_BYTES."""
  steps = int(config.steps_per_call)
  for every in (config.log_every_steps, config.eval_every_steps,
                config.checkpoint_every_steps, config.num_train_steps, start_step):
    steps = math.gcd(steps, int(every))  # gcd(k, 0) = k: a fresh start stops nothing.
  limit = max(1, MAX_CALL_BATCH_BYTES // max(int(batch_bytes), 1))
  return max(d for d in range(1, min(steps, limit) + 1) if steps % d == 0)


# ----------------------------------------------------------------------------
# 4. Evaluation.
# ----------------------------------------------------------------------------


def period_metric_groups(config: ml_collections.ConfigDict) -> tuple:
  """The evaluator groups of every evaluation: 'cheap' (those the data allow) and best_metric's."""
  return tuple(dict.fromkeys(("cheap", config_checks.metric_group(config.best_metric))))


def final_metric_groups(config: ml_collections.ConfigDict, evaluator) -> tuple:
  """The groups evaluated at the end: the period's plus config.evaluation.final_metrics.

  final_metrics ('full' = every metric this run can compute) is where the
  expensive ones (FID, image SWD, classifier FD) are chosen.
  """
  chosen = tuple(config.evaluation.final_metrics) if "evaluation" in config else ()
  if "full" in chosen:
    chosen = tuple(evaluator.full_metrics)
  return tuple(dict.fromkeys(period_metric_groups(config) + chosen))


def final_from_best(config: ml_collections.ConfigDict) -> bool:
  """Whether the final metrics are of the best checkpoint (evaluation.final_checkpoint='best')."""
  return "evaluation" in config and config.evaluation.get("final_checkpoint", "last") == "best"


def evaluate_best_checkpoint(manager, config: ml_collections.ConfigDict, source,
                             mesh: jax.sharding.Mesh, state: TrainState, evaluator,
                             writer) -> dict:
  """The final metrics of the checkpoint with the lowest best_metric.

  The SWAE code tests the model of its best validation loss, not the last one
  (experiment.py:139-140, utils/train_test.py:69-75, 116-124). Restores that
  checkpoint (the last state when it is the best), evaluates the final groups
  on it, and writes them as eval.jsonl's last line at the last step with
  `final_checkpoint_step`, the step they are of.
  """
  manager.wait_until_finished()
  best_step = manager.best_step()
  if best_step is not None and best_step != int(state.step):
    restored = checkpoint.restore_verified(
        manager, config, best_step, source.image_shape,
        jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))[0]
    state = parallel.replicate(restored, mesh)
  metrics = evaluator(state, metrics=final_metric_groups(config, evaluator))
  metrics["final_checkpoint_step"] = int(best_step if best_step is not None else state.step)
  writer.write_eval(int(config.num_train_steps), metrics)
  logging.info("final evaluation of checkpoint %d: %s", metrics["final_checkpoint_step"],
               ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
  return metrics


# ----------------------------------------------------------------------------
# 5. The loop's helpers.
# ----------------------------------------------------------------------------


def _first_non_finite(history: list[tuple[int, dict]]) -> Optional[tuple[int, list[str]]]:
  """(step, names) of the first step whose metrics hold a NaN or Inf, else None."""
  for step, metrics in history:
    bad = [name for name, value in metrics.items() if not np.isfinite(value)]
    if bad:
      return step, bad
  return None


def _mean_metrics(history: list[tuple[int, dict]]) -> dict:
  names = history[-1][1].keys()
  return {name: float(np.mean([m[name] for _, m in history])) for name in names}


def _write_run_complete(workdir: str, step: int, manager) -> dict:
  best_step = manager.best_step()
  best_metrics = manager.metrics(best_step) if best_step is not None else None
  return run_files.write_run_complete(
      workdir, step, best_step if best_step is not None else step, best_metrics or {})


# ----------------------------------------------------------------------------
# train_and_evaluate
# ----------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains `config` in `workdir`, resuming from its newest good checkpoint.

  Returns:
    The run summary also written to <workdir>/run_complete.json:
    {"step": final step, "best_step": int, "best_metrics": {name: float}}.

  Raises:
    ValueError: an invalid config, or one that differs from the workdir's.
    checkpoint.WorkdirBusyError: another trainer runs in `workdir`.
    NonFiniteLossError: a loss term or the state became NaN or Inf.
  """
  workdir = os.path.abspath(workdir)
  is_chief = parallel.is_chief()
  mesh = parallel.make_mesh()

  # 1. Config and data. ------------------------------------------------------
  config, source = prepare_config(config, mesh.devices.size)
  parallel.check_batch_size(config.batch_size, mesh)
  if is_chief:
    os.makedirs(workdir, exist_ok=True)
  with checkpoint.workdir_lock(workdir, enabled=is_chief):
    return _train_in_locked_workdir(config, source, mesh, workdir, is_chief)


def _train_in_locked_workdir(config: ml_collections.ConfigDict, source, mesh: jax.sharding.Mesh,
                             workdir: str, is_chief: bool) -> dict:
  """train_and_evaluate once the config is checked and the workdir is locked."""
  method = methods.get(config.method)
  _record_config(workdir, config, is_chief)
  num_train_steps = int(config.num_train_steps)

  # 2. State. ----------------------------------------------------------------
  manager = checkpoint.make_manager(workdir, config, is_chief=is_chief)
  try:
    done = finished_summary(workdir, manager, num_train_steps, is_chief)
  except cli.UserError:
    manager.close()
    raise
  if done is not None:
    logging.info("%s is already complete at step %d; nothing to do.", workdir,
                 num_train_steps)
    manager.close()
    return done
  state, start_step, saved = resume_or_init(workdir, manager, method, config, source, mesh,
                                            is_chief)
  best_step = manager.best_step() if start_step else None
  best_value = (float(manager.metrics(best_step)[config.best_metric])
                if best_step is not None and manager.metrics(best_step) else math.inf)

  # 3. Devices and the step (a resumed run's calls start at its step). ------
  chunk = steps_per_call(config, start_step, batch_bytes=4 * source.local_batch_size
                         * math.prod(source.image_shape))
  train_step, put_batch, _ = make_train_step(method, mesh, chunk)
  logging.info("Training %s from step %d to %d on %d devices, %d steps per call.", workdir,
               start_step, num_train_steps, mesh.devices.size, chunk)

  # 4. Evaluation. -----------------------------------------------------------
  writer = metrics_io.MetricWriter(workdir, is_chief=is_chief, start_step=start_step)
  evaluator = evaluator_lib.Evaluator(method, source, config)
  period_groups = period_metric_groups(config)
  if "latent_probes" in evaluator.check_metrics(period_groups):
    probes_lib.import_in_background()  # Loads while the first steps run.
  # PNG grids only of pictures: 'synthetic' and 'gmm2d' vectors have none.
  image_grids = images_lib.ImageGrids(method, config, source) if source.is_image else None
  image_dir = os.path.join(workdir, IMAGE_DIR)
  progress = metrics_io.Progress(start_step, num_train_steps)
  last_good_step = start_step if start_step else None  # Verified: written finite, or restored.

  def stop_non_finite(what: str, names: list[str], step: int):
    manager.wait_until_finished()
    where = (f"the last good checkpoint is step {last_good_step} in "
             f"{manager.directory} (kept)" if last_good_step is not None
             else "no checkpoint was saved before it")
    raise NonFiniteLossError(
        f"The {what} became non-finite ({', '.join(names[:5])}) at step {step}; "
        f"training stopped and {where}. Lower optimizer.learning_rate or "
        "lambda_reg and start again in a new --workdir.")

  def check_finite(pending):
    """[(first step of a call, its metrics (steps,) or scalars)] -> per-step history."""
    history = []
    for first, call_metrics in jax.device_get(pending):
      columns = {k: np.reshape(v, (-1,)) for k, v in call_metrics.items()}
      history += [(first + i, {k: float(v[i]) for k, v in columns.items()})
                  for i in range(chunk)]
    bad = _first_non_finite(history)
    if bad is not None:
      stop_non_finite("loss", bad[1], bad[0])
    return history

  # 5. The loop. -------------------------------------------------------------
  batches = data.prefetch(source.train_batches(start_step, chunk), size=2, put=put_batch)
  pending: list[tuple[int, Any]] = []  # (first step, device metrics) of calls since the last check
  # (step, metrics) since the last log line; a checkpoint records it, so that a
  # resumed run's next line averages the same steps as an uninterrupted run's.
  log_history = [(int(s), m) for s, m in saved.get(LOG_HISTORY_KEY, [])]
  try:
    for step in range(start_step + chunk, num_train_steps + 1, chunk):  # A call's last step.
      state, call_metrics = train_step(state, next(batches))
      pending.append((step - chunk + 1, call_metrics))
      if len(pending) > DISPATCH_WINDOW:  # Wait for the call DISPATCH_WINDOW calls back.
        jax.block_until_ready(pending[-DISPATCH_WINDOW - 1][1])
      if step == start_step + chunk:  # Start the clock after compilation.
        jax.block_until_ready(call_metrics)
        progress.steps_per_second(step)

      is_last = step == num_train_steps
      log_now = step % config.log_every_steps == 0 or is_last
      eval_now = step % config.eval_every_steps == 0 or is_last
      save_now = step % config.checkpoint_every_steps == 0 or eval_now
      if not (log_now or eval_now or save_now):
        continue
      log_history.extend(check_finite(pending))
      pending = []
      if save_now:  # Before the evaluation, which would log a non-finite state's metrics.
        try:
          digest = checkpoint.verified_digest(state, step)
        except checkpoint.NonFiniteStateError as e:
          stop_non_finite("state", e.leaves, step)

      if log_now:
        rate = progress.steps_per_second(step)
        scalars = _mean_metrics(log_history)
        if math.isfinite(rate):
          scalars["steps_per_second"] = rate
        writer.write_scalars(step, scalars)
        if is_chief:
          metrics_io.log_progress(progress.line(step, scalars.get("loss", math.nan), rate))
        log_history = []

      eval_metrics = None
      if eval_now:
        eval_start = time.perf_counter()
        groups = (final_metric_groups(config, evaluator) if is_last and not final_from_best(config)
                  else period_groups)
        eval_metrics = evaluator(state, metrics=groups)
        if config.best_metric not in eval_metrics:
          raise cli.UserError(
              f"config.best_metric={config.best_metric!r} is not among the evaluated "
              f"metrics {', '.join(sorted(eval_metrics))}; choose one of them.")
        best_value = min(best_value, eval_metrics[config.best_metric])
        eval_metrics[f"best_{config.best_metric}"] = best_value
        writer.write_eval(step, eval_metrics, {
            metric: net for metric, net in evaluator.feature_nets.items() if metric in eval_metrics})
        if image_grids is not None:  # On every process: the state may span hosts.
          grids = image_grids(state)
          if is_chief:
            images_lib.write_grids(image_dir, step, grids, writer)
        if is_chief:
          logging.info("eval step %d: %s", step, ", ".join(
              f"{k} {v:.4f}" for k, v in sorted(eval_metrics.items())))
        writer.flush()
        progress.exclude(time.perf_counter() - eval_start)

      if save_now:
        checkpoint.save(manager, state, step,
                        metrics={config.best_metric: eval_metrics[config.best_metric]}
                        if eval_metrics else None,
                        image_shape=source.image_shape, config=config, digest=digest,
                        extra_metadata={LOG_HISTORY_KEY: log_history})
        last_good_step = step
    if final_from_best(config):
      evaluate_best_checkpoint(manager, config, source, mesh, state, evaluator, writer)
  finally:
    batches.close()
    manager.wait_until_finished()
    writer.close()

  # 6. The end. --------------------------------------------------------------
  summary = None
  if is_chief:
    summary = _write_run_complete(workdir, num_train_steps, manager)
  manager.close()
  return summary if summary is not None else {"step": num_train_steps}
