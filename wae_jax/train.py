"""The training loop: `train_and_evaluate(config, workdir)`.

Sections, in the order a run meets them:
  1. Config and data: validate, fill steps_per_epoch, write or check config.json.
  2. State: the latest complete checkpoint, or a fresh `method.init`
     (`resume_or_init`); nothing to do when the run is already complete.
  3. Devices and the step: the jitted (data-parallel) train step, running
     `steps_per_call` steps per call from the state's step.
  4. Evaluation (`Evaluation`): the evaluator's metric groups, the best
     metric, eval.jsonl and the PNG grids.
  5. The loop: calls of steps, then at each stop its parts: the NaN/Inf guard
     (`FiniteGuard`), the log (`TrainLog`), the evaluation, the checkpoint
     (`save_checkpoint`).
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
from wae_jax import fields
from wae_jax import hparams
from wae_jax import images as images_lib
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import parallel
from wae_jax import preemption
from wae_jax import run_files
from wae_jax import valued_step
from wae_jax.data import on_device
from wae_jax.evaluation import evaluator as evaluator_lib
from wae_jax.evaluation import metric_names
from wae_jax.evaluation import probes as probes_lib
from wae_jax.methods.shared import pretraining
from wae_jax.state import TrainState

LOG_HISTORY_KEY = "log_history"  # In a checkpoint's metadata.
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
  config_checks.check_data(config, source)
  config_checks.check_memory(config, source.image_shape)
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
  done = run_files.read_run_complete(workdir, move_damaged=is_chief)
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
  if method.pretrains and pretraining.wanted(state):  # Once per run: the state remembers it.
    state, losses = pretraining.pretrain_encoder(state, source.train_batches(0), mesh)
    state = parallel.replicate(state, mesh)
    logging.info("Pretrained the encoder for %d steps (moment loss %.4f -> %.4f).",
                 len(losses), losses[0], losses[-1])
  return state, start_step, saved


# ----------------------------------------------------------------------------
# 3. Devices and the step.
# ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _parallel_step(method, mesh: jax.sharding.Mesh, steps_per_call: int,
                   population: bool = False, data_on_device: bool = False) -> Callable:
  """One jitted valued step (wae_jax/valued_step.py) per (method, mesh, steps per
  call, population or not, data placement) in a process, so a second run of a
  config that differs at most in its values (a resume in the same process, a
  test, another λ) reuses its executable."""
  return parallel.make_parallel_step(valued_step.valued_step(method), mesh,
                                     steps_per_call=steps_per_call, with_hparams=True,
                                     population=population,
                                     gather_batch=on_device.gather if data_on_device else None)


@functools.lru_cache(maxsize=8)
def _replicated_values(config: ml_collections.FrozenConfigDict,
                       mesh: jax.sharding.Mesh) -> dict:
  return parallel.replicate(hparams.solo_values(config), mesh)


def make_train_step(method, mesh: jax.sharding.Mesh, steps_per_call: int = 1,
                    device_data: Optional[on_device.DeviceData] = None
                    ) -> tuple[Callable, Callable, Callable]:
  """The compiled data-parallel step and how batches and states reach the mesh.

  The step reads the run's scalar hyper-parameters (hparams.PER_MEMBER) as
  values, as a member of a population does (wae_jax/population.py).

  Args:
    device_data: the training split placed on the mesh (data/on_device.py);
      the step's batches are then index batches (`ArraySource.
      train_index_batches`) that it gathers from it.

  Returns:
    (step(state, sharded batch) -> (state, metrics), state donated; with
     steps_per_call=k > 1 it runs k steps on (k, B, ...) batches and returns
     (k,) metrics,
     put_batch(host-local numpy batch) -> global batch sharded over 'data',
     put_state(state) -> state replicated on every device).
  """
  compiled = _parallel_step(method, mesh, steps_per_call,
                            data_on_device=device_data is not None)
  resident = None if device_data is None else device_data.arrays

  def step(state, batch):
    return compiled(state, _replicated_values(state.config, mesh), batch, resident)

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


class Evaluation:
  """The eval period's part: the evaluator's metric groups, the running best
  of config.best_metric, eval.jsonl and the PNG grids."""

  def __init__(self, method, config: ml_collections.ConfigDict, source, workdir: str,
               writer: metrics_io.MetricWriter, is_chief: bool, best_value: float):
    self.config = config
    self.writer = writer
    self.is_chief = is_chief
    self.best_value = best_value
    self.evaluator = evaluator_lib.Evaluator(method, source, config)
    self.period_groups = metric_names.period_groups(config)
    if "latent_probes" in self.evaluator.check_metrics(self.period_groups):
      probes_lib.import_in_background()  # Loads while the first steps run.
    # PNG grids only of pictures: 'synthetic' and 'gmm2d' vectors have none.
    self.image_grids = images_lib.ImageGrids(method, config, source) if source.is_image else None
    self.image_dir = os.path.join(workdir, run_files.IMAGE_DIR)

  def __call__(self, state: TrainState, step: int, final: bool) -> dict:
    """Evaluates `state` (the final groups when `final`, else the period's),
    writes the metrics and grids; returns the metrics."""
    best_metric = self.config.best_metric
    groups = (metric_names.final_groups(self.config, self.evaluator.full_metrics)
              if final else self.period_groups)
    metrics = self.evaluator(state, metrics=groups)
    self.best_value = min(self.best_value, metrics[best_metric])
    metrics[f"best_{best_metric}"] = self.best_value
    self.writer.write_eval(step, metrics, feature_nets_of(self.evaluator, metrics))
    if self.image_grids is not None:  # On every process: the state may span hosts.
      grids = self.image_grids(state)
      if self.is_chief:
        with cli.reporting_write_errors(self.image_dir, step):
          images_lib.write_grids(self.image_dir, step, grids, self.writer)
    if self.is_chief:
      logging.info("eval step %d: %s", step, ", ".join(
          f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    self.writer.flush()
    return metrics


def best_value_so_far(manager, config: ml_collections.ConfigDict, start_step: int) -> float:
  """The best `config.best_metric` of the checkpoints a run resumes from (inf
  for a fresh run, or when the best checkpoint carries no metrics)."""
  best_step = manager.best_step() if start_step else None
  saved = manager.metrics(best_step) if best_step is not None else None  # read from disk once
  return float(saved[config.best_metric]) if saved else math.inf


def feature_nets_of(evaluator, metrics: dict) -> dict:
  """{metric: the feature net it was measured with} for the metrics of this evaluation."""
  return {metric: net for metric, net in evaluator.feature_nets.items() if metric in metrics}


def final_from_best(config: ml_collections.ConfigDict) -> bool:
  """Whether the final metrics are of the best checkpoint (evaluation.final_checkpoint='best')."""
  return fields.get(config, "evaluation.final_checkpoint", "last") == "best"


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
  metrics = evaluator(state, metrics=metric_names.final_groups(config, evaluator.full_metrics))
  metrics["final_checkpoint_step"] = int(best_step if best_step is not None else state.step)
  writer.write_eval(int(config.num_train_steps), metrics, feature_nets_of(evaluator, metrics))
  logging.info("final evaluation of checkpoint %d: %s", metrics["final_checkpoint_step"],
               ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
  return metrics


# ----------------------------------------------------------------------------
# 5. The loop's parts: the finite guard, the log, the checkpoints.
# ----------------------------------------------------------------------------


def _first_non_finite(history: list[tuple[int, dict]]) -> Optional[tuple[int, list[str]]]:
  """(step, names) of the first step whose metrics hold a NaN or Inf, else None."""
  for step, metrics in history:
    bad = [name for name, value in metrics.items() if not np.isfinite(value)]
    if bad:
      return step, bad
  return None


class FiniteGuard:
  """Stops the run at the first NaN or Inf, in a loss term or in the state,
  naming the step and the last checkpoint known to be good."""

  def __init__(self, manager, last_good_step: Optional[int], steps_per_call: int):
    self.manager = manager
    self.last_good_step = last_good_step  # Verified: written finite, or restored.
    self.steps_per_call = steps_per_call

  def stop(self, what: str, names: list[str], step: int):
    self.manager.wait_until_finished()
    where = (f"the last good checkpoint is step {self.last_good_step} in "
             f"{self.manager.directory} (kept)" if self.last_good_step is not None
             else "no checkpoint was saved before it")
    raise NonFiniteLossError(
        f"The {what} became non-finite ({', '.join(names[:5])}) at step {step}; "
        f"training stopped and {where}. Lower optimizer.learning_rate or "
        "lambda_reg and start again in a new --workdir.")

  def checked_history(self, pending: list[tuple[int, Any]]) -> list[tuple[int, dict]]:
    """[(first step of a call, its metrics (steps,) or scalars)] -> per-step
    history [(step, {name: float})]; stops the run at a non-finite value."""
    history = []
    for first, call_metrics in jax.device_get(pending):
      columns = {k: np.reshape(v, (-1,)) for k, v in call_metrics.items()}
      history += [(first + i, {k: float(v[i]) for k, v in columns.items()})
                  for i in range(self.steps_per_call)]
    bad = _first_non_finite(history)
    if bad is not None:
      self.stop("loss", bad[1], bad[0])
    return history

  def state_digest(self, state: TrainState, step: int) -> str:
    """The checkpoint digest of a state known to be finite; stops the run otherwise.
    Called before the evaluation, which would log a non-finite state's metrics."""
    try:
      return checkpoint.verified_digest(state, step)
    except checkpoint.NonFiniteStateError as e:
      self.stop("state", e.leaves, step)


class TrainLog:
  """metrics.jsonl, TensorBoard and the progress line: the mean of every
  metric over the steps since the last log line.

  The steps not yet logged are saved with each checkpoint, so a resumed run's
  next line averages the same steps as an uninterrupted run's.
  """

  def __init__(self, writer: metrics_io.MetricWriter, is_chief: bool, start_step: int,
               num_train_steps: int, saved: dict):
    self.writer = writer
    self.is_chief = is_chief
    self.progress = metrics_io.Progress(start_step, num_train_steps)
    self.history = [(int(s), m) for s, m in saved.get(LOG_HISTORY_KEY, [])]

  def add(self, history: list[tuple[int, dict]]) -> None:
    self.history.extend(history)

  def write(self, step: int) -> None:
    rate = self.progress.steps_per_second(step)
    names = self.history[-1][1].keys()
    scalars = {name: float(np.mean([m[name] for _, m in self.history])) for name in names}
    if math.isfinite(rate):
      scalars["steps_per_second"] = rate
    self.writer.write_scalars(step, scalars)
    if self.is_chief:
      metrics_io.log_progress(self.progress.line(step, scalars.get("loss", math.nan), rate))
    self.history = []

  def metadata(self) -> dict:
    """What a checkpoint records of the log: the steps not yet written."""
    return {LOG_HISTORY_KEY: self.history}


def save_checkpoint(manager, state: TrainState, step: int, config: ml_collections.ConfigDict,
                    source, digest: str, eval_metrics: Optional[dict], log: TrainLog) -> None:
  """Saves `state` at `step` with its best-metric value (when evaluated) and the log's state."""
  metrics = ({config.best_metric: eval_metrics[config.best_metric]}
             if eval_metrics else None)
  with checkpoint.reporting_write_errors(manager):
    checkpoint.save(manager, state, step, metrics=metrics, image_shape=source.image_shape,
                    config=config, digest=digest, extra_metadata=log.metadata())


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
    preemption.Stopped: SIGTERM or SIGINT arrived; the step in flight was
      finished and checkpointed (see wae_jax/preemption.py).
  """
  workdir = os.path.abspath(workdir)
  is_chief = parallel.is_chief()
  mesh = parallel.make_mesh()

  # 1. Config and data. ------------------------------------------------------
  config, source = prepare_config(config, mesh.devices.size)
  parallel.check_batch_size(config.batch_size, mesh)
  if is_chief:
    os.makedirs(workdir, exist_ok=True)
  with checkpoint.workdir_lock(workdir, enabled=is_chief), preemption.StopSignals() as stop:
    return _train_in_locked_workdir(config, source, mesh, workdir, is_chief, stop)


def _train_in_locked_workdir(config: ml_collections.ConfigDict, source, mesh: jax.sharding.Mesh,
                             workdir: str, is_chief: bool,
                             stop: Optional[preemption.StopSignals] = None) -> dict:
  """train_and_evaluate once the config is checked and the workdir is locked."""
  method = methods.get(config.method)
  _record_config(workdir, config, is_chief)
  if is_chief:  # PNGs a kill left half-written; no writer is alive while we hold the lock.
    images_lib.remove_partial_files(os.path.join(workdir, run_files.IMAGE_DIR))
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
  best_value = best_value_so_far(manager, config, start_step)

  # 3. Devices and the step (a resumed run's calls start at its step). ------
  device_data = on_device.place_if_wanted(config, source, mesh)
  example_bytes = 4 * (1 if device_data else math.prod(source.image_shape))  # index or image
  chunk = steps_per_call(config, start_step, batch_bytes=example_bytes * source.local_batch_size)
  train_step, put_batch, _ = make_train_step(method, mesh, chunk, device_data=device_data)
  logging.info("Training %s from step %d to %d on %d devices, %d steps per call, the "
               "training split %s.", workdir, start_step, num_train_steps, mesh.devices.size,
               chunk, f"on the devices ({device_data.nbytes / 2**20:.1f} MiB each)"
               if device_data else "read on the host")

  # 4. Evaluation and 5. the loop's parts. ----------------------------------
  writer = metrics_io.MetricWriter(workdir, is_chief=is_chief, start_step=start_step)
  evaluate = Evaluation(method, config, source, workdir, writer, is_chief, best_value)
  guard = FiniteGuard(manager, start_step if start_step else None, chunk)
  log = TrainLog(writer, is_chief, start_step, num_train_steps, saved)

  # 5. The loop. -------------------------------------------------------------
  batches = data.prefetch(on_device.train_inputs(source, device_data, start_step, chunk),
                          size=2, put=put_batch)
  pending: list[tuple[int, Any]] = []  # (first step, device metrics) of calls since the last check
  try:
    calls = range(start_step + chunk, num_train_steps + 1, chunk)  # A call's last step.
    for call_index, step in enumerate(calls):
      state, call_metrics = train_step(state, next(batches))
      pending.append((step - chunk + 1, call_metrics))
      if len(pending) > DISPATCH_WINDOW:  # Wait for the call DISPATCH_WINDOW calls back.
        jax.block_until_ready(pending[-DISPATCH_WINDOW - 1][1])
      if step == start_step + chunk:  # Start the clock after compilation.
        jax.block_until_ready(call_metrics)
        log.progress.steps_per_second(step)

      is_last = step == num_train_steps
      # A signal: checkpoint this call's step and stop (every process at the same call).
      stop_now = stop is not None and stop.requested(call_index) and not is_last
      log_now = step % config.log_every_steps == 0 or is_last
      eval_now = step % config.eval_every_steps == 0 or is_last
      save_now = step % config.checkpoint_every_steps == 0 or eval_now or stop_now
      if not (log_now or eval_now or save_now):
        continue
      log.add(guard.checked_history(pending))
      pending = []
      digest = guard.state_digest(state, step) if save_now else None
      if log_now:
        log.write(step)
      eval_metrics = None
      if eval_now:
        eval_start = time.perf_counter()
        # The final groups now, unless they are to be of the best checkpoint (below).
        eval_metrics = evaluate(state, step, final=is_last and not final_from_best(config))
        log.progress.exclude(time.perf_counter() - eval_start)
      if save_now:
        save_checkpoint(manager, state, step, config, source, digest, eval_metrics, log)
        guard.last_good_step = step
      if stop_now:
        raise stop.stopped(step)  # After the finally below has waited for the checkpoint.
    if final_from_best(config):
      evaluate_best_checkpoint(manager, config, source, mesh, state, evaluate.evaluator, writer)
  finally:
    batches.close()
    try:
      with checkpoint.reporting_write_errors(manager):
        manager.wait_until_finished()
    finally:
      writer.close()

  # 6. The end. --------------------------------------------------------------
  summary = None
  if is_chief:
    summary = _write_run_complete(workdir, num_train_steps, manager)
  manager.close()
  return summary if summary is not None else {"step": num_train_steps}
