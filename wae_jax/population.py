"""Many runs per chip: train a population of runs as one vmapped program.

    python -m wae_jax.main --config=configs/default.py \
        --config.population.seed='(0, 1, 2)' --config.population.lambda_reg='(1, 10, 100)' \
        --workdir=W

trains three members into W/0, W/1, W/2. Members may differ only in the
scalar hyper-parameters of `hparams.PER_MEMBER` (seed, λ, learning rates, σ²,
the IMQ base scale, input noise, β, τ, m0, ...); every other field decides
shapes or the program and must match (`hparams.check_same_program`).

The step. The members' states are stacked on a leading axis P, and so are
their hyper-parameter values and their batches (each member draws its own from
its own seed's pipeline). `jax.vmap` of the valued step (wae_jax/valued_step.py)
over P runs inside each device's program of the data-parallel step
(parallel.make_parallel_step(population=True)).

Why the population axis stays within each device, with every member data
parallel over the whole mesh as it would be alone, rather than split over the
devices when P is a multiple of their count: (1) member i then runs exactly
the per-device program and collectives of the run trained alone on the same
devices, which is what makes it equal to that run; split members would each
compute a one-device step, whose sums run in another order than the solo run's
all-gathers and pmeans on N devices; (2) any P works, not only multiples of N;
(3) a population is for runs too small to fill a chip: one member's batch
split over the devices is where a small run already is, and vmap fills each
device. The cost is memory: every device holds all P states (replicated).

Why vmap also on a CPU, where it gains little (benchmarks/README.md,
"Populations"): a loop over the members inside the one program, unrolled or
`lax.map` (whole, or 2, 4 or 8 members at a time), was measured against it on
the 2-core CPU and was slower at P = 8 and 32 (0.7-0.9x the vmapped step's
rate), and so was every XLA:CPU library setting tried for the batched dots.
The default MLP's solo step already spends most of its time in matrix
products running near this CPU's matmul rate, so no arrangement of the
members can gain much there (at most about 1.2-1.3x, measured).

Each member is a normal run. Member i has its own workdir W/<i>/ with the
files a solo run writes (config.json with its own values and an empty
population block, metrics.jsonl, eval.jsonl, images, checkpoints,
run_complete.json), written by the same code (wae_jax/train.py's parts), so
launch.status, launch.collect, wae_jax.sample and wae_jax.evaluate read it
unchanged, and trained alone (train.train_and_evaluate of its config.json's
config, num_train_steps raised) it continues from its checkpoints. When every
member has finished, W gets a run_complete.json of its own ({"step",
"members": [their summaries]}), which launch.sweep --pack reads. The
members' workdirs may also be named one by one (`train_members`: the paper
experiments train a cell's seeds and a sweep's values as a population, each
in its own DIR/runs/<run>/).

A member whose loss or state goes NaN or Inf stops alone: it writes
run_failed.json (the step and the reason) and is no longer logged, evaluated
or saved; the others go on, and a resumed population leaves it out. The
trainer then ends with the failure as its error (exit 1) after the others
finish.

SIGTERM or SIGINT (wae_jax/preemption.py): the call in flight finishes, every
good member is checkpointed at its step, one line, exit 143 or 130.

Resuming. Every member saves at the same steps; a resumed population starts
from the newest step that all its members hold, so a killed population
continues as if it had not stopped, bit for bit.
"""

import contextlib
import math
import os
import time
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from wae_jax import checkpoint
from wae_jax import cli
from wae_jax import data
from wae_jax import hparams
from wae_jax import images as images_lib
from wae_jax import metrics_io
from wae_jax import methods
from wae_jax import parallel
from wae_jax import preemption
from wae_jax import run_files
from wae_jax import train
from wae_jax.state import TrainState


def member_workdir(workdir: str, index: int) -> str:
  """W/<i>: member i's workdir."""
  return os.path.join(workdir, str(index))


def stack(states: Sequence[Any]) -> Any:
  """Members' pytrees -> one pytree with a leading member axis, and the static
  parts (config, modules, optimizers) of the first: the valued step reads
  the members' values from its hparams argument, not from those."""
  columns = zip(*(jax.tree.leaves(state) for state in states))
  return jax.tree.unflatten(jax.tree.structure(states[0]),
                            [jnp.stack(column) for column in columns])


def member(stacked: Any, index: int, treedef) -> Any:
  """Member `index` of a stacked pytree, with the static parts in `treedef`
  (that member's own config, modules and optimizers)."""
  return jax.tree.unflatten(treedef, [leaf[index] for leaf in jax.tree.leaves(stacked)])


def stacked_batches(sources: Sequence[Any], start_step: int, steps_per_call: int):
  """Infinite iterator of the members' host batches stacked on the member axis:
  (P, B, ...) per item, or (k, P, B, ...) for k steps per call."""
  axis = 0 if steps_per_call == 1 else 1
  iterators = [source.train_batches(start_step, steps_per_call) for source in sources]
  while True:
    batches = [next(it) for it in iterators]
    yield {name: np.stack([b[name] for b in batches], axis=axis) for name in batches[0]}


def _restore_members(members: list, mesh, is_chief: bool) -> int:
  """Restores (or initialises) each member's state; returns the common start step.

  Every member starts at the newest step that all of them hold: where a kill
  came between two members' saves, the later checkpoints are moved aside
  (<step>.corrupt, as a damaged one would be) and that member restores the
  common step, so the population goes on as one program.
  """
  for m in members:
    m.state, m.start_step, m.saved = train.resume_or_init(
        m.workdir, m.manager, m.method, m.config, m.source, mesh, is_chief)
  start = min(m.start_step for m in members)
  for m in members:
    if m.start_step == start:
      continue
    if is_chief:
      for step in sorted(m.manager.all_steps()):
        if step > start:
          moved = checkpoint.move_aside(m.manager.directory, step)
          logging.warning("%s: checkpoint %d is newer than step %d, the newest every member "
                          "of the population holds; moved it to %s.", m.workdir, step, start,
                          moved)
    m.manager.reload()
    m.state, m.start_step, m.saved = train.resume_or_init(
        m.workdir, m.manager, m.method, m.config, m.source, mesh, is_chief)
    if m.start_step != start:
      raise cli.UserError(f"{m.workdir} did not resume at step {start} with the rest of its "
                          "population; train its members alone or use a new --workdir.")
  return start


class _Member:
  """One member's run: its config, data, workdir and the parts of a solo run's loop."""

  def __init__(self, index: int, config: ml_collections.ConfigDict, source, workdir: str):
    self.index = index
    self.config = config
    self.source = source
    self.workdir = workdir
    self.method = methods.get(config.method)
    self.manager = None
    self.state: Optional[TrainState] = None
    self.start_step = 0
    self.saved: dict = {}
    self.failure: Optional[str] = None
    self.is_chief = parallel.is_chief()


def train_population(configs: Sequence[ml_collections.ConfigDict], workdir: str) -> list:
  """Trains the members `configs` into workdir/<i>/ as one vmapped program
  (`train_members`), then marks workdir complete: workdir/run_complete.json
  {"step", "members": [their summaries]}, which launch.sweep --pack reads.

  Returns, Raises: as `train_members`.
  """
  workdir = os.path.abspath(workdir)
  summaries = train_members(configs, [member_workdir(workdir, i) for i in range(len(configs))])
  if parallel.is_chief():  # After every member's own mark.
    run_files.write_json_atomic(
        os.path.join(workdir, run_files.RUN_COMPLETE_FILE),
        {"step": int(configs[0].num_train_steps), "members": summaries})
  return summaries


def train_members(configs: Sequence[ml_collections.ConfigDict],
                  workdirs: Sequence[str]) -> list:
  """Trains run i of `configs` in workdirs[i], all of them as one vmapped program.

  Each workdir is the run's own, as a solo run's (train.train_and_evaluate)
  would be: a finished run is left as it is, the others resume from their
  newest step that all of them hold (`_restore_members`).

  Returns:
    Each member's summary (its run_complete.json's).

  Raises:
    cli.UserError: the members differ in a field outside hparams.PER_MEMBER,
      two members share a workdir, or a config is invalid (before anything
      is written).
    train.NonFiniteLossError: after the others finished, when a member went
      non-finite (now or in an earlier start); its run_failed.json says so.
  """
  if not configs:
    raise cli.UserError("a population needs at least one member.")
  if len(workdirs) != len(configs):
    raise ValueError(f"{len(configs)} members need as many workdirs, got {len(workdirs)}.")
  workdirs = [os.path.abspath(w) for w in workdirs]
  if len(set(workdirs)) != len(workdirs):
    shared = next(w for w in workdirs if workdirs.count(w) > 1)
    raise cli.UserError(f"two members of a population would train in {shared}; give each "
                        "member its own workdir.")
  hparams.check_same_program(configs)
  is_chief = parallel.is_chief()
  mesh = parallel.make_mesh()
  prepared = [train.prepare_config(config, mesh.devices.size) for config in configs]
  parallel.check_batch_size(prepared[0][0].batch_size, mesh)
  members = [_Member(i, config, source, workdir)
             for i, ((config, source), workdir) in enumerate(zip(prepared, workdirs))]
  if is_chief:
    for m in members:
      os.makedirs(m.workdir, exist_ok=True)
  with contextlib.ExitStack() as stack_of_locks:
    for m in members:
      stack_of_locks.enter_context(checkpoint.workdir_lock(m.workdir, enabled=is_chief))
    stop = stack_of_locks.enter_context(preemption.StopSignals())
    return _train_locked(members, mesh, is_chief, stop)


def _train_locked(members: list, mesh, is_chief: bool, stop) -> list:
  """train_members once every member's workdir is locked."""
  summaries: dict = {}
  active = []
  for m in members:
    train._record_config(m.workdir, m.config, is_chief)  # pylint: disable=protected-access
    if is_chief:  # PNGs a kill left half-written.
      images_lib.remove_partial_files(os.path.join(m.workdir, run_files.IMAGE_DIR))
    failed = run_files.read_run_failed(m.workdir)
    if failed is not None:
      logging.warning("%s stopped at step %d (%s); leaving it out.", m.workdir,
                      failed["step"], failed["reason"])
      summaries[m.index] = {"failed": failed["reason"]}
      continue
    m.manager = checkpoint.make_manager(m.workdir, m.config, is_chief=is_chief)
    done = train.finished_summary(m.workdir, m.manager, int(m.config.num_train_steps), is_chief)
    if done is not None:
      summaries[m.index] = done
      m.manager.close()
      continue
    active.append(m)
  try:
    if active:
      _train_members(active, mesh, is_chief, summaries, stop)
  finally:
    for m in active:
      m.manager.close()
  failures = [(i, s["failed"]) for i, s in sorted(summaries.items()) if "failed" in s]
  if failures:
    raise train.NonFiniteLossError("; ".join(f"member {i}: {reason}" for i, reason in failures))
  return [summaries[m.index] for m in members]


def _train_members(members: list, mesh, is_chief: bool, summaries: dict, stop) -> None:
  """The loop of train._train_in_locked_workdir, over the members' stacked state."""
  config = members[0].config
  num_train_steps = int(config.num_train_steps)
  start_step = _restore_members(members, mesh, is_chief)
  states = parallel.replicate(stack([m.state for m in members]), mesh)
  values = parallel.replicate(hparams.values([m.config for m in members]), mesh)

  population = len(members)
  chunk = train.steps_per_call(config, start_step, batch_bytes=4 * population
                               * members[0].source.local_batch_size
                               * math.prod(members[0].source.image_shape))
  step_fn = train._parallel_step(members[0].method, mesh, chunk, population=True)  # pylint: disable=protected-access
  batch_axis = parallel.batch_axis(chunk) + 1
  logging.info("Training %d members (%s) from step %d to %d on %d devices, %d steps per "
               "call.", population, ", ".join(m.workdir for m in members), start_step,
               num_train_steps, mesh.devices.size, chunk)

  for m in members:
    m.writer = metrics_io.MetricWriter(m.workdir, is_chief=is_chief, start_step=start_step)
    m.evaluate = train.Evaluation(m.method, m.config, m.source, m.workdir, m.writer, is_chief,
                                  train.best_value_so_far(m.manager, m.config, start_step))
    m.guard = train.FiniteGuard(m.manager, start_step if start_step else None, chunk)
    m.log = train.TrainLog(m.writer, is_chief, start_step, num_train_steps, m.saved)
    m.treedef = jax.tree.structure(m.state)  # Its own config, modules and optimizers.
    m.state = None  # The stacked state holds it now.

  batches = data.prefetch(stacked_batches([m.source for m in members], start_step, chunk),
                          size=2, put=lambda b: parallel.shard_batch(b, mesh, batch_axis))
  pending: list = []
  try:
    calls = range(start_step + chunk, num_train_steps + 1, chunk)  # A call's last step.
    for call_index, step in enumerate(calls):
      states, call_metrics = step_fn(states, values, next(batches))
      pending.append((step - chunk + 1, call_metrics))
      if len(pending) > train.DISPATCH_WINDOW:
        jax.block_until_ready(pending[-train.DISPATCH_WINDOW - 1][1])
      if step == start_step + chunk:
        jax.block_until_ready(call_metrics)
        for m in members:
          m.log.progress.steps_per_second(step)

      is_last = step == num_train_steps
      # A signal: checkpoint every member at this call's step and stop.
      stop_now = stop.requested(call_index) and not is_last
      log_now = step % config.log_every_steps == 0 or is_last
      eval_now = step % config.eval_every_steps == 0 or is_last
      save_now = step % config.checkpoint_every_steps == 0 or eval_now or stop_now
      if not (log_now or eval_now or save_now):
        continue
      host_metrics = jax.device_get(pending)
      pending = []
      # Every member's log line first, then the evaluations and saves, so no
      # member's steps/s counts another member's evaluation.
      stopping = []
      for m in members:
        if m.failure is None and _member_log(m, states, host_metrics, step, log_now, save_now):
          stopping.append(m)
      eval_seconds = 0.0
      for m in stopping:
        eval_seconds += _member_eval_and_save(m, step, is_last, eval_now, save_now)
      for m in members:
        m.log.progress.exclude(eval_seconds)
      if stop_now:
        raise stop.stopped(step)  # After the finally below has waited for the checkpoints.
      if all(m.failure is not None for m in members):
        break
    for m in members:
      if m.failure is None and train.final_from_best(m.config):
        train.evaluate_best_checkpoint(m.manager, m.config, m.source, mesh,
                                       member(states, m.index, m.treedef), m.evaluate.evaluator,
                                       m.writer)
  finally:
    batches.close()
    try:
      for m in members:
        with checkpoint.reporting_write_errors(m.manager):
          m.manager.wait_until_finished()
    finally:
      for m in members:
        m.writer.close()

  for m in members:
    if m.failure is not None:
      summaries[m.index] = {"failed": m.failure}
    else:
      summaries[m.index] = (train._write_run_complete(m.workdir, num_train_steps, m.manager)  # pylint: disable=protected-access
                            if is_chief else {"step": num_train_steps})


def _member_log(m: _Member, states, host_metrics: list, step: int, log_now: bool,
                save_now: bool) -> bool:
  """The first half of a solo run's stop for member m: the finite check of its
  metrics (and of its state when it is saved), its log line. Returns whether
  it is still good; a member that went non-finite stops here (`_fail`)."""
  pending = [(first, {name: value[..., m.index] for name, value in metrics.items()})
             for first, metrics in host_metrics]
  m.state = member(states, m.index, m.treedef) if save_now else None  # Evaluations save too.
  try:
    m.log.add(m.guard.checked_history(pending))
    m.digest = m.guard.state_digest(m.state, step) if save_now else None
  except train.NonFiniteLossError as error:
    _fail(m, step, str(error))
    return False
  if log_now:
    m.log.write(step)
  return True


def _member_eval_and_save(m: _Member, step: int, is_last: bool, eval_now: bool,
                          save_now: bool) -> float:
  """The second half: evaluation and checkpoint; returns the evaluation's seconds."""
  eval_metrics, seconds = None, 0.0
  if eval_now:
    eval_start = time.perf_counter()
    # The final groups now, unless they are to be of the best checkpoint (after the loop).
    eval_metrics = m.evaluate(m.state, step, final=is_last and not train.final_from_best(m.config))
    seconds = time.perf_counter() - eval_start
  if save_now:
    train.save_checkpoint(m.manager, m.state, step, m.config, m.source, m.digest, eval_metrics,
                          m.log)
    m.guard.last_good_step = step
  m.state = None
  return seconds


def _fail(m: _Member, step: int, reason: str) -> None:
  """Stops member m alone: run_failed.json in its workdir says why."""
  m.failure, m.state = reason, None
  logging.error("%s: %s", m.workdir, reason)
  if m.is_chief:
    run_files.write_run_failed(m.workdir, step, reason)
