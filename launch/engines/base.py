"""The engine interface: where and how the runs of a sweep execute.

An engine receives the runs that are not finished yet and must call
`launch.runs.execute_run(spec, retries, env)` once per run, somewhere with
the run's devices visible, and return the RunResults. Everything else (locks,
retries, status and log files, skipping finished runs) is in execute_run, so
a new engine is one small module: SLURM through submitit would submit
`execute_run` with `submitit.AutoExecutor(...).map_array(...)` and gather
the jobs' results; XManager would add one work unit per run whose command is
`python -c "from launch import runs; ..."` or the manifest's command itself.
"""

import abc
from typing import Callable, Optional, Sequence

from launch import runs

# Called by engines as each run ends: (result, number done, total).
ProgressFn = Callable[[runs.RunResult, int, int], None]


class Engine(abc.ABC):
  """Executes runs; subclasses decide where."""

  name: str = ""

  @abc.abstractmethod
  def run(self, specs: Sequence[runs.RunSpec], retries: int,
          progress: Optional[ProgressFn] = None) -> list[runs.RunResult]:
    """Executes every spec (each through runs.execute_run) and returns the results.

    Args:
      specs: the runs to execute; none is finished when the launcher calls this.
      retries: reruns of a failing trainer before the run is recorded failed.
      progress: optional callback after each run ends.

    Returns:
      One RunResult per spec, in any order.
    """
