"""The Symmetric WAE method: its loss against a numpy re-derivation on a real
state, gradients reaching the learnable prior, sampling from the mixture,
config errors, the start from training images."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from wae_jax import checkpoint
from wae_jax import data
from wae_jax import losses
from wae_jax import metrics_io
from wae_jax import train
from wae_jax.methods.shared import autoencoder
from wae_jax.methods import swae

import methods_testlib as lib
import test_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = {"swae.num_pseudo_inputs": 40}  # test_methods.py's config: one compile


def _setup():
  return lib.shared_setup("swae", **OVERRIDES)


def _numpy_terms(state, images, objective="xzrec", beta=0.5, lam=1.0):
  """The step's loss terms, re-derived: numpy pairing and squared errors on
  the networks' outputs (the tiny MLPs have no batch norm, so train mode
  equals eval mode)."""
  config = state.config
  inference = lib.inference(swae.METHOD)
  images = np.asarray(images, np.float32)
  codes = np.asarray(inference.encode(state, images), np.float64)
  reconstructions = np.asarray(inference.reconstruct(state, images), np.float64)
  pseudo = np.clip(np.asarray(state.params["prior"]["pseudo_inputs"], np.float64), 0, 1)
  flat_x, flat_u = images.reshape(len(images), -1), pseudo.reshape(len(pseudo), -1)
  nearest = np.array([np.argmin(((flat_u - x) ** 2).sum(1)) for x in flat_x])
  module = swae.prior_encoder(config, images.shape[1:])
  mean, logvar = lib.jit(module.apply)({"params": state.params["prior"]["encoder"]},
                                       jnp.asarray(pseudo[nearest], jnp.float32))
  eps = np.asarray(jax.random.normal(autoencoder.step_key(state), mean.shape), np.float64)
  z_d = np.asarray(mean, np.float64) + np.exp(0.5 * np.asarray(logvar, np.float64)) * eps
  decoded_prior = np.asarray(inference.decode(state, z_d.astype(np.float32)), np.float64)
  per_example = lambda a, b: np.mean(np.sum((a - b).reshape(len(a), -1) ** 2, axis=1))
  x_loss = per_example(decoded_prior, images)
  z_loss = per_example(codes, z_d)
  recon = per_example(reconstructions, images)
  loss = {"xzrec": beta * x_loss + (1 - beta) * recon + lam * z_loss,
          "xz": beta * x_loss + lam * z_loss, "zrec": beta * recon + lam * z_loss}[objective]
  assert np.all(np.asarray(logvar) >= -6) and np.all(np.asarray(logvar) <= 2)
  return {"x_loss": x_loss, "z_loss": z_loss, "reconstruction": recon, "loss": loss}


def test_step_metrics_equal_numpy_rederivation():
  config, method, state, step = _setup()
  batch = lib.digits_batch(config.batch_size, offset=64)
  _, metrics = step(state, batch)
  expected = _numpy_terms(state, batch["image"])
  for name, value in expected.items():
    assert float(metrics[name]) == pytest.approx(value, rel=2e-4), name
  assert float(metrics["regularizer"]) == pytest.approx(expected["z_loss"], rel=2e-4)


def _with(state, **overrides):
  """`state` with config fields (a.b keys) changed; the arrays stay."""
  config = state.config.as_configdict()
  for dotted, value in overrides.items():
    *parents, leaf = dotted.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = value
  return state.replace(config=ml_collections.FrozenConfigDict(config))


@pytest.mark.parametrize("objective", ["xz", "zrec"])
def test_other_objectives_equal_numpy_rederivation(objective):
  _, _, state, _ = _setup()
  state = _with(state, **{"swae.objective": objective, "swae.beta": 0.3,
                          "swae.z_loss_weight": 2.0})
  images = jnp.asarray(lib.digits_batch(32)["image"])
  # The state is closed over: jit's cache would not tell these configs apart.
  loss, _ = lib.jit(lambda p: swae.loss_fn(p, state, images, autoencoder.step_key(state)))(
      state.params)
  expected = _numpy_terms(state, images, objective, 0.3, 2.0)
  assert float(loss) == pytest.approx(expected["loss"], rel=2e-4)


def test_gradients_reach_pseudo_inputs_and_prior_encoder():
  config, method, state, step = _setup()
  batch = lib.digits_batch(config.batch_size, offset=64)
  images = jnp.asarray(batch["image"])
  grads = lib.jit(jax.grad(lambda p: swae.loss_fn(p, state, images,
                                                   autoencoder.step_key(state))[0]))(state.params)
  chosen = np.asarray(lib.jit(swae.pair)(state, state.params, images, None))
  pseudo_grad = np.abs(np.asarray(grads["prior"]["pseudo_inputs"])).reshape(40, -1).sum(1)
  # Exactly the paired pseudo-inputs get a gradient (through the clip's inside).
  assert set(np.flatnonzero(pseudo_grad)) == set(chosen)
  for leaf in jax.tree.leaves(grads["prior"]["encoder"]):
    assert float(jnp.max(jnp.abs(leaf))) > 0
  new_state, _ = step(state, batch)
  old_u = np.asarray(state.params["prior"]["pseudo_inputs"])
  new_u = np.asarray(new_state.params["prior"]["pseudo_inputs"])
  moved = np.flatnonzero(np.abs(new_u - old_u).reshape(40, -1).sum(1))
  assert set(moved) == set(chosen)
  for old, new in zip(jax.tree.leaves(state.params["prior"]["encoder"]),
                      jax.tree.leaves(new_state.params["prior"]["encoder"])):
    assert not np.array_equal(old, new)


def test_sample_draws_from_the_mixture():
  config, method, state, step = _setup()
  n = 40_000
  z, components = lib.jit(swae.sample_prior_with_components, static_argnums=2)(
      state, jax.random.PRNGKey(3), n)
  z, components = np.asarray(z, np.float64), np.asarray(components)
  counts = np.bincount(components, minlength=40)
  # Uniform over the 40 components: the counts' chi-square has 39 degrees of freedom.
  chi_square = np.sum((counts - n / 40) ** 2 / (n / 40))
  assert chi_square < 80
  means, logvars = (np.asarray(a, np.float64) for a in lib.jit(swae.prior_components)(state))
  for k in range(5):
    own = z[components == k]
    std = np.exp(0.5 * logvars[k])
    np.testing.assert_allclose(own.mean(0), means[k], atol=5 * std.max() / np.sqrt(len(own)))
    np.testing.assert_allclose(own.std(0), std, rtol=0.12)
  samples = lib.inference(swae.METHOD).sample(state, jax.random.PRNGKey(3), 7)
  np.testing.assert_allclose(
      samples, autoencoder.decode(state, swae.sample_prior(state, jax.random.PRNGKey(3), 7)),
      atol=1e-6)


@pytest.mark.parametrize("override,match", [
    ({"model.encoder": "gaussian"}, "deterministic encoder"),
    ({"swae.objective": "xy"}, "swae.objective"),
    ({"swae.pairing": "both"}, "swae.pairing"),
    ({"swae.num_pseudo_inputs": 0}, "num_pseudo_inputs"),
    ({"swae.prior_logvar_clip": (2.0, -6.0)}, "low < high"),
    ({"reconstruction_scale": 0.5}, "reconstruction_scale"),
])
def test_config_errors(override, match):
  config = lib.tiny_config("swae", **override)
  with pytest.raises(ValueError, match=match):
    swae.init(config, jax.random.PRNGKey(0), lib.digits_batch(4))


def test_latent_pairing_and_cosine_metric():
  _, _, state, _ = _setup()
  state = _with(state, **{"swae.pairing": "latent", "swae.pairing_metric": "cosine"})
  images = lib.digits_batch(16)["image"]
  encode = lib.inference(swae.METHOD).encode
  codes = encode(state, images)
  pseudo_codes = encode(state, np.clip(state.params["prior"]["pseudo_inputs"], 0, 1))
  expected = losses.nearest_pseudo_input(codes, pseudo_codes, "cosine")
  np.testing.assert_array_equal(
      lib.jit(lambda p: swae.pair(state, p, images, codes))(state.params), expected)


def test_init_from_data_needs_k_training_images():
  _, _, state, _ = _setup()
  images = lib.digits()[:50]
  started = swae.pseudo_inputs_from_images(state, images)
  noise = np.asarray(started.params["prior"]["pseudo_inputs"]) - images[:40]
  assert abs(noise.std() - 0.01) < 0.001 and abs(noise.mean()) < 0.001
  with pytest.raises(ValueError, match="training split has 30"):
    swae.pseudo_inputs_from_images(state, images[:30])


# ----------------------------------------------------------------------------
# The trainer, on the 8 fake devices of conftest.py.

RUN_STEPS = 6


def run_config():
  """6 SWAE steps on the digits: checkpoints every 2, one evaluation at the end."""
  config = lib.tiny_config("swae", 16, **OVERRIDES)
  config.model.hidden_sizes = (16,)
  config.num_train_steps = RUN_STEPS
  config.log_every_steps = 2
  config.checkpoint_every_steps = 2
  config.eval_every_steps = RUN_STEPS
  config.keep_checkpoints = 2
  config.num_eval_images = 8
  config.evaluation.probe_train_examples = 300
  return config


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("swae_run"))
  return workdir, train.train_and_evaluate(run_config(), workdir)


@pytest.mark.slow
def test_trainer_run_starts_from_training_images_and_probes(finished_run):
  workdir, _ = finished_run
  state = checkpoint.restore_state(workdir)
  config = run_config()
  source = data.build(config)
  start = swae.init_from_data(state, source)
  start = np.asarray(start.params["prior"]["pseudo_inputs"])
  trained = np.asarray(state.params["prior"]["pseudo_inputs"])
  # Pseudo-inputs never paired in 6 steps got no gradient: exactly their start.
  untouched = [k for k in range(40) if np.array_equal(start[k], trained[k])]
  assert 0 < len(untouched) < 40
  last = metrics_io.read_jsonl(os.path.join(workdir, "eval.jsonl"))[-1]["metrics"]
  assert 0.1 < last["latent_knn_accuracy"] <= 1 and 0.1 < last["latent_linear_accuracy"] <= 1
  records = metrics_io.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert {"x_loss", "z_loss", "reconstruction", "loss"} <= set(records[-1])


@pytest.mark.slow
def test_killed_and_resumed_run_is_bitwise_equal(finished_run, tmp_path):
  assert jax.device_count() == 8
  workdir = str(tmp_path / "killed")
  test_train.kill_after_first_checkpoint(workdir, "test_swae", "run_config")
  assert max(checkpoint.all_steps(workdir)) < RUN_STEPS
  assert train.train_and_evaluate(run_config(), workdir) == finished_run[1]
  expected = checkpoint.state_to_checkpoint(checkpoint.restore_state(finished_run[0]))
  got = checkpoint.state_to_checkpoint(checkpoint.restore_state(workdir))
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  assert "pseudo_inputs" in expected["params"]["prior"]  # the prior is checkpointed
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow
def test_gmm2d_figure_cli(tmp_path):
  out = str(tmp_path / "figure" / "gmm2d.png")
  result = subprocess.run(
      [sys.executable, "-m", "wae_jax.experiments.swae_gmm2d", f"--out={out}",
       "--config.num_train_steps=20", "--config.synthetic_num_points=1000",
       "--config.batch_size=32"],
      cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(out) as image:
    assert image.format == "PNG" and image.size == (1500, 500)
  summary = json.loads(open(out.replace(".png", ".json")).read())
  assert summary["steps"] == 20 and 0 <= summary["fraction_near_a_mode"] <= 1
  # P(|x - mean| <= 2 std) = 1 - exp(-2) for a 2-D isotropic Gaussian; other
  # components only add to it. 2000 points: binomial std under 0.008.
  assert summary["data_fraction_near_a_mode"] >= 1 - np.exp(-2) - 5 * 0.008
  assert np.isfinite(summary["loss"]) and len(summary["share_per_mode"]) == 5
  assert np.isfinite(summary["test_codes_log_prior"])


def test_mode_summary_counts_points_near_components():
  from wae_jax.experiments import swae_gmm2d  # pylint: disable=g-import-not-at-top
  points = np.array([[0.1, 0.0], [1.0, 1.2], [1.1, 0.9], [2.5, 2.5], [9.0, 9.0]])
  summary = swae_gmm2d.mode_summary(points, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)],
                                    radius=0.6)
  assert summary["fraction_near_a_mode"] == pytest.approx(3 / 5)
  assert summary["share_per_mode"] == pytest.approx([1 / 3, 2 / 3, 0, 0, 0])


def test_init_leaves_the_callers_config_alone():
  config = lib.tiny_config("swae", **OVERRIDES)
  before = config.to_dict()
  state = jax.eval_shape(lambda: swae.init(config, jax.random.PRNGKey(0),
                                          lib.digits_batch(4)))
  assert config.to_dict() == before
  frozen = state.config.to_dict()  # the state's own (frozen) config too
  jax.eval_shape(swae.prior_components, state)
  assert state.config.to_dict() == frozen and state.config.model.encoder == "deterministic"
