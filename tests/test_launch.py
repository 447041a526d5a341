"""launch/: device pinning, locking, manifest, status and collect on built sweeps.

The end-to-end sweeps with the real trainer are in test_launch_sweep.py.
"""

import csv
import fcntl
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
from launch.engines import local

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(PROJECT_ROOT, "configs", "bigwae.py")


# --- device pinning ---------------------------------------------------------

def test_gpu_slots_get_disjoint_equal_shares():
  ids = [str(i) for i in range(8)]
  shares = [local.slot_env("gpu", ids, k, 4, {})["CUDA_VISIBLE_DEVICES"] for k in range(4)]
  assert shares == ["0,1", "2,3", "4,5", "6,7"]


def test_tpu_slots_get_chips_bounds_and_distinct_ports():
  ids = ["0", "1", "2", "3"]
  envs = [local.slot_env("tpu", ids, k, 4, {"KEEP": "1"}) for k in range(4)]
  assert [e["TPU_VISIBLE_CHIPS"] for e in envs] == ["0", "1", "2", "3"]
  assert all(e["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,1,1" for e in envs)
  assert all(e["TPU_PROCESS_BOUNDS"] == "1,1,1" and e["KEEP"] == "1" for e in envs)
  assert len({e["TPU_MESH_CONTROLLER_PORT"] for e in envs}) == 4
  two = local.slot_env("tpu", ids, 1, 2, {})
  assert two["TPU_VISIBLE_CHIPS"] == "2,3" and two["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,2,1"
  # One run per host: the runtime's own defaults.
  assert "TPU_VISIBLE_CHIPS" not in local.slot_env("tpu", ids, 0, 1, {})


def test_cpu_slot_sets_only_the_host_device_count():
  base = {"XLA_FLAGS": "--xla_cpu_foo=1 --xla_force_host_platform_device_count=8"}
  assert local.slot_env("cpu", [], 0, 2, base) == base
  env = local.slot_env("cpu", [], 1, 2, base, cpu_devices_per_run=2)
  assert env["XLA_FLAGS"].split() == ["--xla_cpu_foo=1",
                                      "--xla_force_host_platform_device_count=2"]


def test_more_workers_than_devices_is_one_clear_error():
  with pytest.raises(ValueError, match="max_parallel"):
    local.LocalEngine(max_parallel=3, platform="gpu", device_ids=["0", "1"])


# --- commands and manifest --------------------------------------------------

def test_format_override_gives_config_flags_syntax():
  assert sweep.format_override((16,)) == "(16,)"
  assert sweep.format_override([32, 32]) == "(32,32)"
  assert sweep.format_override(3e-4) == "0.0003"
  assert sweep.format_override("wae_gan") == "wae_gan"


def test_manifest_is_stable_extends_and_refuses_another_sweep(tmp_path):
  root = str(tmp_path)
  entries = sweep.expand(root, CONFIG, "tiny", 6, seed=0)
  sweep.write_manifest(root, entries, {})
  assert sweep.read_manifest(root) == json.loads(json.dumps(entries))
  for entry in entries:
    assert entry["workdir"] == os.path.join(root, "runs", str(entry["index"]))
    assert f"--workdir={entry['workdir']}" in entry["command"]
    assert "-m wae_jax.main --config=" + CONFIG + ":tiny" in entry["command"]
  longer = sweep.expand(root, CONFIG, "tiny", 9, seed=0)
  sweep.write_manifest(root, longer, {})
  assert len(sweep.read_manifest(root)) == 9
  # A shorter relaunch keeps the longer manifest's runs.
  sweep.write_manifest(root, entries, {})
  assert len(sweep.read_manifest(root)) == 9
  with pytest.raises(ValueError, match="different sweep"):
    sweep.write_manifest(root, sweep.expand(root, CONFIG, "tiny", 6, seed=1), {})


def test_config_argument_given_twice_differently_is_refused(tmp_path):
  with pytest.raises(ValueError, match="give it once"):
    sweep.launch(CONFIG + ":tiny", str(tmp_path), 3, config_arg="other", log=lambda _: None)


# --- execute_run: lock, retries, status files -------------------------------

def _spec(tmp_path, code, index=0):
  workdir = str(tmp_path / "runs" / str(index))
  return runs.RunSpec(index, workdir, (sys.executable, "-c", code), str(tmp_path))


def test_run_held_by_another_process_is_not_started(tmp_path):
  spec = _spec(tmp_path, "raise SystemExit(0)")
  os.makedirs(spec.workdir)
  with open(os.path.join(spec.workdir, runs.LOCK_FILE), "w") as held:
    fcntl.flock(held.fileno(), fcntl.LOCK_EX)
    assert runs.is_locked(spec.workdir)
    assert runs.execute_run(spec, retries=0).state == runs.BUSY
  assert not runs.is_locked(spec.workdir)
  assert not os.path.exists(os.path.join(spec.workdir, runs.ATTEMPTS_FILE))


def test_failing_run_is_retried_then_failed_with_its_log_tail(tmp_path):
  spec = _spec(tmp_path, "import sys; print('bad value for model.network'); sys.exit(3)")
  result = runs.execute_run(spec, retries=2)
  assert result.state == runs.FAILED and result.attempts == 3
  assert "bad value for model.network" in result.log_tail
  assert len(runs.read_jsonl(os.path.join(spec.workdir, runs.ATTEMPTS_FILE))) == 3
  saved = runs.read_json(os.path.join(spec.workdir, runs.STATUS_FILE))
  assert saved["state"] == "failed" and "exited with status 3" in saved["log_tail"]
  assert status.run_state(spec.workdir) == "failed"


def test_bad_input_exit_status_is_not_retried(tmp_path):
  spec = _spec(tmp_path, "import sys; print('error: config.optimizer.b1 must be ...', "
               "file=sys.stderr); sys.exit(2)")
  result = runs.execute_run(spec, retries=2)
  assert result.state == runs.FAILED and result.attempts == 1
  assert "error: config.optimizer.b1" in result.log_tail


def test_trainer_holds_the_lock_and_success_needs_run_complete(tmp_path):
  # The child checks that the run's lock is taken while it runs, then completes.
  code = ("import fcntl, json, os, sys\n"
          "f = open('launch.lock', 'a+')\n"
          "try:\n  fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB); sys.exit(5)\n"
          "except BlockingIOError:\n  pass\n"
          "json.dump({'step': 1, 'best_step': 1, 'best_metrics': {}}, open('run_complete.json', 'w'))\n")
  workdir = str(tmp_path / "runs" / "0")
  spec = runs.RunSpec(0, workdir, (sys.executable, "-c", code), workdir)
  os.makedirs(workdir)
  result = runs.execute_run(spec, retries=0)
  assert result.state == runs.FINISHED, runs.log_tail(workdir)
  assert runs.execute_run(spec, retries=0).state == runs.ALREADY_FINISHED
  # Exit status 0 without run_complete.json is a failure.
  empty = _spec(tmp_path, "pass", index=1)
  assert runs.execute_run(empty, retries=0).state == runs.FAILED


@pytest.mark.slow
@pytest.mark.parametrize("die_with_parent", [True, False])
def test_killed_worker_never_leaves_the_run_unlocked_while_its_trainer_lives(
    tmp_path, die_with_parent):
  """SIGKILL the process running execute_run: with the death signal its trainer
  dies and the OS frees the lock; without, the orphaned trainer keeps it."""
  workdir = str(tmp_path / "runs" / "0")
  trainer = "import os, time; open('trainer.pid', 'w').write(str(os.getpid())); time.sleep(60)"
  worker = ("import sys; from launch import runs\n"
            f"spec = runs.RunSpec(0, {workdir!r}, (sys.executable, '-c', {trainer!r}), {workdir!r})\n"
            f"runs.execute_run(spec, retries=0, die_with_parent={die_with_parent})\n")
  os.makedirs(workdir)
  process = subprocess.Popen([sys.executable, "-c", worker], cwd=PROJECT_ROOT)
  pid_file = os.path.join(workdir, "trainer.pid")
  deadline = time.time() + 60
  while not (os.path.exists(pid_file) and open(pid_file).read()) and time.time() < deadline:
    time.sleep(0.1)
  trainer_pid = int(open(pid_file).read())
  assert runs.is_locked(workdir)
  process.kill()
  process.wait()
  deadline = time.time() + (20 if die_with_parent else 1)
  while (runs.is_locked(workdir) or not die_with_parent) and time.time() < deadline:
    time.sleep(0.1)
  try:
    assert runs.is_locked(workdir) is (not die_with_parent)
    assert status.run_state(workdir) == ("pending" if die_with_parent else "running")
  finally:
    if not die_with_parent:
      os.kill(trainer_pid, signal.SIGKILL)
  deadline = time.time() + 20
  while runs.is_locked(workdir) and time.time() < deadline:
    time.sleep(0.1)
  assert not runs.is_locked(workdir)


def session_processes(session_id):
  """Live (not zombie) processes of a session: a launcher started with
  start_new_session=True and everything it started."""
  found = []
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      with open(f"/proc/{name}/stat") as f:
        stat = f.read()
    except OSError:
      continue  # Ended meanwhile.
    state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]
    if int(session) == session_id and state != "Z":
      found.append(int(name))
  return found


# The local engine running 3 runs, 2 at a time, whose trainers sleep. Ctrl-C
# raises KeyboardInterrupt as in a terminal even when the suite runs as a
# background job (whose children inherit SIGINT ignored).
SLEEPING_SWEEP = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from launch import runs
from launch.engines import local
trainer = "import os, time; open('trainer.pid', 'w').write(str(os.getpid())); time.sleep(600)"
specs = [runs.RunSpec(i, w, (sys.executable, "-c", trainer), w)
         for i, w in enumerate({workdirs!r})]
local.LocalEngine(max_parallel=2, platform="cpu").run(specs, retries=0)
"""


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_launcher_leaves_no_worker_or_trainer(tmp_path, signum):
  """A signal to the launcher's PID alone (not its process group) ends its
  workers and their trainers, frees the runs' locks and starts no queued run."""
  workdirs = [str(tmp_path / "runs" / str(i)) for i in range(3)]
  launcher = subprocess.Popen(
      [sys.executable, "-c", SLEEPING_SWEEP.format(workdirs=workdirs)], cwd=PROJECT_ROOT,
      start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    pid_files = [os.path.join(w, "trainer.pid") for w in workdirs]
    deadline = time.time() + 60
    while sum(os.path.exists(p) for p in pid_files) < 2:
      assert launcher.poll() is None and time.time() < deadline, "no two trainers started"
      time.sleep(0.1)
    os.kill(launcher.pid, signum)
    launcher.wait(timeout=30)
    deadline = time.time() + 30
    while session_processes(launcher.pid) and time.time() < deadline:
      time.sleep(0.1)
    assert session_processes(launcher.pid) == []
  finally:
    os.killpg(launcher.pid, signal.SIGKILL) if session_processes(launcher.pid) else None
  assert not any(runs.is_locked(w) for w in workdirs)
  assert sum(os.path.exists(p) for p in pid_files) == 2  # The queued run never started.


def test_extra_env_reaches_the_trainer(tmp_path):
  code = ("import json, os\n"
          "json.dump({'step': 1, 'best_step': 1, 'best_metrics': {'cache': "
          "os.environ['JAX_COMPILATION_CACHE_DIR']}}, open('run_complete.json', 'w'))\n")
  workdir = str(tmp_path / "runs" / "0")
  os.makedirs(workdir)
  spec = runs.RunSpec(0, workdir, (sys.executable, "-c", code), workdir,
                      (("JAX_COMPILATION_CACHE_DIR", "/shared/cache"),))
  assert runs.execute_run(spec, retries=0).state == runs.FINISHED
  complete = run_files.read_run_complete(workdir)
  assert complete["best_metrics"]["cache"] == "/shared/cache"


# --- status and collect on a built sweep ------------------------------------

def _build_sweep(root, num_runs=9):
  """A sweep in every state: finished 0-4, failed 5, running 6, partial 7, pending 8."""
  entries = sweep.expand(root, CONFIG, "tiny", num_runs, seed=0)
  sweep.write_manifest(root, entries, {})
  now = time.time()
  for entry in entries:
    os.makedirs(entry["workdir"])
  for i in range(5):
    workdir = entries[i]["workdir"]
    evals = [{"step": 10, "metrics": {"test_reconstruction": 10.0 + i, "fid_inception": 50.0 - i}},
             {"step": 20, "metrics": {"test_reconstruction": 5.0 + i, "fid_inception": 60.0 - i}}]
    with open(os.path.join(workdir, "eval.jsonl"), "w") as f:
      f.write("".join(json.dumps(e) + "\n" for e in evals))
    runs.write_json_atomic(os.path.join(workdir, runs.STATUS_FILE),
                           {"state": "finished", "first_started": now - 100 - 20 * i,
                            "ended": now - 20 * i})
    runs.write_json_atomic(os.path.join(workdir, run_files.RUN_COMPLETE_FILE),
                           {"step": 20, "best_step": 20, "best_metrics": evals[1]["metrics"]})
  runs.write_json_atomic(os.path.join(entries[5]["workdir"], runs.STATUS_FILE),
                         {"state": "failed", "log_tail": "boom"})
  with open(os.path.join(entries[7]["workdir"], "eval.jsonl"), "w") as f:
    f.write(json.dumps({"step": 10, "metrics": {"test_reconstruction": 9.0, "fid_inception": 30.0}}) + "\n")
    f.write(json.dumps({"step": 20, "metrics": {"test_reconstruction": 8.0, "fid_inception": 35.0}}) + "\n")
    f.write('{"step": 30, "metr')  # a line torn by a kill
  return entries


def test_status_counts_every_state_and_eta(tmp_path):
  root = str(tmp_path)
  entries = _build_sweep(root)
  with open(os.path.join(entries[6]["workdir"], runs.LOCK_FILE), "w") as held:
    fcntl.flock(held.fileno(), fcntl.LOCK_EX)
    result = status.sweep_status(root)
  assert result.counts == {"pending": 2, "running": 1, "finished": 5, "failed": 1}
  assert result.mean_run_seconds == pytest.approx(100.0, abs=1e-6)
  # Two pending and one half-done running run, one run at a time.
  assert result.eta_seconds == pytest.approx(2.5 * 100.0)
  text = status.format_status(result)
  assert "failed    1" in text and "[5]" in text


def test_status_cli_on_an_empty_root_says_what_to_do(tmp_path, capsys):
  assert status.main([f"--root={tmp_path}"]) == 2
  assert "launch the sweep" in capsys.readouterr().err


def test_collect_table_uses_best_checkpoints_and_partial_runs(tmp_path):
  root = str(tmp_path)
  entries = _build_sweep(root)
  result = collect.collect(root)
  assert result["metric"] == "fid_inception"  # preferred over test_reconstruction
  rows = {r["index"]: r for r in result["rows"]}
  for i in range(5):
    # The trainer's best checkpoint (step 20) is what the table reports.
    assert rows[i]["best_step"] == 20 and rows[i]["best_metrics"]["fid_inception"] == 60.0 - i
    assert rows[i]["value"] == 60.0 - i and rows[i]["state"] == "finished"
  # The unfinished run: its best evaluated checkpoint by FID so far.
  assert rows[7]["best_step"] == 10 and rows[7]["value"] == 30.0
  assert rows[7]["state"] == "pending"
  assert rows[8]["value"] is None and rows[5]["state"] == "failed"
  with open(os.path.join(root, "collect", "runs.csv")) as f:
    table = list(csv.DictReader(f))
  assert [int(r["index"]) for r in table] == list(range(9))
  assert table[0]["method"] == entries[0]["overrides"]["method"]
  assert float(table[3]["best.fid_inception"]) == 57.0
  assert float(table[3]["plotted.fid_inception"]) == 57.0
  assert table[0]["model.hidden_sizes"] == sweep.format_override(
      tuple(entries[0]["overrides"]["model.hidden_sizes"]))
  assert len(runs.read_jsonl(os.path.join(root, "collect", "runs.jsonl"))) == 9
  for name in ("best_by_method.png", "metric_vs_hparams.png", "top_runs.png"):
    with open(os.path.join(root, "collect", name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_collect_metric_choice_and_override():
  assert collect.choose_metric({"test_reconstruction", "fid_inception"}) == "fid_inception"
  assert collect.choose_metric(
      {"best_fid_inception", "fid_inception", "fd_digits_classifier"}) == "fid_inception"
  assert collect.choose_metric({"test_reconstruction", "best_fd_digits_classifier",
                                "fd_digits_classifier"}) == "fd_digits_classifier"
  assert collect.choose_metric({"test_reconstruction", "swd"}) == "test_reconstruction"
  assert collect.choose_metric({"fid"}, "swd") == "swd"
  assert collect.choose_metric(set()) is None


@pytest.mark.parametrize("name", ["tpu_cluster.yaml", "gpu_cluster.yaml"])
def test_cluster_configs_are_complete_ray_cluster_files(name):
  yaml = pytest.importorskip("yaml")
  with open(os.path.join(PROJECT_ROOT, "launch", name)) as f:
    cluster = yaml.safe_load(f)
  assert cluster["provider"]["type"] == "gcp"
  node_types = cluster["available_node_types"]
  assert cluster["head_node_type"] in node_types
  # The head schedules no run; every worker type offers an accelerator.
  assert node_types[cluster["head_node_type"]]["resources"] == {"CPU": 0}
  workers = [t for n, t in node_types.items() if n != cluster["head_node_type"]]
  accelerator = "TPU" if name.startswith("tpu") else "GPU"
  assert workers and all(t["resources"].get(accelerator, 0) > 0 for t in workers)
  if accelerator == "TPU":
    assert all("acceleratorType" in t["node_config"] for t in workers)
