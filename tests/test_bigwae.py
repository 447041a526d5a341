"""configs/bigwae.py: the base runs and the sweep's expansion."""

import importlib.util
import math
import os
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from launch import sweep as sweep_lib
from wae_jax import methods

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "configs", "bigwae.py")


def _load_bigwae():
  spec = importlib.util.spec_from_file_location("bigwae_under_test", CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


bigwae = _load_bigwae()


def test_base_config_is_the_celeba_study():
  config = bigwae.get_config()
  assert config.dataset == "celeb_a" and config.image_size == 64
  assert config.num_train_steps == 100_000
  assert config.checkpoint_every_steps == config.eval_every_steps == 10_000
  assert config.best_metric == "fid_inception"
  assert config.evaluation.num_samples == 10_000
  assert config.optimizer.schedule == "constant"
  assert config.mmd.scales == (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


@pytest.mark.parametrize("config_arg", [None, "tiny"])
def test_vae_draws_use_the_standard_gaussian_prior(config_arg):
  """WAE paper, section 4: the VAEs used standard Gaussian priors; the WAEs of
  the CelebA base run keep N(0, 2 I) (appendix C.2), WAE-GAN its log-prior trick."""
  from wae_jax import priors  # pylint: disable=g-import-not-at-top
  seen = set()
  for overrides in bigwae.sweep(60, seed=0, config_arg=config_arg):
    config = sweep_lib.with_overrides(bigwae.get_config(config_arg), overrides)
    seen.add(config.method)
    if config.method == "vae":
      assert config.prior == "gaussian" and config.prior_var == 1.0
      samples = np.asarray(priors.get_prior(config).sample(jax.random.PRNGKey(0), 20000, 4),
                           np.float64)
      # Five standard errors of a sample covariance entry of N(0, I): 5 sqrt(2 / n).
      np.testing.assert_allclose(np.cov(samples.T), np.eye(4), atol=5 * math.sqrt(2 / 20000))
    elif config_arg is None:
      assert config.prior_var == 2.0
      assert config.adversary_log_prior  # read by WAE-GAN draws only
  assert seen == {"wae_mmd", "wae_gan", "vae"}


def test_tiny_config_runs_offline_on_digits():
  config = bigwae.get_config("tiny")
  assert config.dataset == "digits" and config.model.network == "mlp"
  assert config.num_train_steps <= 50
  assert config.num_train_steps % config.checkpoint_every_steps == 0


def test_unknown_config_argument_is_one_clear_error():
  with pytest.raises(ValueError, match="tiny"):
    bigwae.get_config("huge")
  with pytest.raises(ValueError, match="tiny"):
    bigwae.sweep(3, 0, "huge")


def test_same_index_same_overrides_whatever_num_runs():
  long = bigwae.sweep(60, seed=4)
  assert bigwae.sweep(7, seed=4) == long[:7]
  assert bigwae.sweep(60, seed=4) == long
  assert bigwae.sweep(60, seed=5) != long


def _in_range(value, spec):
  distribution, params = spec
  if distribution == "choice":
    return value in params
  low, high = params
  return low <= value <= high


def test_expansion_respects_ranges_over_many_indices():
  num_runs = 1500
  runs = bigwae.sweep(num_runs, seed=0)
  field_to_names = {}
  for name, (field, _) in bigwae.FIELDS.items():
    field_to_names.setdefault(field, []).append(name)
  positions = {name: [] for name, (d, _) in bigwae.SEARCH_SPACE.items() if d != "choice"}
  for index, overrides in enumerate(runs):
    method = overrides["method"]
    assert overrides["seed"] == index % 3
    # Runs of one configuration differ only in their seed.
    first = runs[index - index % 3]
    assert {k: v for k, v in overrides.items() if k != "seed"} == {
        k: v for k, v in first.items() if k != "seed"}
    fixed = {**bigwae.METHOD_SETTINGS.get(method, {}), **methods.get(method).required}
    expected_fields = {"seed"} | set(fixed) | {
        field for field, swept in bigwae.FIELDS.values() if method in swept}
    assert set(overrides) == expected_fields
    for field, value in overrides.items():
      if field == "seed":
        continue
      if field in fixed:
        assert value == fixed[field]
        continue
      names = [n for n in field_to_names[field] if method in bigwae.FIELDS[n][1]]
      assert len(names) == 1, (field, method)
      spec = bigwae.SEARCH_SPACE[names[0]]
      assert _in_range(value, spec), (index, field, value, spec)
      if spec[0] != "choice" and index % 3 == 0:
        low, high = spec[1]
        positions[names[0]].append(
            math.log(value / low) / math.log(high / low) if spec[0] == "log_uniform"
            else (value - low) / (high - low))
  # The position on the (log) axis is uniform on [0, 1], so its mean is 1/2
  # and its variance 1/12 (tolerances are > 4 standard errors).
  for name, values in positions.items():
    values = np.array(values)
    assert len(values) > 50, name
    assert abs(values.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(values)), name
    assert abs(values.var() - 1 / 12) < 0.03, name
  drawn = [r["method"] for r in runs[::3]]
  for method in ("wae_mmd", "wae_gan", "vae"):
    assert abs(drawn.count(method) / len(drawn) - 1 / 3) < 0.06


def test_editing_one_range_leaves_the_other_draws(monkeypatch):
  before = bigwae.sweep(90, seed=1)
  monkeypatch.setitem(bigwae.SEARCH_SPACE, "decoder_variance", ("uniform", (20.0, 30.0)))
  after = bigwae.sweep(90, seed=1)
  for old, new in zip(before, after):
    if old["method"] == "vae":
      assert 20.0 <= new["vae.gaussian_var"] <= 30.0
    assert {k: v for k, v in old.items() if k != "vae.gaussian_var"} == {
        k: v for k, v in new.items() if k != "vae.gaussian_var"}


def test_bad_search_space_is_one_clear_error(monkeypatch):
  monkeypatch.setitem(bigwae.SEARCH_SPACE, "learning_rate", ("log_uniform", (0.0, 1e-3)))
  with pytest.raises(ValueError, match="log_uniform"):
    bigwae.sweep(3)
  monkeypatch.setitem(bigwae.SEARCH_SPACE, "learning_rate", ("gamma", (1.0, 2.0)))
  with pytest.raises(ValueError, match="distribution"):
    bigwae.sweep(3)


def test_tiny_mode_maps_networks_to_mlp_widths():
  runs = bigwae.sweep(300, seed=0, config_arg="tiny")
  full = bigwae.sweep(300, seed=0)
  for tiny, big in zip(runs, full):
    assert "model.network" not in tiny
    assert tiny["model.hidden_sizes"] == bigwae.TINY_NETWORKS[big["model.network"]]
    assert tiny["latent_dim"] in bigwae.TINY_SEARCH_SPACE["latent_dim"][1]
    assert tiny["batch_size"] in bigwae.TINY_SEARCH_SPACE["batch_size"][1]
    # The other dimensions are the full sweep's.
    for key in ("method", "optimizer.learning_rate", "seed"):
      assert tiny[key] == big[key]
  assert {r["model.hidden_sizes"] for r in runs} == set(bigwae.TINY_NETWORKS.values())


@pytest.mark.parametrize("config_arg", [None, "tiny"])
def test_commands_parse_with_ml_collections_flags(config_arg, tmp_path):
  """The manifest's --config.x=y flags set exactly the overrides in the config."""
  entries = sweep_lib.expand(str(tmp_path), CONFIG_PATH, config_arg, 12, seed=3)
  for entry in entries:
    argv = ["prog"] + [a for a in shlex.split(entry["command"]) if a.startswith("--config")]
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
    flag_values(argv)
    config = flag_values.config
    for key, value in entry["overrides"].items():
      node = config
      for part in key.split("."):
        node = node[part]
      if isinstance(value, list):
        assert tuple(node) == tuple(value), key
      else:
        assert node == value and type(node) is type(value), key


@pytest.mark.parametrize("config_arg,image_shape", [(None, (64, 64, 3)), ("tiny", (8, 8, 1))])
def test_every_swept_run_passes_the_trainers_config_checks(config_arg, image_shape,
                                                          tmp_path, monkeypatch):
  """The trainer's own validation accepts each run (8 devices), and each network
  the sweep uses builds at the data's shape (traced with eval_shape, no compute)."""
  # The full sweep selects by FID, which the checks require a weights file for.
  weights = tmp_path / "inception_v3_fid.npz"
  weights.write_bytes(b"")
  monkeypatch.setenv("WAE_JAX_FID_WEIGHTS", str(weights))
  config_checks = pytest.importorskip("wae_jax.config_checks")
  traced = set()
  for overrides in bigwae.sweep(300, seed=0, config_arg=config_arg):
    # Setting a field the locked config lacks would raise: every key exists.
    config = sweep_lib.with_overrides(bigwae.get_config(config_arg), overrides)
    config_checks.check_values(config, num_devices=8)
    network = (config.model.network, tuple(config.model.hidden_sizes))
    if network not in traced and config.model.encoder == "gaussian":
      traced.add(network)
      config.latent_dim = max(bigwae.search_space(config_arg)["latent_dim"][1])
      config_checks.check_networks(config, image_shape)
  assert len(traced) == 2


def _structure(config):
  """The fields that decide a method's code path; the swept floats (rates,
  lambda, scales, variances) only change constants, the latent and batch sizes
  only shapes, and the network is the same module for every method (each
  network is traced by the test above)."""
  return (config.method, config.model.encoder, config.model.decoder_output,
          config.vae.likelihood)


@pytest.mark.slow
@pytest.mark.parametrize("config_arg", [None, "tiny"])
def test_every_draw_builds_its_state_and_takes_a_step(config_arg, tmp_path, monkeypatch):
  """Draws 0-499: every one passes the value and method checks; the first draw of each
  method structure is initialised by method.init and takes one real train step
  with its own values on a batch of 8 digits, its network shrunk to an 8-unit
  MLP."""
  weights = tmp_path / "inception_v3_fid.npz"
  weights.write_bytes(b"")
  monkeypatch.setenv("WAE_JAX_FID_WEIGHTS", str(weights))
  from wae_jax import config_checks
  from wae_jax import methods
  import methods_testlib as lib
  representatives = {}
  for index, overrides in enumerate(bigwae.sweep(500, seed=0, config_arg=config_arg)):
    config = sweep_lib.with_overrides(bigwae.get_config(config_arg), overrides)
    config_checks.check_values(config, num_devices=1)  # with the method's check_config
    representatives.setdefault(_structure(config), (index, config))
  batch = lib.digits_batch(8)
  for index, config in representatives.values():
    with config.unlocked():
      config.batch_size = 8
      config.model.network = "mlp"
      config.model.hidden_sizes = (8,)
      config.adversary.hidden_sizes = (8,)
    method = methods.get(config.method)
    state = lib.jit(lambda rng: method.init(config, rng, batch))(jax.random.PRNGKey(index))
    state, metrics = lib.jit(method.train_step)(state, batch)
    assert int(state.step) == 1 and np.isfinite(float(metrics["loss"])), index
  assert set(representatives) == {
      ("wae_mmd", "deterministic", "sigmoid", "bernoulli"),
      ("wae_mmd", "gaussian", "sigmoid", "bernoulli"),
      ("wae_gan", "deterministic", "sigmoid", "bernoulli"),
      ("wae_gan", "gaussian", "sigmoid", "bernoulli"),
      ("vae", "gaussian", "logits", "gaussian")}


BAD_SWEEP = '''"""A sweep whose run 4 has latent dim 0 and run 5 an unknown regularizer."""
from configs import default

NUM_RUNS = 6


def get_config(arg=None):
  return default.base_config()


def sweep(num_runs, seed=0, config_arg=None):
  runs = [{"latent_dim": 0 if i == 4 else 8, "seed": i} for i in range(num_runs)]
  for run in runs[5:]:
    run["regularizer"] = "energy"
  return runs
'''


@pytest.mark.slow
def test_sweep_refuses_a_run_that_fails_the_checks_before_launching(tmp_path):
  config_file = tmp_path / "bad_sweep.py"
  config_file.write_text(BAD_SWEEP)
  root = tmp_path / "root"
  process = subprocess.run(
      [sys.executable, "-m", "launch.sweep", f"--config={config_file}", f"--root={root}",
       "--num_runs=6"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
  assert process.returncode != 0
  assert "Run 4 of" in process.stderr and "config.latent_dim must be" in process.stderr
  assert not (root / "manifest.jsonl").exists() and not (root / "runs").exists()
  # The first four runs alone are fine; run 5 fails its method's own check.
  entries = sweep_lib.expand(str(root), str(config_file), None, 4)
  sweep_lib.check_runs(str(config_file), None, entries)
  entries = sweep_lib.expand(str(root), str(config_file), None, 6)
  with pytest.raises(ValueError, match="Run 4 of"):
    sweep_lib.check_runs(str(config_file), None, entries)
  with pytest.raises(ValueError, match=r"Run 5 of .*config\.regularizer.*'energy'"):
    sweep_lib.check_runs(str(config_file), None, entries[5:])
