"""End-to-end tiny sweeps with the real trainer (python -m wae_jax.main) on digits.

Local engine: a launcher SIGKILLed midway (its PID alone) leaves no worker or
trainer alive, and relaunched finishes every run and runs none twice; a run with an invalid value is retried, then reported failed
with its log tail; status and collect read the result. Ray engine: a local Ray
finishes the sweep, and a second launch does nothing.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from launch import collect
from launch import runs
from launch import status
from launch import sweep
from wae_jax import run_files

from test_launch import session_processes

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIGWAE = os.path.join(PROJECT_ROOT, "configs", "bigwae.py")
# The killed local sweep: 3 good runs (more than --max_parallel=2), then one that diverges.
NUM_GOOD_RUNS = 3
BAD_INDEX = 3
RAY_RUNS = 3  # more than --max_parallel=2, so Ray queues one
PACKED_RUNS = 6  # two populations of --pack=3

# The tiny sweep plus one run whose network does not exist.
FAILING_CONFIG = f'''
import importlib.util
_spec = importlib.util.spec_from_file_location("bigwae_for_test", {BIGWAE!r})
_bigwae = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bigwae)
get_config = _bigwae.get_config

def sweep(num_runs, seed=0, config_arg=None):
  overrides = _bigwae.sweep(num_runs, seed, config_arg)
  if num_runs > {BAD_INDEX}:
    # Passes the launcher's checks, then diverges: a runtime failure, retried.
    overrides[{BAD_INDEX}]["optimizer.learning_rate"] = 1e30
  return overrides
'''


@pytest.fixture(autouse=True)
def light_runs(monkeypatch):
  # Runs inherit this (local workers and a Ray started here): one XLA device
  # each keeps two runs at a time light on a small machine. They also inherit
  # the test session's JAX compilation cache (tests/conftest.py), which wins
  # over the launcher's own default (<root>/jax_cache), so the runs of a
  # configuration compile once for all the sweeps here.
  monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")


def _attempts(workdir):
  return runs.read_jsonl(os.path.join(workdir, runs.ATTEMPTS_FILE))


def _wait_for(predicate, timeout, what):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    time.sleep(0.2)
  raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _sigkill_launcher_when(launcher, done, timeout, what):
  """Waits (at most `timeout` s) until done() or the launcher exits, SIGKILLs
  the launcher's PID alone, then waits for its session's workers and trainers
  to end (killing what is left of the session if they do not)."""
  try:
    _wait_for(lambda: done() or launcher.poll() is not None, timeout, what)
    os.kill(launcher.pid, signal.SIGKILL)
    launcher.wait()
    _wait_for(lambda: not session_processes(launcher.pid), 30,
              "the killed launcher's workers and trainers to end")
  finally:
    if session_processes(launcher.pid):
      os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()


@pytest.mark.slow
def test_local_sweep_killed_relaunched_with_a_failing_run(tmp_path):
  config = tmp_path / "failing_bigwae.py"
  config.write_text(FAILING_CONFIG)
  root = str(tmp_path / "sweep")
  num_runs = NUM_GOOD_RUNS + 1
  workdirs = [os.path.join(root, "runs", str(i)) for i in range(num_runs)]

  # 1. Launch in its own session; as soon as one run has finished, SIGKILL the
  #    launcher's PID alone: no worker or trainer of the sweep may survive it.
  with open(tmp_path / "first_launch.txt", "w") as out:
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launch.sweep", f"--config={config}:tiny", f"--root={root}",
         f"--num_runs={num_runs}", "--max_parallel=2", "--retries=1"],
        cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    _sigkill_launcher_when(launcher, lambda: any(runs.is_finished(w) for w in workdirs), 240,
                           "a first finished run")
  assert launcher.returncode == -signal.SIGKILL, (tmp_path / "first_launch.txt").read_text()
  # The OS releases the locks of the killed workers and trainers.
  _wait_for(lambda: not any(runs.is_locked(w) for w in workdirs if os.path.isdir(w)),
            30, "the killed runs' locks")
  finished_before = {i for i, w in enumerate(workdirs) if runs.is_finished(w)}
  assert finished_before and len(finished_before) < NUM_GOOD_RUNS
  manifest = sweep.read_manifest(root)
  assert [e["index"] for e in manifest] == list(range(num_runs))

  # 2. Relaunch: the rest finishes, the bad run is retried once then failed.
  results = sweep.launch(f"{config}:tiny", root, num_runs, "local", max_parallel=2,
                         retries=1, log=lambda _: None)
  by_index = {r.index: r for r in results}
  assert set(by_index) == set(range(num_runs)) - finished_before
  assert by_index[BAD_INDEX].state == runs.FAILED and by_index[BAD_INDEX].attempts == 2
  assert "non-finite" in by_index[BAD_INDEX].log_tail
  for i in range(NUM_GOOD_RUNS):
    assert runs.is_finished(workdirs[i]), runs.log_tail(workdirs[i])
    complete = run_files.read_run_complete(workdirs[i])
    assert complete["step"] == 20
    # Every trainer start ran the manifest's command, as a user would.
    with open(os.path.join(workdirs[i], runs.LOG_FILE)) as f:
      assert manifest[i]["command"] in f.read()
  # A run finished before the kill was never started again; an interrupted
  # one was started once more and resumed.
  for i in finished_before:
    assert len(_attempts(workdirs[i])) == 1
  for i in set(range(NUM_GOOD_RUNS)) - finished_before:
    assert 1 <= len(_attempts(workdirs[i])) <= 2

  # 3. Status and collect.
  counts = status.sweep_status(root).counts
  assert counts == {"pending": 0, "running": 0, "finished": NUM_GOOD_RUNS, "failed": 1}
  result = collect.collect(root)
  rows = {r["index"]: r for r in result["rows"]}
  assert all(rows[i]["value"] is not None for i in range(NUM_GOOD_RUNS))
  assert rows[BAD_INDEX]["state"] == "failed" and rows[BAD_INDEX]["value"] is None
  for i in range(NUM_GOOD_RUNS):
    complete = run_files.read_run_complete(workdirs[i])
    assert rows[i]["best_step"] == complete["best_step"]
    assert rows[i]["best_metrics"] == complete["best_metrics"]
  names = {os.path.basename(p) for p in result["files"]}
  assert {"runs.csv", "runs.jsonl", "best_by_method.png", "metric_vs_hparams.png",
          "top_runs.png"} <= names
  for path in result["files"]:
    if path.endswith(".png"):
      with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_ray_sweep_finishes_and_a_second_launch_does_nothing(tmp_path):
  ray = pytest.importorskip("ray")
  root = str(tmp_path / "sweep")
  try:
    results = sweep.launch(f"{BIGWAE}:tiny", root, RAY_RUNS, "ray", max_parallel=2,
                           retries=1, engine_options={"num_cpus": 2}, log=lambda _: None)
  finally:
    ray.shutdown()
  assert sorted(r.index for r in results) == list(range(RAY_RUNS))
  assert all(r.state == runs.FINISHED and r.attempts == 1 for r in results), [
      (r.index, r.state, r.log_tail) for r in results]
  manifest = sweep.read_manifest(root)
  for entry in manifest:
    assert runs.is_finished(entry["workdir"])
    assert len(_attempts(entry["workdir"])) == 1
  before = {e["index"]: os.path.getmtime(os.path.join(e["workdir"], run_files.RUN_COMPLETE_FILE))
            for e in manifest}

  again = sweep.launch(f"{BIGWAE}:tiny", root, RAY_RUNS, "ray", max_parallel=2,
                       retries=1, engine_options={"num_cpus": 2}, log=lambda _: None)
  assert again == [] and not ray.is_initialized()
  for entry in manifest:
    assert len(_attempts(entry["workdir"])) == 1
    assert os.path.getmtime(os.path.join(entry["workdir"], run_files.RUN_COMPLETE_FILE)) == (
        before[entry["index"]])
  assert status.sweep_status(root).counts["finished"] == RAY_RUNS
  with open(os.path.join(root, sweep.SWEEP_FILE)) as f:
    assert json.load(f)["engine"] == "ray"


FAKE_TRAINER = '''
import json, os, sys, time
workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(workdir, "starts.txt"), "a") as f:
  f.write(f"{os.getpid()}\\n")
time.sleep(1.5)
with open(os.path.join(workdir, "run_complete.json"), "w") as f:
  json.dump({"step": 1, "best_step": 1, "best_metrics": {}}, f)
'''


@pytest.mark.slow
def test_two_launchers_on_one_root_both_exit_0_and_run_each_run_once(tmp_path):
  """The second launcher finds runs busy under the first: it waits for them and
  counts them finished, so both exit 0 when every run finished exactly once."""
  (tmp_path / "fake_trainer.py").write_text(FAKE_TRAINER)
  root = tmp_path / "sweep"
  env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{PROJECT_ROOT}")
  command = [sys.executable, "-m", "launch.sweep", "--config=configs/bigwae.py:tiny",
             f"--root={root}", "--num_runs=3", "--trainer=fake_trainer",
             "--compilation_cache_dir="]
  launchers = [subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True) for _ in range(2)]
  outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
  assert [launcher.returncode for launcher in launchers] == [0, 0], outputs
  for index in range(3):
    with open(root / "runs" / str(index) / "starts.txt") as f:
      assert len(f.read().split()) == 1, index
  assert any("running under another launcher; waiting" in out for out in outputs), outputs


@pytest.mark.slow
def test_packed_sweep_killed_relaunched_trains_each_run_once(tmp_path):
  """--pack=3: the tiny sweep's runs 3k..3k+2 (one configuration, seeds 0-2)
  train as one population each; SIGKILL the launcher after the first
  population finished, relaunch: every run finished, none trained twice, the
  manifest lists every index with its member's workdir, status and collect
  read the members."""
  root = str(tmp_path / "sweep")
  num_runs = PACKED_RUNS
  args = [f"--config={BIGWAE}:tiny", f"--root={root}", f"--num_runs={num_runs}",
          "--max_parallel=1", "--retries=1", "--pack=3"]
  with open(tmp_path / "first_launch.txt", "w") as out:
    launcher = subprocess.Popen([sys.executable, "-m", "launch.sweep", *args], cwd=PROJECT_ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    packs = [os.path.join(root, sweep.PACK_DIR, str(k)) for k in range(2)]
    _sigkill_launcher_when(launcher, lambda: runs.is_finished(packs[0]), 300,
                           "a first finished population")
  manifest = sweep.read_manifest(root)
  assert [e["index"] for e in manifest] == list(range(num_runs))
  assert [e["workdir"] for e in manifest] == [os.path.join(packs[i // 3], str(i % 3))
                                              for i in range(num_runs)]
  assert all(e["command"] == manifest[3 * (e["index"] // 3)]["command"] for e in manifest)
  assert "--config.population.seed=(0,1,2)" in manifest[0]["command"]

  results = sweep.launch(f"{BIGWAE}:tiny", root, num_runs, "local", max_parallel=1, retries=1,
                         log=lambda _: None, pack_size=3)
  assert all(r.state in (runs.FINISHED, runs.ALREADY_FINISHED) for r in results), results
  for entry in manifest:
    member = entry["workdir"]
    assert runs.is_finished(member)
    with open(os.path.join(member, run_files.CONFIG_FILE), encoding="utf-8") as f:
      assert json.load(f)["seed"] == entry["overrides"]["seed"]
    steps = [r["step"] for r in runs.read_jsonl(os.path.join(member, "metrics.jsonl"))]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no step logged twice
  # The first population finished before the kill and was never started again.
  assert len(_attempts(packs[0])) == 1
  assert status.sweep_status(root).counts["finished"] == num_runs
  rows = collect.collect(root)["rows"]
  assert sorted(r["index"] for r in rows) == list(range(num_runs))
  assert all(r["value"] is not None for r in rows)
  # A relaunch with another --pack is refused: its runs live in these members.
  with pytest.raises(Exception, match="--pack=3"):
    sweep.launch(f"{BIGWAE}:tiny", root, num_runs, "local", log=lambda _: None)
