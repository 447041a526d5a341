"""The Ray engine: one Ray core task per run, on an existing cluster or a local one.

Each task asks for the run's accelerators (num_gpus, or the "TPU" resource
that Ray detects on Cloud TPU VMs); Ray then sets CUDA_VISIBLE_DEVICES or
TPU_VISIBLE_CHIPS in the worker, and the trainer subprocess started by
launch.runs.execute_run inherits them. The sweep root must be on a file
system every node mounts (NFS, Filestore), since workdirs, locks and status
files live there and a resumed run may land on another node.
"""

import os
from typing import Optional

from launch import runs
from launch.engines import base
from wae_jax import cli

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _execute(spec: runs.RunSpec, retries: int) -> runs.RunResult:
  # The worker's environment already holds the devices Ray assigned to it.
  # Ray workers are multi-threaded, so no death signal: a trainer outliving a
  # killed worker keeps the run's lock until it ends, and records its result.
  return runs.execute_run(spec, retries, dict(os.environ))


class RayEngine(base.Engine):
  """Dispatches runs as Ray tasks, at most max_parallel in flight."""

  name = "ray"

  def __init__(self, address: Optional[str] = None, max_parallel: Optional[int] = None,
               cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
               tpus_per_run: float = 0.0, num_cpus: Optional[int] = None):
    """Args:
      address: a running cluster ("auto", "ray://host:10001", "host:6379");
        None starts a local Ray (with num_cpus CPUs) unless one is initialized.
      max_parallel: most runs in flight (None: as many as the cluster fits).
      cpus_per_run, gpus_per_run, tpus_per_run: what each task asks for.
      num_cpus: CPUs of a local Ray started here.
    """
    try:
      import ray  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise cli.UserError("The ray engine needs Ray: pip install 'ray[default]' "
                       "(or pip install -e '.[ray]').") from e
    if max_parallel is not None and max_parallel < 1:
      raise cli.UserError(f"max_parallel is {max_parallel}; use 1 or more, or leave it unset.")
    self._ray = ray
    self.address = address
    self.max_parallel = max_parallel
    self.cpus_per_run = cpus_per_run
    self.gpus_per_run = gpus_per_run
    self.tpus_per_run = tpus_per_run
    self.num_cpus = num_cpus

  def _connect(self):
    ray = self._ray
    if ray.is_initialized():
      return
    # Workers import launch.runs: make the project importable there too.
    pythonpath = os.pathsep.join(
        p for p in (_PROJECT_ROOT, os.environ.get("PYTHONPATH", "")) if p)
    kwargs = dict(include_dashboard=False, log_to_driver=False,
                  runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    if self.address is None:
      kwargs["num_cpus"] = self.num_cpus
    ray.init(address=self.address, **kwargs)

  def run(self, specs, retries, progress=None):
    if not specs:
      return []
    ray = self._ray
    self._connect()
    options = dict(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                   max_retries=retries)  # Ray's retries cover a lost node
    if self.tpus_per_run:
      options["resources"] = {"TPU": self.tpus_per_run}
    task = ray.remote(_execute).options(**options)
    limit = self.max_parallel or len(specs)
    pending = list(specs)
    in_flight = {}
    results = []
    while pending or in_flight:
      while pending and len(in_flight) < limit:
        spec = pending.pop(0)
        in_flight[task.remote(spec, retries)] = spec
      done, _ = ray.wait(list(in_flight), num_returns=1)
      for ref in done:
        spec = in_flight.pop(ref)
        try:
          result = ray.get(ref)
        except ray.exceptions.RayError as e:  # the task itself died (node lost, OOM)
          result = runs.RunResult(spec.index, runs.FAILED, 0, f"Ray task failed: {e}")
        results.append(result)
        if progress is not None:
          progress(result, len(results), len(specs))
    return results
