"""SIGTERM (preemption) and SIGINT (Ctrl-C) through `python -m wae_jax.main`.

The trainer gets the signal at a time drawn per test run while it trains;
it must checkpoint the step in flight, print one line, exit 143 / 130, and
the same command must then finish the run bitwise equal to an uninterrupted
one (every leaf of the final state, every metrics.jsonl value but timings).
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from wae_jax import checkpoint
from wae_jax import metrics_io
from wae_jax import preemption

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 20_000
# The tiny digits MLP; one checkpoint (the last), so any other is the preemption's.
ARGS = ["--config=configs/default.py", "--config.dataset=digits", "--config.image_size=8",
        "--config.batch_size=16", "--config.latent_dim=4", "--config.model.hidden_sizes=(16,)",
        "--config.adversary.hidden_sizes=(16,)", f"--config.num_train_steps={NUM_STEPS}",
        "--config.log_every_steps=100", f"--config.checkpoint_every_steps={NUM_STEPS}",
        f"--config.eval_every_steps={NUM_STEPS}", "--config.num_eval_images=8",
        "--config.steps_per_call=10"]
# A background job of a non-interactive shell starts with SIGINT ignored, which
# the trainer respects (nohup's contract); a terminal's Ctrl-C has it at default.
SIGINT_AT_DEFAULT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                     "os.execv(sys.argv[1], sys.argv[1:])")


def _environment():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # One CPU device, as a user has.
  env["PYTHONPATH"] = REPO_ROOT
  return env


def _train(workdir, prefix=()):
  return subprocess.Popen([*prefix, sys.executable, "-m", "wae_jax.main", *ARGS,
                           f"--workdir={workdir}"], cwd=REPO_ROOT, env=_environment(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _signal_while_training(workdir, signum, prefix=()):
  """Starts the run, sends `signum` at a random time after its first log line."""
  child = _train(workdir, prefix)
  metrics = os.path.join(workdir, metrics_io.METRICS_FILE)
  deadline = time.monotonic() + 300
  while not (os.path.exists(metrics) and os.path.getsize(metrics)):
    assert child.poll() is None and time.monotonic() < deadline, child.communicate()
    time.sleep(0.02)
  time.sleep(random.uniform(0.0, 0.5))
  child.send_signal(signum)
  out, err = child.communicate(timeout=300)
  return child.returncode, out, err


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("reference") / "run")
  child = _train(workdir)
  _, err = child.communicate(timeout=600)
  assert child.returncode == 0, err[-3000:]
  return workdir


def _final_leaves(workdir):
  state = checkpoint.restore_state(workdir, step=NUM_STEPS)
  return jax.tree_util.tree_leaves_with_path(checkpoint.state_to_checkpoint(state))


def _metrics(workdir, name):
  records = metrics_io.read_jsonl(os.path.join(workdir, name))
  return [{k: v for k, v in r.items() if k != "steps_per_second"} for r in records]


def _assert_resumes_bitwise(workdir, reference, step):
  assert checkpoint.all_steps(workdir) == [step]
  assert 0 < step < NUM_STEPS
  child = _train(workdir)
  _, err = child.communicate(timeout=600)
  assert child.returncode == 0, err[-3000:]
  assert f"Resumed {workdir} from checkpoint {step}" in err
  for (path, expected), (_, got) in zip(_final_leaves(reference), _final_leaves(workdir)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected),
                                  err_msg=jax.tree_util.keystr(path))
  for name in (metrics_io.METRICS_FILE, "eval.jsonl"):
    if os.path.exists(os.path.join(reference, name)):
      assert _metrics(workdir, name) == _metrics(reference, name), name
  with open(os.path.join(workdir, "run_complete.json"), encoding="utf-8") as f:
    assert json.load(f)["step"] == NUM_STEPS


@pytest.mark.slow
@pytest.mark.parametrize("signum,status,word,prefix", [
    (signal.SIGTERM, preemption.EXIT_PREEMPTED, "preempted", ()),
    (signal.SIGINT, preemption.EXIT_INTERRUPTED, "interrupted",
     (sys.executable, "-c", SIGINT_AT_DEFAULT)),
], ids=["sigterm", "sigint"])
def test_a_signal_checkpoints_the_step_in_flight_and_the_run_resumes_bitwise(
    signum, status, word, prefix, reference, tmp_path):
  workdir = str(tmp_path / "run")
  returncode, _, err = _signal_while_training(workdir, signum, prefix)
  assert returncode == status, err[-3000:]
  assert "Traceback" not in err
  lines = [line for line in err.splitlines() if word in line]
  assert len(lines) == 1, err[-3000:]
  assert err.splitlines()[-1] == lines[0]  # The last thing it says.
  step = int(lines[0].split(" at step ")[1].split(";")[0])
  assert lines[0] == f"{word} at step {step}; run the same command to resume"
  assert step % 10 == 0  # A call's last step (steps_per_call=10).
  assert not os.path.exists(os.path.join(workdir, "run_complete.json"))
  _assert_resumes_bitwise(workdir, reference, step)


def test_sigint_ignored_by_the_parent_stays_ignored(tmp_path):
  """nohup / a background job: the trainer does not take over an ignored SIGINT."""
  code = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
          "from wae_jax import preemption\n"
          "with preemption.StopSignals():\n"
          "  assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
          "  assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL\n"
          "assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL\n")
  subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=_environment(), check=True,
                 timeout=120)
