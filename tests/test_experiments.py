"""The paper experiments (wae_jax/experiments) at toy size: they wire up and
write results.json and plots of the documented schema. No claim is asserted:
toy runs train a few steps and measure nothing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from wae_jax import config_checks
from wae_jax.experiments import common
from wae_jax.experiments import moca_fig1
from wae_jax.experiments import moca_fig2
from wae_jax.experiments import moca_fig3
from wae_jax.experiments import moca_k_tau
from wae_jax.experiments import swae_fig1
from wae_jax.experiments import wae_vs_vae

PAPER_IMAGE_SHAPES = {"cifar10": (32, 32, 3), "celeb_a": (64, 64, 3), "mnist": (28, 28, 1)}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_KEYS = {"experiment", "source", "claim", "size", "command", "settings", "runs", "summary",
            "checks", "verdict", "plots", "wall_seconds"}


def run_config(out: str, name: str) -> dict:
  """config.json of run `name`, as the trainer saved it."""
  with open(os.path.join(out, "runs", name, "config.json"), encoding="utf-8") as f:
    return json.load(f)


def check_schema(results: dict, out: str, name: str) -> None:
  """The record every experiment writes, read back from disk."""
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    on_disk = json.load(f)
  assert on_disk == results
  assert set(results) == TOP_KEYS
  assert results["experiment"] == name and results["size"] == "toy"
  assert results["command"] == f"python -m wae_jax.experiments.{name} --out={out} --size=toy"
  assert results["checks"] and all(isinstance(v, bool) for v in results["checks"].values())
  passed = sum(results["checks"].values())
  expected = ("held" if passed == len(results["checks"])
              else "did not hold" if passed == 0 else "partly")
  assert results["verdict"] == expected
  for run in results["runs"].values():
    assert run["history"], "every run records at least one evaluation"
    for record in run["history"]:
      assert all(np.isfinite(v) for v in record.values())
  for plot in results["plots"]:
    with Image.open(os.path.join(out, plot)) as image:
      assert image.format == "PNG" and min(image.size) > 100


def test_verdict_rule():
  assert common.verdict({"a": True, "b": True}) == "held"
  assert common.verdict({"a": True, "b": False}) == "partly"
  assert common.verdict({"a": False}) == "did not hold"
  with pytest.raises(ValueError):
    common.verdict({})


def test_moca_fig1_regulariser_alone(tmp_path):
  out = str(tmp_path)
  results = moca_fig1.run(out, "toy")
  check_schema(results, out, "moca_fig1")
  assert set(results["runs"]) == {"moca_tau0.05_seed0", "mmd_seed0"}
  for name, run in results["runs"].items():
    assert run["config"]["reconstruction_scale"] == 0.0
    assert [h["epoch"] for h in run["history"]] == [0, 1, 2]
    swd = [h["latent_swd"] for h in run["history"]]
    summary = results["summary"]["by_method"][name.rsplit("_", 1)[0]]
    assert summary["mean_swd_over_epochs"] == pytest.approx(np.mean(swd[1:]))
    assert summary["final_swd"] == pytest.approx(swd[-1])
  # Two independent uniform samples are closer than the untrained codes are.
  assert 0 < results["summary"]["swd_floor"] < results["summary"]["by_method"]["mmd"]["initial_swd"]


def test_moca_fig2_runs_and_resumes(tmp_path):
  out = str(tmp_path)
  results = moca_fig2.run(out, "toy")
  check_schema(results, out, "moca_fig2")
  assert set(results["runs"]) == {"moca_lambda10", "wae_mmd_lambda10"}
  for name, run in results["runs"].items():
    config = run_config(out, name)
    assert config["method"] == name.split("_lambda")[0] and config["lambda_reg"] == 10.0
    swd = [h["swd_image_avg"] for h in run["history"]]
    assert results["summary"]["by_run"][name]["final"] == swd[-1]
  # The same command again finds the runs finished and rebuilds the same results.
  again = moca_fig2.run(out, "toy")
  assert {k: v for k, v in again.items() if k != "wall_seconds"} == {
      k: v for k, v in results.items() if k != "wall_seconds"}


def test_moca_fig3_spectra(tmp_path):
  out = str(tmp_path)
  results = moca_fig3.run(out, "toy")
  check_schema(results, out, "moca_fig3")
  by_run = results["summary"]["by_run"]
  for name, run in results["runs"].items():
    values = np.asarray(run["singular_values"])
    assert len(values) == results["settings"]["latent_dim"]
    assert np.all(np.diff(values) <= 0) and values[-1] >= 0
    assert by_run[name]["sv_min_over_max"] == pytest.approx(values[-1] / values[0])
    # Unit codes: the squared singular values (the covariance's eigenvalues) sum to
    # 1 - |mean code|^2 <= 1.
    assert 0 < np.sum(values ** 2) <= 1 + 1e-9
  assert results["summary"]["distance"] == "fd_digits_classifier"


def test_moca_k_tau_grid(tmp_path):
  out = str(tmp_path)
  results = moca_k_tau.run(out, "toy")
  check_schema(results, out, "moca_k_tau")
  pairs = {(r["K"], r["tau"]) for r in results["summary"]["by_run"].values()}
  assert pairs == {(8, 0.05), (16, 0.05), (16, 1.0)}
  for name in results["runs"]:
    assert run_config(out, name)["method"] == "moca"


def test_wae_vs_vae_command_line(tmp_path):
  """Through the command a user types, as a subprocess."""
  out = str(tmp_path / "out")
  completed = subprocess.run(
      [sys.executable, "-m", "wae_jax.experiments.wae_vs_vae", f"--out={out}", "--size=toy"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
  assert completed.returncode == 0, completed.stderr[-3000:]
  assert "wae_vs_vae (toy):" in completed.stdout
  with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
    results = json.load(f)
  check_schema(results, out, "wae_vs_vae")
  assert set(results["runs"]) == {"wae_mmd", "wae_gan", "vae"}
  assert set(results["plots"]) == {"samples.png", "reconstructions.png", "metrics.png"}
  assert results["runs"]["vae"]["config"]["model.encoder"] == "gaussian"


def test_paper_size_without_data_fails_at_once(tmp_path):
  """One line on stderr, exit status 2, before any run starts."""
  completed = subprocess.run(
      [sys.executable, "-m", "wae_jax.experiments.moca_fig2", f"--out={tmp_path}",
       "--size=paper", f"--data_dir={tmp_path / 'no_data'}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 2
  assert completed.stderr.startswith("error: Dataset 'cifar10'")
  assert completed.stderr.count("\n") == 1
  assert "tfds build cifar10" in completed.stderr
  assert not os.path.exists(tmp_path / "runs")


def test_swae_fig1_figure_and_probes(tmp_path):
  out = str(tmp_path)
  results = swae_fig1.run(out, "toy")
  check_schema(results, out, "swae_fig1")
  assert set(results["runs"]) == {"swae", "wae_mmd"}
  for name, numbers in results["summary"]["by_run"].items():
    assert run_config(out, name)["method"] == name
    for probe in swae_fig1.PROBES:
      assert 0 <= numbers[probe] <= 1
  assert 0 <= results["summary"]["gmm2d"]["fraction_near_a_mode"] <= 1
  assert len(results["checks"]) == 2


def test_paper_size_configs_are_valid(tmp_path):
  """The --size=paper runs pass the trainer's config checks and their networks take
  the paper's image size (traced once per network and size with jax.eval_shape; no data)."""
  traced = set()
  for experiment in (moca_fig2, moca_fig3, moca_k_tau, wae_vs_vae, swae_fig1):
    for config in experiment.make_configs("paper", str(tmp_path), "").values():
      config_checks.check_values(config, num_devices=1)
      image_shape = PAPER_IMAGE_SHAPES[config.dataset]
      if (config.model.network, image_shape) not in traced:
        config_checks.check_networks(config, image_shape)
        traced.add((config.model.network, image_shape))
  # WAE's CelebA nets; SWAE's gated MNIST net; MoCA's A2 on CIFAR-10 (Figs. 2-3)
  # and on CelebA (appendix D's ablations).
  assert traced == {("dcgan", (64, 64, 3)), ("gated", (28, 28, 1)),
                    ("resnet18", (32, 32, 3)), ("resnet18", (64, 64, 3))}
