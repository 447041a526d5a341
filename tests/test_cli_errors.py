"""Bad inputs through every command line, as a user types them.

Each case runs the program as a subprocess and asserts: exit status 2, stderr
is exactly one line `error: ...` naming the flag, field or file, no traceback,
and the workdir (or sweep root) was neither created nor changed. Most cases
fail before JAX is imported, so the table runs in seconds.
"""

import hashlib
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = "--config=configs/default.py"
W = "{workdir}"  # replaced by the case's (absent) workdir

# (id, module, arguments, text the one-line message must contain)
CASES = [
    # Flags and the config file.
    ("config_missing", "wae_jax.main", ["--config=configs/nope.py", f"--workdir={W}"],
     "config file 'configs/nope.py' does not exist"),
    ("config_missing_with_override", "wae_jax.main",
     ["--config=configs/nope.py", "--config.seed=1", f"--workdir={W}"], "does not exist"),
    ("config_empty", "wae_jax.main", ["--config=", f"--workdir={W}"], "--config is empty"),
    ("config_is_directory", "wae_jax.main", ["--config=configs", f"--workdir={W}"],
     "'configs' is a directory"),
    ("config_syntax_error", "wae_jax.main", ["--config={syntax_error}", f"--workdir={W}"],
     "has a syntax error on line 2"),
    ("config_get_config_raises", "wae_jax.main", ["--config={raises}", f"--workdir={W}"],
     "ValueError: no such variant"),
    ("unknown_field", "wae_jax.main", [DEFAULT, "--config.foo=1", f"--workdir={W}"],
     "--config.foo: the config has no field 'foo'"),
    ("misspelt_nested_field", "wae_jax.main",
     [DEFAULT, "--config.model.netwrk=mlp", f"--workdir={W}"],
     "did you mean --config.model.network?"),
    ("value_is_not_a_group", "wae_jax.main",
     [DEFAULT, "--config.model.network.depth=2", f"--workdir={W}"],
     "config.model.network is a single value"),
    ("unparsable_int", "wae_jax.main", [DEFAULT, "--config.batch_size=abc", f"--workdir={W}"],
     "--config.batch_size=abc"),
    ("float_for_int", "wae_jax.main", [DEFAULT, "--config.seed=1.5", f"--workdir={W}"],
     "--config.seed=1.5"),
    ("unknown_flag", "wae_jax.main", [DEFAULT, f"--wrkdir={W}"], "Did you mean: workdir"),
    ("positional_argument", "wae_jax.main", [DEFAULT, f"--workdir={W}", "extra"],
     "unexpected arguments extra"),
    ("workdir_missing", "wae_jax.main", [DEFAULT], "--workdir"),
    # Workdirs.
    ("workdir_empty", "wae_jax.main", [DEFAULT, "--workdir="], "--workdir is empty"),
    ("workdir_is_a_file", "wae_jax.main", [DEFAULT, "--workdir={a_file}"],
     "is not a directory"),
    ("workdir_under_a_file", "wae_jax.main", [DEFAULT, "--workdir={a_file}/run"],
     "is a file"),
    ("workdir_not_writable", "wae_jax.main", [DEFAULT, "--workdir=/proc/sys/wae_run"],
     "/proc/sys"),
    # Values of the config.
    ("unknown_method", "wae_jax.main", [DEFAULT, "--config.method=wae", f"--workdir={W}"],
     "config.method 'wae'"),
    ("unknown_dataset", "wae_jax.main", [DEFAULT, "--config.dataset=imagenet",
                                          f"--workdir={W}"], "config.dataset 'imagenet'"),
    ("unknown_network", "wae_jax.main", [DEFAULT, "--config.model.network=vgg",
                                          f"--workdir={W}"], "config.model.network 'vgg'"),
    ("unknown_encoder", "wae_jax.main", [DEFAULT, "--config.model.encoder=flow",
                                          f"--workdir={W}"], "config.model.encoder 'flow'"),
    ("unknown_prior", "wae_jax.main", [DEFAULT, "--config.prior=laplace", f"--workdir={W}"],
     "config.prior 'laplace'"),
    ("unknown_regularizer", "wae_jax.main", [DEFAULT, "--config.regularizer=kl",
                                              f"--workdir={W}"], "config.regularizer 'kl'"),
    ("unknown_kernel", "wae_jax.main", [DEFAULT, "--config.mmd.kernel=poly",
                                         f"--workdir={W}"], "config.mmd.kernel 'poly'"),
    ("unknown_schedule", "wae_jax.main", [DEFAULT, "--config.optimizer.schedule=cosine",
                                           f"--workdir={W}"], "config.optimizer.schedule"),
    ("latent_dim_zero", "wae_jax.main", [DEFAULT, "--config.latent_dim=0", f"--workdir={W}"],
     "config.latent_dim"),
    ("lambda_negative", "wae_jax.main", [DEFAULT, "--config.lambda_reg=-1", f"--workdir={W}"],
     "config.lambda_reg"),
    ("batch_size_zero", "wae_jax.main", [DEFAULT, "--config.batch_size=0", f"--workdir={W}"],
     "config.batch_size"),
    ("batch_larger_than_data", "wae_jax.main", [DEFAULT, "--config.batch_size=5000",
                                                 f"--workdir={W}"], "config.batch_size=5000"),
    ("no_train_steps", "wae_jax.main", [DEFAULT, "--config.num_train_steps=0",
                                         f"--workdir={W}"], "config.num_train_steps"),
    ("steps_per_call_zero", "wae_jax.main", [DEFAULT, "--config.steps_per_call=0",
                                              f"--workdir={W}"],
     "config.steps_per_call must be an integer >= 1, got 0"),
    ("data_on_device_unknown", "wae_jax.main", [DEFAULT, "--config.data_on_device=yes",
                                                f"--workdir={W}"],
     "Unknown config.data_on_device 'yes'; use one of auto, true, false"),
    ("data_on_device_share_zero", "wae_jax.main", [DEFAULT, "--config.data_on_device_share=0",
                                                   f"--workdir={W}"],
     "config.data_on_device_share must be a finite number in (0, 1], got 0"),
    ("learning_rate_zero", "wae_jax.main", [DEFAULT, "--config.optimizer.learning_rate=0",
                                             f"--workdir={W}"], "config.optimizer.learning_rate"),
    ("prior_var_zero", "wae_jax.main", [DEFAULT, "--config.prior_var=0", f"--workdir={W}"],
     "config.prior_var"),
    ("unknown_final_metric", "wae_jax.main",
     [DEFAULT, "--config.evaluation.final_metrics=('fid',)", f"--workdir={W}"],
     "config.evaluation.final_metrics names unknown metric group(s) ['fid']"),
    ("unknown_best_metric", "wae_jax.main", [DEFAULT, "--config.best_metric=accuracy",
                                              f"--workdir={W}"], "config.best_metric='accuracy'"),
    ("moca_queue_not_multiple", "wae_jax.main",
     [DEFAULT, "--config.method=moca", "--config.model.encoder=sphere", "--config.prior=sphere",
      "--config.moca.queue_size=150", f"--workdir={W}"], "config.moca.queue_size (150)"),
    ("b1_above_one", "wae_jax.main", [DEFAULT, "--config.optimizer.b1=1.5", f"--workdir={W}"],
     "config.optimizer.b1 must be a finite number in [0, 1), got 1.5"),
    ("decay_factor_negative", "wae_jax.main",
     [DEFAULT, "--config.optimizer.decay_factor=-2", f"--workdir={W}"],
     "config.optimizer.decay_factor must be a finite number > 0"),
    ("learning_rate_inf", "wae_jax.main",
     [DEFAULT, "--config.optimizer.learning_rate=inf", f"--workdir={W}"],
     "config.optimizer.learning_rate must be a finite number > 0, got inf"),
    ("lambda_nan", "wae_jax.main", [DEFAULT, "--config.lambda_reg=nan", f"--workdir={W}"],
     "config.lambda_reg must be a finite number >= 0, got nan"),
    ("input_noise_negative", "wae_jax.main",
     [DEFAULT, "--config.encoder_input_noise=-1", f"--workdir={W}"],
     "config.encoder_input_noise must be a finite number >= 0"),
    ("seed_beyond_int64", "wae_jax.main", [DEFAULT, f"--config.seed={2**64}", f"--workdir={W}"],
     "config.seed must be an integer in [0, 9223372036854775808)"),
    ("sinkhorn_epsilon_zero", "wae_jax.main",
     [DEFAULT, "--config.regularizer=sinkhorn", "--config.sinkhorn.epsilon=0",
      f"--workdir={W}"], "config.sinkhorn.epsilon must be a finite number > 0"),
    ("sinkhorn_no_iterations", "wae_jax.main",
     [DEFAULT, "--config.regularizer=sinkhorn", "--config.sinkhorn.num_iters=0",
      f"--workdir={W}"], "config.sinkhorn.num_iters must be an integer >= 1"),
    ("sliced_no_projections", "wae_jax.main",
     [DEFAULT, "--config.regularizer=sliced", "--config.sliced.num_projections=0",
      f"--workdir={W}"], "config.sliced.num_projections must be an integer >= 1"),
    ("mmd_no_scales", "wae_jax.main", [DEFAULT, "--config.mmd.scales=()", f"--workdir={W}"],
     "config.mmd.scales must be a non-empty tuple of positive numbers"),
    ("mmd_scales_not_numbers", "wae_jax.main",
     [DEFAULT, "--config.mmd.scales=abc", f"--workdir={W}"], "config.mmd.scales"),
    ("vae_on_the_default_config", "wae_jax.main", [DEFAULT, "--config.method=vae",
                                                    f"--workdir={W}"],
     "config.method='vae' needs config.model.encoder='gaussian', "
     "config.model.decoder_output='logits'; add --config.model.encoder=gaussian "
     "--config.model.decoder_output=logits"),
    ("vae_gaussian_variance_zero", "wae_jax.main",
     [DEFAULT, "--config.method=vae", "--config.model.encoder=gaussian",
      "--config.model.decoder_output=logits", "--config.vae.likelihood=gaussian",
      "--config.vae.gaussian_var=0", f"--workdir={W}"],
     "config.vae.gaussian_var must be a finite number > 0"),
    ("moca_on_the_default_config", "wae_jax.main", [DEFAULT, "--config.method=moca",
                                                     f"--workdir={W}"],
     "config.method='moca' needs config.model.encoder='sphere', config.prior='sphere'"),
    ("adversary_b1_negative", "wae_jax.main",
     [DEFAULT, "--config.method=wae_gan", "--config.adversary.b1=-0.1", f"--workdir={W}"],
     "config.adversary.b1 must be a finite number in [0, 1)"),
    ("mnist_idx_without_data_dir", "wae_jax.main",
     [DEFAULT, "--config.dataset=mnist_idx", f"--workdir={W}"], "--config.data_dir"),
    ("tfds_not_prepared", "wae_jax.main",
     [DEFAULT, "--config.dataset=mnist", "--config.data_dir={empty_dir}", f"--workdir={W}"],
     "tfds build mnist --data_dir="),
    ("network_cannot_take_image_size", "wae_jax.main",
     [DEFAULT, "--config.model.network=dcgan", "--config.image_size=10", f"--workdir={W}"],
     "config.model.network='dcgan' cannot take 10x10x1 images"),
    # wae_jax.sample and wae_jax.evaluate.
    ("sample_unknown_extension", "wae_jax.sample", [f"--workdir={W}", "--out=grid.jpg"],
     "--out=grid.jpg has extension '.jpg'"),
    ("sample_out_is_directory", "wae_jax.sample", [f"--workdir={W}", "--out={empty_dir}"],
     "is a directory"),
    ("sample_num_zero", "wae_jax.sample", [f"--workdir={W}", "--num=0"], "--num"),
    ("sample_unknown_kind", "wae_jax.sample", [f"--workdir={W}", "--kind=codes"], "--kind"),
    ("sample_workdir_missing", "wae_jax.sample", [f"--workdir={W}"], "does not exist"),
    ("sample_not_a_run", "wae_jax.sample", ["--workdir={empty_dir}"], "has no config.json"),
    ("evaluate_workdir_empty", "wae_jax.evaluate", ["--workdir="], "--workdir is empty"),
    ("evaluate_not_a_run", "wae_jax.evaluate", ["--workdir={empty_dir}"],
     "has no config.json"),
    # The launcher.
    ("sweep_root_missing", "launch.sweep", ["--config=configs/bigwae.py"], "--root"),
    ("sweep_config_missing", "launch.sweep", ["--config=configs/nope.py", f"--root={W}"],
     "nope.py does not exist"),
    ("sweep_config_syntax_error", "launch.sweep", ["--config={syntax_error}", f"--root={W}"],
     "has a syntax error on line 2"),
    ("sweep_unknown_engine", "launch.sweep",
     ["--config=configs/bigwae.py", f"--root={W}", "--engine=slurm"], "--engine"),
    ("sweep_negative_retries", "launch.sweep",
     ["--config=configs/bigwae.py", f"--root={W}", "--retries=-1"], "retries is -1"),
    ("sweep_root_is_a_file", "launch.sweep",
     ["--config=configs/bigwae.py:tiny", "--root={a_file}", "--num_runs=1"],
     "--root={a_file} is not a directory"),
    ("status_no_manifest", "launch.status", ["--root={empty_dir}"], "has no manifest.jsonl"),
    ("collect_no_manifest", "launch.collect", ["--root={empty_dir}"], "has no manifest.jsonl"),
    ("collect_top_zero", "launch.collect", ["--root={empty_dir}", "--top=0"], "--top"),
]


def _tree_digest(path: str) -> str:
  """A digest of every name and file content under path (or of the file)."""
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(path)):
    dirs.sort()
    digest.update(root.encode())
    for name in sorted(files):
      digest.update(name.encode())
      with open(os.path.join(root, name), "rb") as f:
        digest.update(f.read())
  if os.path.isfile(path):
    with open(path, "rb") as f:
      digest.update(f.read())
  return digest.hexdigest()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Files the cases point at; none of them may change."""
  base = tmp_path_factory.mktemp("inputs")
  (base / "syntax_error.py").write_text("def get_config():\n  return (\n")
  (base / "raises.py").write_text(
      "def get_config(arg=None):\n  raise ValueError('no such variant')\n")
  (base / "a_file").write_text("not a directory\n")
  (base / "empty_dir").mkdir()
  return {"syntax_error": str(base / "syntax_error.py"), "raises": str(base / "raises.py"),
          "a_file": str(base / "a_file"), "empty_dir": str(base / "empty_dir")}


def _environment():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # One CPU device, as a user has (conftest sets eight).
  env.pop("WAE_JAX_DEBUG", None)
  env["PYTHONPATH"] = REPO_ROOT
  return env


@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(case, inputs, tmp_path):
  _, module, arguments, expected = case
  workdir = str(tmp_path / "workdir")
  names = dict(inputs, workdir=workdir)
  arguments = [a.format(**names) for a in arguments]
  expected = expected.format(**names)
  before = {path: _tree_digest(path) for path in inputs.values()}

  result = subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO_ROOT,
                          env=_environment(), capture_output=True, text=True, timeout=120)

  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  assert expected in lines[0], lines[0]
  assert "Traceback" not in result.stderr + result.stdout
  assert not os.path.exists(workdir)
  assert {path: _tree_digest(path) for path in inputs.values()} == before


def test_debug_shows_the_traceback_and_keeps_exit_2(tmp_path):
  for switch, extra_env in ((["--debug"], {}), ([], {"WAE_JAX_DEBUG": "1"})):
    result = subprocess.run(
        [sys.executable, "-m", "wae_jax.main", DEFAULT, "--config.foo=1",
         f"--workdir={tmp_path / 'w'}", *switch], cwd=REPO_ROOT,
        env={**_environment(), **extra_env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: --config.foo:")


def test_programming_errors_still_trace_back():
  from wae_jax import cli  # pylint: disable=g-import-not-at-top

  def buggy(argv):
    del argv
    return {}["missing"]

  with pytest.raises(KeyError):
    cli.run(buggy, [])
  assert cli.run(lambda argv: (_ for _ in ()).throw(cli.UserError("x")), []) == 2
  # The file system refusing is the user's environment, not a bug.
  denied = PermissionError(13, "Permission denied", "/data/run")
  assert cli.user_message(denied) == (
      "/data/run: permission denied; choose a location you can write to or "
      "fix its permissions.")
  assert cli.user_message(FileNotFoundError(2, "No such file", "x")) is None


def test_ctrl_c_is_one_line_and_exit_130(capsys):
  from wae_jax import cli  # pylint: disable=g-import-not-at-top

  def interrupted(argv):
    del argv
    raise KeyboardInterrupt

  assert cli.run(interrupted, []) == 130
  assert capsys.readouterr().err == "interrupted; run the same command again to resume.\n"
