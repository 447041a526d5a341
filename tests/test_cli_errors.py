"""Bad inputs through every command line, as a user types them.

Each case runs the program as a subprocess and asserts: exit status 2, stderr
is exactly one line `error: ...` naming the flag, field or file, no traceback,
and the workdir (or sweep root) was neither created nor changed. A case costs
about two seconds, most of it importing JAX: a config file imports the schema
(wae_jax/config.py), which imports every method module to read its fields.
"""

import hashlib
import logging
import os
import struct
import subprocess
import sys

import numpy as np
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
    ("config_argument_unknown", "wae_jax.main",
     ["--config=configs/default.py:foo", f"--workdir={W}"],
     "--config=configs/default.py:foo: unknown config argument 'foo'"),
    # Values of the config.
    ("unknown_method", "wae_jax.main", [DEFAULT, "--config.method=wae", f"--workdir={W}"],
     "config.method 'wae'"),
    ("method_switch_contradicted", "wae_jax.main",
     [DEFAULT, "--config.method=vae", "--config.model.encoder=deterministic", f"--workdir={W}"],
     "--config.method=vae needs config.model.encoder='gaussian', but "
     "--config.model.encoder='deterministic' was given"),
    ("best_metric_the_data_cannot_yield", "wae_jax.main",
     [DEFAULT, "--config.best_metric=swd_image_64", f"--workdir={W}"],
     "config.best_metric='swd_image_64' is not computed for dataset 'digits' (8x8x1 "
     "examples); its group 'swd_image' gives swd_image_8, swd_image_avg"),
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
    ("vae_with_a_contradicting_decoder", "wae_jax.main",
     [DEFAULT, "--config.method=vae", "--config.model.decoder_output=sigmoid", f"--workdir={W}"],
     "--config.method=vae needs config.model.decoder_output='logits', but "
     "--config.model.decoder_output='sigmoid' was given"),
    ("vae_gaussian_variance_zero", "wae_jax.main",
     [DEFAULT, "--config.method=vae", "--config.model.encoder=gaussian",
      "--config.model.decoder_output=logits", "--config.vae.likelihood=gaussian",
      "--config.vae.gaussian_var=0", f"--workdir={W}"],
     "config.vae.gaussian_var must be a finite number > 0"),
    ("moca_with_a_contradicting_prior", "wae_jax.main",
     [DEFAULT, "--config.method=moca", "--config.prior=gaussian", f"--workdir={W}"],
     "--config.method=moca needs config.prior='sphere', but --config.prior='gaussian' was "
     "given (MoCA's latent is the unit sphere; set config.prior='sphere'.)"),
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
    # Issue 25: inputs that traced back, printed several lines or were accepted.
    ("config_without_get_config", "wae_jax.main", ["--config={no_get_config}", f"--workdir={W}"],
     "defines no get_config()"),
    ("keep_labels_absent_class", "wae_jax.main", [DEFAULT, "--config.keep_labels=(11,)",
                                                   f"--workdir={W}"],
     "config.keep_labels=(11,) keeps no example of 'digits'"),
    ("keep_labels_not_labels", "wae_jax.main", [DEFAULT, "--config.keep_labels=abc",
                                                 f"--workdir={W}"],
     "config.keep_labels must be a tuple of distinct class labels"),
    ("keep_labels_repeated", "wae_jax.main", [DEFAULT, "--config.keep_labels=(3,3)",
                                               f"--workdir={W}"],
     "config.keep_labels must be a tuple of distinct class labels"),
    ("gmm2d_without_points", "wae_jax.main",
     [DEFAULT, "--config.dataset=gmm2d", "--config.synthetic_num_points=0", f"--workdir={W}"],
     "config.synthetic_num_points must be an integer >= 1, got 0"),
    ("shuffle_buffer_negative", "wae_jax.main", [DEFAULT, "--config.shuffle_buffer=-1",
                                                  f"--workdir={W}"],
     "config.shuffle_buffer must be an integer >= 0, got -1"),
    ("hidden_size_zero", "wae_jax.main", [DEFAULT, "--config.model.hidden_sizes=(0,)",
                                           f"--workdir={W}"],
     "config.model.hidden_sizes must be a non-empty tuple of layer widths >= 1, got (0,)"),
    ("adversary_hidden_sizes_empty", "wae_jax.main",
     [DEFAULT, "--config.adversary.hidden_sizes=()", f"--workdir={W}"],
     "config.adversary.hidden_sizes must be a non-empty tuple"),
    ("num_eval_images_above_the_test_set", "wae_jax.main",
     [DEFAULT, "--config.num_eval_images=100000", f"--workdir={W}"],
     "config.num_eval_images=100000 is more than the 300 test images of digits"),
    ("swae_k_above_the_training_set", "wae_jax.main",
     ["--config=configs/swae_digits.py", "--config.swae.num_pseudo_inputs=5000", f"--workdir={W}"],
     "config.swae.num_pseudo_inputs=5000 pseudo-inputs start from as many training images, "
     "but digits has 1497"),
    ("latent_size_out_of_memory", "wae_jax.main", [DEFAULT, "--config.latent_dim=2000000000",
                                                    f"--workdir={W}"],
     "GiB for the train state and its gradients, more than the"),
    ("mnist_idx_non_finite_pixels", "wae_jax.main",
     [DEFAULT, "--config.dataset=mnist_idx", "--config.data_dir={nan_mnist}",
      "--config.image_size=28", f"--workdir={W}"],
     "train-images-idx3-ubyte holds 1 pixel(s) that are not finite values in [0, 255]"),
    ("sample_out_under_a_file", "wae_jax.sample", [f"--workdir={W}", "--out={a_file}/grid.png"],
     "lies under {a_file}, which is a file"),
    ("evaluate_num_samples_negative", "wae_jax.evaluate", [f"--workdir={W}", "--num_samples=-5"],
     "--num_samples=-5 must be at least 1"),
    ("evaluate_best_metric_unknown", "wae_jax.evaluate",
     [f"--workdir={W}", "--best_metric=bogus"],
     "--best_metric='bogus' is not a lower-is-better metric"),
    ("bigwae_unknown_config_argument", "wae_jax.main",
     ["--config=configs/bigwae.py:bogus", f"--workdir={W}"],
     "Unknown config argument 'bogus' for bigwae.py"),
    ("sweep_unknown_config_argument", "launch.sweep",
     ["--config=configs/bigwae.py:bogus", f"--root={W}", "--num_runs=1"],
     "Unknown config argument 'bogus' for bigwae.py"),
    ("sweep_zero_cpu_devices_per_run", "launch.sweep",
     ["--config=configs/bigwae.py:tiny", f"--root={W}", "--num_runs=1",
      "--cpu_devices_per_run=0"], "--cpu_devices_per_run=0; a run needs at least 1 device"),
    ("status_root_is_a_file", "launch.status", ["--root={a_file}"], "--root={a_file} is a file"),
    ("collect_root_is_a_file", "launch.collect", ["--root={a_file}"],
     "--root={a_file} is a file"),
    ("multiprocess_missing_program", "wae_jax.multiprocess",
     ["--num_processes=1", "--", "/nonexistent/python", "-m", "wae_jax.main"],
     "cannot start '/nonexistent/python' (No such file or directory)"),
    ("multiprocess_unparsable_count", "wae_jax.multiprocess",
     ["--num_processes=abc", "--", "python", "-V"],
     "argument --num_processes: invalid int value: 'abc'"),
    ("multiprocess_unknown_flag", "wae_jax.multiprocess", ["--procs=2", "--", "python", "-V"],
     "unrecognized arguments: --procs=2"),
    ("multiprocess_port_out_of_range", "wae_jax.multiprocess",
     ["--port=99999", "--", "python", "-V"], "--port=99999 is not a TCP port"),
    ("multiprocess_zero_processes", "wae_jax.multiprocess",
     ["--num_processes=0", "--", "python", "-V"], "--num_processes=0"),
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
  (base / "no_get_config.py").write_text("SETTING = 1\n")
  _write_mnist_idx(base / "nan_mnist", bad_pixel=np.nan)
  return {"syntax_error": str(base / "syntax_error.py"), "raises": str(base / "raises.py"),
          "a_file": str(base / "a_file"), "empty_dir": str(base / "empty_dir"),
          "no_get_config": str(base / "no_get_config.py"), "nan_mnist": str(base / "nan_mnist")}


def _write_idx(path, array, type_code):
  """An idx file: zero, zero, the element type, the rank, the sizes, big-endian data."""
  dtype = {0x08: ">u1", 0x0D: ">f4"}[type_code]
  with open(path, "wb") as f:
    f.write(struct.pack(">BBBB", 0, 0, type_code, array.ndim))
    f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
    f.write(np.asarray(array).astype(dtype).tobytes())


def _write_mnist_idx(folder, bad_pixel):
  """Small MNIST-shaped idx files with float32 images, one pixel set to `bad_pixel`."""
  folder.mkdir()
  rng = np.random.default_rng(0)
  for split, count in (("train", 200), ("t10k", 100)):
    images = rng.uniform(0, 255, (count, 28, 28)).astype(np.float32)
    if split == "train":
      images[0, 0, 0] = bad_pixel
    _write_idx(folder / f"{split}-images-idx3-ubyte", images, 0x0D)
    _write_idx(folder / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, count), 0x08)


def _environment():
  env = dict(os.environ)
  env.pop("XLA_FLAGS", None)  # One CPU device, as a user has (conftest sets eight).
  env.pop("WAE_JAX_DEBUG", None)
  env["PYTHONPATH"] = REPO_ROOT
  return env


@pytest.mark.slow
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


@pytest.mark.slow
def test_debug_shows_the_traceback_and_keeps_exit_2(tmp_path):
  for switch, extra_env in ((["--debug"], {}), ([], {"WAE_JAX_DEBUG": "1"})):
    result = subprocess.run(
        [sys.executable, "-m", "wae_jax.main", DEFAULT, "--config.foo=1",
         f"--workdir={tmp_path / 'w'}", *switch], cwd=REPO_ROOT,
        env={**_environment(), **extra_env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: --config.foo:")


def _log_record(name: str, path: str, level: int, message: str, error=None):
  exc_info = (type(error), error, None) if error is not None else None
  return logging.LogRecord(name, level, path, 1, message, (), exc_info)


def test_library_noise_drops_a_full_disk_from_any_thread_and_keeps_other_errors():
  """A full disk that an orbax background write hits first reaches the log as
  asyncio's "Task exception was never retrieved" with the traceback: dropped
  (the trainer prints the one line). Other errors, and orbax's, stay."""
  from wae_jax import cli  # pylint: disable=g-import-not-at-top
  noise = cli._LibraryNoise()  # pylint: disable=protected-access
  disk_full = ValueError("Error writing: [os_error_code='28'] No space left on device")
  asyncio_path = "/usr/lib/python3.11/asyncio/base_events.py"
  orbax_path = "/site-packages/orbax/checkpoint/_src/serialization/serialization.py"
  dropped = [
      _log_record("asyncio", asyncio_path, logging.ERROR, "Task exception was never retrieved",
                  disk_full),
      _log_record("absl", orbax_path, logging.ERROR, "write failed", disk_full),
      _log_record("absl", orbax_path, logging.INFO, "Saving checkpoint 10"),
  ]
  kept = [
      _log_record("asyncio", asyncio_path, logging.ERROR, "Task exception was never retrieved",
                  ValueError("a real bug")),
      _log_record("absl", orbax_path, logging.WARNING, "a checkpoint item is missing"),
      _log_record("wae_jax", "/wae_jax/train.py", logging.INFO, "step 10"),
  ]
  assert [noise.filter(r) for r in dropped] == [False] * len(dropped)
  assert [noise.filter(r) for r in kept] == [True] * len(kept)


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


# --- After a run: inputs that only a trained workdir can reach -----------------

TINY_RUN = [DEFAULT, "--config.batch_size=16", "--config.latent_dim=4",
            "--config.model.hidden_sizes=(16,)", "--config.num_train_steps=4",
            "--config.log_every_steps=2", "--config.checkpoint_every_steps=2",
            "--config.eval_every_steps=4", "--config.keep_checkpoints=2",
            "--config.num_eval_images=8"]


class _CreatesMarker:
  """Unpickling this runs os.system: what a crafted weights file does."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (os.system, (f"touch {self.marker}",))


def _run_module(module, arguments, env=None):
  return subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO_ROOT,
                        env={**_environment(), **(env or {})}, capture_output=True, text=True,
                        timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 4-step run (checkpoints 2 and 4); copy it before changing it."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  result = _run_module("wae_jax.main", TINY_RUN + [f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _copy(trained, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / "run")
  shutil.copytree(trained, workdir)
  return workdir


def _edit_config(workdir, **evaluation):
  import json  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "config.json")
  with open(path, encoding="utf-8") as f:
    config = json.load(f)
  config["evaluation"].update(evaluation)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(config, f)


# (id, module, arguments, text of the one line, how to prepare the copied workdir)
AFTER_RUN_CASES = [
    ("evaluate_best_metric_unknown", "wae_jax.evaluate",
     ["--workdir={workdir}", "--metrics=cheap", "--best_metric=bogus"],
     "--best_metric='bogus' is not a lower-is-better metric", None),
    ("evaluate_best_metric_not_evaluated", "wae_jax.evaluate",
     ["--workdir={workdir}", "--metrics=latent", "--best_metric=test_reconstruction"],
     "--best_metric=test_reconstruction is computed by the 'test_reconstruction' group", None),
    ("evaluate_fid_weights_flag_names_a_pickle", "wae_jax.evaluate",
     ["--workdir={workdir}", "--metrics=fid_inception", "--fid_weights={pickle}"],
     "which is not a .npz; wae_jax never unpickles weights files", None),
    ("evaluate_config_json_names_a_pickle", "wae_jax.evaluate", ["--workdir={workdir}"],
     "config.evaluation.fid_weights names", lambda w, p: _edit_config(w, fid_weights=p)),
    ("evaluate_fid_weights_flag_names_a_pickle_called_npz", "wae_jax.evaluate",
     ["--workdir={workdir}", "--metrics=fid_inception", "--num_samples=16",
      "--fid_weights={pickle_npz}"], "is not a .npz of numeric arrays", None),
    ("sample_config_json_not_utf8", "wae_jax.sample", ["--workdir={workdir}"],
     "config.json is damaged (not a JSON object)",
     lambda w, p: open(os.path.join(w, "config.json"), "wb").write(b"\xff\xfe{}")),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", AFTER_RUN_CASES, ids=[case[0] for case in AFTER_RUN_CASES])
def test_bad_input_after_a_run_is_one_line_exit_2_and_writes_nothing(case, trained, tmp_path):
  """Also: a crafted pickle that config.json or --fid_weights names never runs."""
  _, module, arguments, expected, prepare = case
  import pickle  # pylint: disable=g-import-not-at-top
  workdir, marker, weights = _copy(trained, tmp_path), tmp_path / "marker", tmp_path / "w.pickle"
  for path in (weights, tmp_path / "w_pickle.npz"):
    with open(path, "wb") as f:
      pickle.dump({"Conv2d_1a_3x3": _CreatesMarker(marker)}, f)
  if prepare is not None:
    prepare(workdir, str(weights))
  before = _tree_digest(workdir)
  names = dict(workdir=workdir, pickle=weights, pickle_npz=tmp_path / "w_pickle.npz")
  result = _run_module(module, [a.format(**names) for a in arguments],
                       env={"WAE_JAX_FID_WEIGHTS": ""})
  lines = result.stderr.splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
  assert not marker.exists()
  assert _tree_digest(workdir) == before


def _warnings(stderr):
  return [line for line in stderr.splitlines() if line.startswith("W") and "damaged" in line]


@pytest.mark.slow
@pytest.mark.parametrize("damage,name,what", [
    (b"\x00garbage{", "run_complete.json", "not a JSON object"),
    (b'{"best_step": 4}', "run_complete.json", 'with an integer "step"'),
    (b"\xff\xfe\n", "config.json", "damaged"),
    (None, "metrics.jsonl", "line 1 is not a record"),
], ids=["run_complete_garbage", "run_complete_no_step", "config_json_not_utf8",
        "metrics_line_garbage"])
def test_a_damaged_run_file_is_moved_aside_with_one_warning(damage, name, what, trained,
                                                            tmp_path):
  """The rerun moves the file to <name>.corrupt, says so once, and finishes (exit 0)."""
  workdir = _copy(trained, tmp_path)
  path = os.path.join(workdir, name)
  if damage is None:  # A bad line before intact ones (not a line cut short by a kill).
    with open(path, "rb") as f:
      intact = f.read()
    damage = b"[1, 2]\n" + intact
    os.remove(os.path.join(workdir, "run_complete.json"))  # A run to resume.
  with open(path, "wb") as f:
    f.write(damage)
  assert not _is_complete(workdir) or name != "run_complete.json"
  result = _run_module("wae_jax.main", TINY_RUN + [f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  warnings = _warnings(result.stderr)
  assert len(warnings) == 1 and path in warnings[0] and what in warnings[0], result.stderr
  with open(path + ".corrupt", "rb") as f:
    assert f.read() == damage
  assert _is_complete(workdir)
  if name == "metrics.jsonl":
    with open(path, "rb") as f:
      assert f.read() == intact  # The intact lines are kept.


def _is_complete(workdir):
  from wae_jax import run_files  # pylint: disable=g-import-not-at-top
  return run_files.is_complete(workdir)


@pytest.mark.slow
def test_a_checkpoint_copied_in_under_another_step_is_refused(trained, tmp_path):
  """Checkpoint 2's folder renamed 4: its state's digest holds, but the digest
  bound to the step does not, so it is moved aside and the run resumes from 2."""
  import shutil  # pylint: disable=g-import-not-at-top
  workdir = _copy(trained, tmp_path)
  checkpoints = os.path.join(workdir, "checkpoints")
  shutil.rmtree(os.path.join(checkpoints, "4"))
  shutil.copytree(os.path.join(checkpoints, "2"), os.path.join(checkpoints, "4"))
  os.remove(os.path.join(workdir, "run_complete.json"))
  result = _run_module("wae_jax.main", TINY_RUN + [f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert "its step number or recorded config differ" in result.stderr
  assert f"Resumed {workdir} from checkpoint 2" in result.stderr
  assert os.path.isdir(os.path.join(checkpoints, "4.corrupt"))
  from wae_jax import checkpoint  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  expected = checkpoint.state_to_checkpoint(checkpoint.restore_state(trained, step=4))
  got = checkpoint.state_to_checkpoint(checkpoint.restore_state(workdir, step=4))
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(b), np.asarray(a))


@pytest.mark.slow
def test_half_written_pngs_are_removed_at_start(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  images = os.path.join(workdir, "images")
  partial = os.path.join(images, f"samples_00000004.png.tmp-{12345}.png")
  with open(partial, "wb") as f:
    f.write(b"\x89PNG half")
  kept = sorted(os.listdir(images))
  result = _run_module("wae_jax.main", TINY_RUN + [f"--workdir={workdir}"])
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(images)) == sorted(set(kept) - {os.path.basename(partial)})


# --- A full disk (a small tmpfs; needs the right to mount, else skipped) ----------


@pytest.fixture
def small_disk(tmp_path):
  """Mounts a tmpfs of the requested size; yields a function size -> mount point."""
  mounted = []

  def mount(size):
    point = tmp_path / f"disk{len(mounted)}"
    point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
                            capture_output=True, text=True)
    if result.returncode != 0:
      pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
    mounted.append(point)
    return point

  yield mount
  for point in mounted:
    subprocess.run(["umount", str(point)], check=True)


# The default MLP 256-256 on 8x8 digits: a checkpoint is about 1.9 MB, an
# evaluation's writes (eval.jsonl, PNGs, TensorBoard) some 40 kB.
DISK_RUN = [DEFAULT, "--config.num_train_steps=40", "--config.log_every_steps=10",
            "--config.num_eval_images=8", "--config.keep_checkpoints=4"]


@pytest.mark.slow
@pytest.mark.parametrize("size,every,eval_every,expected", [
    ("700k", 10, 40, "writing checkpoint 10 to {workdir}/checkpoints/10 failed: the disk is full"),
    ("3000k", 10, 40, "writing checkpoint 20 to {workdir}/checkpoints/20 failed: the disk is full"),
    ("40k", 40, 20, "at step 20 failed: the disk is full"),
], ids=["first_checkpoint", "second_checkpoint", "evaluation"])
def test_a_full_disk_is_one_line_naming_the_path_and_step(size, every, eval_every, expected,
                                                          small_disk):
  workdir = str(small_disk(size) / "run")
  result = _run_module("wae_jax.main", DISK_RUN + [
      f"--config.checkpoint_every_steps={every}", f"--config.eval_every_steps={eval_every}",
      f"--workdir={workdir}"])
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  errors = [line for line in result.stderr.splitlines() if "rror" in line]
  assert len(errors) == 1 and errors[0] == result.stderr.splitlines()[-1], result.stderr
  assert errors[0].startswith("error: ") and expected.format(workdir=workdir) in errors[0]
  assert workdir in errors[0]
  from wae_jax import checkpoint  # pylint: disable=g-import-not-at-top
  for step in checkpoint.all_steps(workdir):  # What was complete before stays intact.
    checkpoint.restore_state(workdir, step=step)
