"""The local engine: a pool of worker processes on this machine.

Worker k of P owns slot k and sees only its share of the accelerators:
GPUs through CUDA_VISIBLE_DEVICES, TPU chips through the TPU runtime's
TPU_VISIBLE_CHIPS / bounds / port variables, and on CPU nothing (or, with
cpu_devices_per_run, XLA's host device count). Each worker takes runs from a
shared queue and executes them one at a time.
"""

import concurrent.futures
import glob
import multiprocessing
import os
import re
import shutil
import subprocess
from typing import Optional, Sequence

from launch import runs
from launch.engines import base
from wae_jax import cli

PLATFORMS = ("auto", "cpu", "gpu", "tpu")

# TPU_CHIPS_PER_PROCESS_BOUNDS for a process that owns n chips of one host.
_TPU_CHIP_BOUNDS = {1: "1,1,1", 2: "1,2,1", 4: "2,2,1", 8: "2,4,1"}
_TPU_BASE_PORT = 8476


def detect_devices() -> tuple[str, list[str]]:
  """The accelerator platform of this machine and its device ids.

  Returns:
    ("gpu", ids) from CUDA_VISIBLE_DEVICES or nvidia-smi, ("tpu", chip ids)
    from /dev/accel* or /dev/vfio/<n>, else ("cpu", []).
  """
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible:
    return "gpu", [d for d in visible.split(",") if d.strip()]
  if shutil.which("nvidia-smi"):
    try:
      listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                               timeout=30, check=True).stdout
      gpus = [line for line in listing.splitlines() if line.startswith("GPU ")]
      if gpus:
        return "gpu", [str(i) for i in range(len(gpus))]
    except (subprocess.SubprocessError, OSError):
      pass
  chips = glob.glob("/dev/accel*") or [p for p in glob.glob("/dev/vfio/*")
                                       if re.fullmatch(r"\d+", os.path.basename(p))]
  if chips:
    return "tpu", [str(i) for i in range(len(chips))]
  return "cpu", []


def _with_host_device_count(xla_flags: str, count: int) -> str:
  flags = [f for f in xla_flags.split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  return " ".join(flags + [f"--xla_force_host_platform_device_count={count}"])


def slot_env(platform: str, device_ids: Sequence[str], slot: int, num_slots: int,
             base_env: dict[str, str], cpu_devices_per_run: Optional[int] = None
             ) -> dict[str, str]:
  """The environment of worker `slot` of `num_slots`: its share of the devices.

  Args:
    platform: "cpu", "gpu" or "tpu".
    device_ids: every device (GPU) or chip (TPU) id of this machine.
    slot: this worker's number, 0 .. num_slots-1.
    num_slots: the number of workers; each gets len(device_ids) // num_slots.
    base_env: the environment to start from (not modified).
    cpu_devices_per_run: on CPU, how many XLA host devices a run sees (None:
      leave XLA_FLAGS as it is).

  Returns:
    A new environment dict.
  """
  env = dict(base_env)
  if platform == "cpu":
    if cpu_devices_per_run is not None:
      env["XLA_FLAGS"] = _with_host_device_count(env.get("XLA_FLAGS", ""), cpu_devices_per_run)
    return env
  if platform not in ("gpu", "tpu"):
    raise cli.UserError(f"Unknown platform {platform!r}; use one of {PLATFORMS}.")
  per_run = len(device_ids) // num_slots
  if per_run == 0:
    raise cli.UserError(f"max_parallel={num_slots} exceeds the {len(device_ids)} {platform.upper()} "
                     f"devices of this machine; use --max_parallel={max(1, len(device_ids))} or less.")
  mine = ",".join(device_ids[slot * per_run:(slot + 1) * per_run])
  if platform == "gpu":
    env["CUDA_VISIBLE_DEVICES"] = mine
    return env
  if num_slots == 1:
    return env  # one run owns the whole host: the TPU runtime's defaults apply
  if per_run not in _TPU_CHIP_BOUNDS:
    raise cli.UserError(f"{per_run} TPU chips per run cannot be expressed as chip bounds; "
                     f"choose --max_parallel so that each run gets {sorted(_TPU_CHIP_BOUNDS)} chips.")
  port = _TPU_BASE_PORT + slot
  env.update({
      "TPU_VISIBLE_CHIPS": mine,
      "TPU_VISIBLE_DEVICES": mine,   # older runtimes' name
      "TPU_CHIPS_PER_PROCESS_BOUNDS": _TPU_CHIP_BOUNDS[per_run],
      "TPU_PROCESS_BOUNDS": "1,1,1",
      "TPU_PROCESS_PORT": str(port),
      "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
      "TPU_MESH_CONTROLLER_PORT": str(port),
      "CLOUD_TPU_TASK_ID": "0",
  })
  return env


# Set in each worker process by _init_worker.
_WORKER_ENV: Optional[dict[str, str]] = None


def _init_worker(slot_queue, platform, device_ids, num_slots, cpu_devices_per_run, launcher_pid):
  global _WORKER_ENV
  # A launcher killed by any signal takes its workers, and so their trainers, with it.
  runs.die_with_parent(launcher_pid)
  slot = slot_queue.get()
  _WORKER_ENV = slot_env(platform, device_ids, slot, num_slots, dict(os.environ),
                         cpu_devices_per_run)


def _execute_in_worker(spec: runs.RunSpec, retries: int) -> runs.RunResult:
  # Workers are single-threaded spawn processes: safe to set the death signal.
  return runs.execute_run(spec, retries, _WORKER_ENV, die_with_parent=True)


class LocalEngine(base.Engine):
  """Runs on this machine, max_parallel at a time, devices split between them."""

  name = "local"

  def __init__(self, max_parallel: int = 1, platform: str = "auto",
               device_ids: Optional[Sequence[str]] = None,
               cpu_devices_per_run: Optional[int] = None):
    """Args:
      max_parallel: number of worker processes (runs at the same time).
      platform: auto (detect), cpu, gpu or tpu.
      device_ids: the devices to split (default: all detected).
      cpu_devices_per_run: on CPU, XLA host devices per run (None: unchanged).
    """
    if max_parallel < 1:
      raise cli.UserError(f"max_parallel is {max_parallel}; use 1 or more.")
    if platform not in PLATFORMS:
      raise cli.UserError(f"Unknown platform {platform!r}; use one of {PLATFORMS}.")
    detected_platform, detected_ids = detect_devices() if platform == "auto" else (platform, [])
    self.platform = detected_platform
    self.device_ids = list(device_ids) if device_ids is not None else detected_ids
    if self.platform in ("gpu", "tpu") and not self.device_ids:
      raise cli.UserError(f"platform={self.platform} but no device ids were found; "
                       "pass device_ids or use platform='auto'.")
    self.max_parallel = max_parallel
    if cpu_devices_per_run is not None and cpu_devices_per_run < 1:
      raise cli.UserError(f"--cpu_devices_per_run={cpu_devices_per_run}; a run needs at least "
                          "1 device (leave it out to keep XLA's count).")
    self.cpu_devices_per_run = cpu_devices_per_run
    # Fail now, not in a worker, when the devices cannot be split.
    for slot in range(max_parallel):
      slot_env(self.platform, self.device_ids, slot, max_parallel, {}, cpu_devices_per_run)

  def run(self, specs, retries, progress=None):
    if not specs:
      return []
    num_workers = min(self.max_parallel, len(specs))
    context = multiprocessing.get_context("spawn")
    slot_queue = context.Queue()
    for slot in range(num_workers):
      slot_queue.put(slot)
    results = []
    other_children = {child.pid for child in multiprocessing.active_children()}
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=num_workers, mp_context=context, initializer=_init_worker,
        initargs=(slot_queue, self.platform, self.device_ids, self.max_parallel,
                  self.cpu_devices_per_run, os.getpid())) as pool:
      try:
        futures = [pool.submit(_execute_in_worker, spec, retries) for spec in specs]
        for future in concurrent.futures.as_completed(futures):
          results.append(future.result())
          if progress is not None:
            progress(results[-1], len(results), len(specs))
      except BaseException:  # Ctrl-C, or any failure: stop every run now.
        pool.shutdown(wait=False, cancel_futures=True)
        for child in multiprocessing.active_children():
          if child.pid not in other_children:
            child.kill()  # Its trainer gets SIGKILL with it (runs.execute_run).
        raise
    return results
