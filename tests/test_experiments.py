"""The paper experiments (wae_jax/experiments) at toy size: they wire up and
write results.json and plots of the documented schema. No claim is asserted:
toy runs train a few steps and measure nothing."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from wae_jax import checkpoint
from wae_jax import config_checks
from wae_jax import data
from wae_jax import methods
from wae_jax import optim
from wae_jax import population
from wae_jax.evaluation import evaluator as evaluator_lib
from wae_jax.evaluation import metric_names
from wae_jax.experiments import common
from wae_jax.experiments import moca_fig1
from wae_jax.experiments import moca_fig2
from wae_jax.experiments import moca_fig3
from wae_jax.experiments import moca_k_tau
from wae_jax.experiments import stats
from wae_jax.experiments import swae_fig1
from wae_jax.experiments import swae_gmm2d
from wae_jax.experiments import wae_vs_vae

PAPER_IMAGE_SHAPES = {"cifar10": (32, 32, 3), "celeb_a": (64, 64, 3), "mnist": (28, 28, 1)}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_KEYS = {"experiment", "source", "claim", "size", "command", "settings", "runs", "summary",
            "checks", "check_details", "verdict", "seeds", "feature_net", "plots",
            "wall_seconds"}
OUTCOMES = {"held", "did not hold", "inconclusive"}


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
  assert results["checks"] and set(results["checks"].values()) <= OUTCOMES
  assert set(results["check_details"]) == set(results["checks"])
  for statement, outcome in results["checks"].items():
    details = results["check_details"][statement]
    # The rule, re-derived: decided only beyond two standard errors of the difference.
    lower, higher = (np.asarray(details[k]["values"]) for k in ("lower", "higher"))
    difference = higher.mean() - lower.mean()
    error = np.sqrt(sum(v.var(ddof=1) / v.size for v in (lower, higher) if v.size > 1))
    assert details["difference"] == pytest.approx(difference)
    assert details["standard_error"] == pytest.approx(error)
    decided = abs(difference) > 2 * error and difference != 0
    assert outcome == ("inconclusive" if not decided
                       else "held" if difference > 0 else "did not hold")
  outcomes = list(results["checks"].values())
  expected = ("held" if outcomes.count("held") == len(outcomes)
              else "inconclusive" if outcomes.count("inconclusive") == len(outcomes)
              else "did not hold" if "held" not in outcomes else "partly")
  assert results["verdict"] == expected
  assert results["seeds"] == [0, 1]
  for run in results["runs"].values():
    assert run["history"], "every run records at least one evaluation"
    for record in run["history"]:
      assert all(np.isfinite(v) for v in record.values())
  for plot in results["plots"]:
    with Image.open(os.path.join(out, plot)) as image:
      assert image.format == "PNG" and min(image.size) > 100


def test_verdict_rule():
  assert common.verdict({"a": "held", "b": "held"}) == "held"
  assert common.verdict({"a": "held", "b": "did not hold"}) == "partly"
  assert common.verdict({"a": "held", "b": "inconclusive"}) == "partly"
  assert common.verdict({"a": "did not hold"}) == "did not hold"
  assert common.verdict({"a": "did not hold", "b": "inconclusive"}) == "did not hold"
  assert common.verdict({"a": "inconclusive", "b": "inconclusive"}) == "inconclusive"
  with pytest.raises(ValueError):
    common.verdict({})
  with pytest.raises(ValueError, match="Unknown check outcome"):
    common.verdict({"a": True})


def test_aggregate_is_mean_and_sample_std():
  values = [0.91, 0.95, 0.97]
  record = stats.aggregate(values)
  assert record["mean"] == pytest.approx(sum(values) / 3, rel=1e-15)
  # Sample standard deviation by hand: sqrt(sum (v - mean)^2 / (n - 1)).
  mean = sum(values) / 3
  assert record["std"] == pytest.approx((sum((v - mean) ** 2 for v in values) / 2) ** 0.5,
                                        rel=1e-12)
  assert record["n"] == 3 and record["values"] == values
  assert stats.aggregate([2.0])["std"] == 0.0


def test_compare_decides_only_beyond_two_standard_errors():
  # Means 1 and 2, each sample std 1 over 3 seeds: se = sqrt(2 / 3) = 0.816, so a
  # difference of 1 is inside 2 se: inconclusive, whatever its sign.
  noisy_low, noisy_high = [0.0, 1.0, 2.0], [1.0, 2.0, 3.0]
  inconclusive = stats.compare(noisy_low, noisy_high)
  assert inconclusive["outcome"] == "inconclusive"
  assert inconclusive["standard_error"] == pytest.approx((2 / 3) ** 0.5)
  assert inconclusive["difference"] == pytest.approx(1.0)
  assert stats.compare(noisy_high, noisy_low)["outcome"] == "inconclusive"
  # The same means with a spread of 0.1 (se = 0.0816): decided, in the claimed direction
  # or against it.
  tight_low, tight_high = [0.9, 1.0, 1.1], [1.9, 2.0, 2.1]
  assert stats.compare(tight_low, tight_high)["outcome"] == "held"
  assert stats.compare(tight_high, tight_low)["outcome"] == "did not hold"
  # Against a constant level only the sample's own standard error counts.
  assert stats.compare([0.9, 1.0, 1.1], 1.3)["outcome"] == "held"
  assert stats.compare([0.5, 1.0, 1.5], 1.3)["outcome"] == "inconclusive"
  # Identical values: no difference, nothing decided.
  assert stats.compare([1.0, 1.0], [1.0, 1.0])["outcome"] == "inconclusive"


@pytest.mark.slow
def test_moca_fig1_regulariser_alone(tmp_path):
  out = str(tmp_path)
  results = moca_fig1.run(out, "toy")
  check_schema(results, out, "moca_fig1")
  assert set(results["runs"]) == {f"{arm}_seed{s}" for arm in ("moca_eq6_tau0.05", "mmd")
                                  for s in (0, 1)}
  assert results["runs"]["moca_eq6_tau0.05_seed1"]["config"]["moca.loss_form"] == "eq6"
  for arm in ("moca_eq6_tau0.05", "mmd"):
    per_seed = []
    for seed in (0, 1):
      run = results["runs"][f"{arm}_seed{seed}"]
      assert run["config"]["reconstruction_scale"] == 0.0
      assert [h["epoch"] for h in run["history"]] == [0, 1, 2]
      per_seed.append(np.mean([h["latent_swd"] for h in run["history"]][1:]))
    summary = results["summary"]["by_method"][arm]["mean_swd_over_epochs"]
    assert summary["values"] == pytest.approx(per_seed)
    assert summary["std"] == pytest.approx(np.std(per_seed, ddof=1))
  # Two independent uniform samples are closer than the untrained codes are.
  initial = results["summary"]["by_method"]["mmd"]["initial_swd"]["mean"]
  assert 0 < results["summary"]["swd_floor"] < initial


def _toy_cells(out: str) -> dict:
  """Two λ cells of one program and a cell of another (its latent dim differs)."""
  cells = {}
  for name, lambda_reg, latent_dim in (("a", 1.0, 8), ("b", 10.0, 8), ("c", 1.0, 4)):
    config = common.base_config()
    common.shrink_to_toy(config, out)
    config.evaluation.final_metrics = ()  # the wiring, not the evaluations, is tested
    config.lambda_reg, config.latent_dim = lambda_reg, latent_dim
    cells[name] = config
  return cells


def test_populations_group_runs_of_one_program():
  """Runs that differ only in PER_MEMBER fields share a population of at most
  `pack`, filled in the runs' order; a shape field (latent dim) splits them."""
  runs = common.seeded(_toy_cells("/nowhere"), (0, 1))
  assert common.populations(runs, 3) == [["a_seed0", "a_seed1", "b_seed0"], ["b_seed1"],
                                         ["c_seed0", "c_seed1"]]
  assert common.populations(runs, 8) == [["a_seed0", "a_seed1", "b_seed0", "b_seed1"],
                                         ["c_seed0", "c_seed1"]]
  assert common.populations(runs, 1) == [[name] for name in runs]
  with pytest.raises(ValueError, match="--pack is 0; use 1"):
    common.populations(runs, 0)


def test_pack_defaults_to_one_on_a_cpu_and_only_a_chosen_pack_is_in_the_command():
  """On a CPU a population is no faster than its runs in turn, so every run
  trains alone unless --pack says otherwise; results.json's command names
  --pack only when it differs from the machine's default."""
  assert jax.default_backend() == "cpu" and common.default_pack() == 1
  assert common.command("moca_fig2", "/o", "toy") == (
      "python -m wae_jax.experiments.moca_fig2 --out=/o --size=toy")
  assert common.command("moca_fig2", "/o", "toy", pack=1) == common.command("moca_fig2", "/o",
                                                                            "toy")
  assert common.command("moca_fig2", "/o", "mnist", "/d", pack=4) == (
      "python -m wae_jax.experiments.moca_fig2 --out=/o --size=mnist --data_dir=/d --pack=4")


@pytest.mark.slow
def test_train_runs_trains_populations_in_the_runs_workdirs(tmp_path, monkeypatch):
  """train_runs trains each group as one population in DIR/runs/<run>/; every
  member's parameters equal its run's trained alone (--pack=1), to the float32
  summation order of tests/test_population.py (SGD, so the bound holds), its
  final metrics are its own checkpoint's, and a second call finds them
  finished."""
  monkeypatch.setattr(optim, "make_optimizer",
                      lambda config: optax.sgd(optim.learning_rate_schedule(config)))
  calls = []
  train_members = population.train_members
  monkeypatch.setattr(population, "train_members",
                      lambda configs, workdirs: calls.append(workdirs) or train_members(
                          configs, workdirs))
  cells = _toy_cells(str(tmp_path))
  del cells["b"]  # a: two seeds in one population; c: one run alone.
  runs = common.seeded(cells, (0, 1))
  del runs["c_seed1"]
  packed, alone = str(tmp_path / "packed"), str(tmp_path / "alone")
  records = common.train_runs(runs, packed, pack=2)
  assert calls == [[common.run_dir(packed, "a_seed0"), common.run_dir(packed, "a_seed1")]]
  solo = common.train_runs(runs, alone, pack=1)
  assert len(calls) == 1
  for name in runs:
    config = run_config(packed, name)
    assert config == run_config(alone, name)
    assert (config["seed"], config["latent_dim"]) == (runs[name].seed, runs[name].latent_dim)
    assert os.path.isfile(os.path.join(common.run_dir(packed, name), "run_complete.json"))
    assert not os.path.exists(os.path.join(packed, "runs", "run_complete.json"))
    assert records[name]["config"] == solo[name]["config"]
    assert [h["step"] for h in records[name]["history"]] == [2]
    assert set(records[name]["final"]) == set(solo[name]["final"])
    want = jax.tree.leaves(checkpoint.restore_state(common.run_dir(alone, name)).params)
    member_state = checkpoint.restore_state(common.run_dir(packed, name))
    for w, h in zip(want, jax.tree.leaves(member_state.params)):
      np.testing.assert_allclose(h, w, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(w))) + 1e-7)
    # The member's final metrics are its own state's: a solo evaluator on its
    # checkpoint gives them exactly (so with the parameters' bound above, they
    # are the solo run's up to that difference).
    member_config = checkpoint.load_config(common.run_dir(packed, name))
    evaluator = evaluator_lib.Evaluator(methods.get(member_config.method),
                                        data.build(member_config), member_config)
    again = evaluator(member_state, metrics=metric_names.final_groups(
        member_config, evaluator.full_metrics))
    best = f"best_{member_config.best_metric}"
    assert {k: v for k, v in records[name]["final"].items() if k not in ("step", best)} == again
  assert common.train_runs(runs, packed, pack=2) == records


@pytest.mark.slow
def test_pack_below_one_is_one_line(tmp_path):
  """--pack=0: one line on stderr, exit status 2, nothing written."""
  out = tmp_path / "out"
  completed = subprocess.run(
      [sys.executable, "-m", "wae_jax.experiments.moca_fig2", f"--out={out}", "--size=toy",
       "--pack=0"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 2, completed.stderr[-2000:]
  assert completed.stderr == "error: --pack is 0; use 1 (every run trained alone) or more.\n"
  assert not os.path.exists(out)


@pytest.mark.slow
def test_moca_fig2_runs_and_resumes(tmp_path):
  out = str(tmp_path)
  results = moca_fig2.run(out, "toy")
  check_schema(results, out, "moca_fig2")
  assert set(results["runs"]) == {f"{c}_seed{s}" for c in ("moca_lambda10", "wae_mmd_lambda10")
                                  for s in (0, 1)}
  for name, run in results["runs"].items():
    config = run_config(out, name)
    assert config["method"] == name.split("_lambda")[0] and config["lambda_reg"] == 10.0
  for cell, numbers in results["summary"]["by_cell"].items():
    finals = [results["runs"][f"{cell}_seed{s}"]["history"][-1]["swd_image_avg"]
              for s in (0, 1)]
    assert numbers["final"]["values"] == pytest.approx(finals)
  # The same command again finds the runs finished and rebuilds the same results.
  again = moca_fig2.run(out, "toy")
  assert {k: v for k, v in again.items() if k != "wall_seconds"} == {
      k: v for k, v in results.items() if k != "wall_seconds"}


def test_moca_lambdas_scale_with_pixel_count():
  """moca.txt appendix D.2: λ scales with the input's pixel count (CIFAR-10: 3072)."""
  assert moca_fig2.lambdas("mnist") == pytest.approx([0.255, 2.552, 25.521, 255.208],
                                                     abs=1e-3)
  # Appendix D's λ = 3000 on CelebA 64x64x3 (12288 pixels), at MNIST's 784.
  assert moca_k_tau.scaled(3000.0, "mnist") == pytest.approx(3000 * 784 / 12288, abs=0.01)
  assert moca_fig3.lambdas("mnist") == pytest.approx([0, 500 * 784 / 3072, 1000 * 784 / 3072,
                                                      3000 * 784 / 3072], abs=1e-3)


@pytest.mark.slow
def test_moca_fig3_spectra(tmp_path):
  out = str(tmp_path)
  results = moca_fig3.run(out, "toy")
  check_schema(results, out, "moca_fig3")
  by_cell = results["summary"]["by_cell"]
  for cell, numbers in by_cell.items():
    ratios = []
    for seed in (0, 1):
      values = np.asarray(results["runs"][f"{cell}_seed{seed}"]["singular_values"])
      assert len(values) == results["settings"]["latent_dim"]
      assert np.all(np.diff(values) <= 0) and values[-1] >= 0
      # Unit codes: the squared singular values (the covariance's eigenvalues) sum to
      # 1 - |mean code|^2 <= 1.
      assert 0 < np.sum(values ** 2) <= 1 + 1e-9
      ratios.append(values[-1] / values[0])
    assert numbers["sv_min_over_max"]["values"] == pytest.approx(ratios)
  assert results["summary"]["distance"] == "fd_digits_classifier"
  assert "fd_digits_classifier" in results["feature_net"]


@pytest.mark.slow
def test_moca_k_tau_grid(tmp_path):
  out = str(tmp_path)
  results = moca_k_tau.run(out, "toy")
  check_schema(results, out, "moca_k_tau")
  cells = {(r["K"], r["tau"], r["lambda"]) for r in results["summary"]["by_cell"].values()}
  assert cells == {(8, 1.0, 15.62), (16, 1.0, 15.62), (16, 0.05, 5.21), (16, 0.05, 15.62),
                   (16, 1.0, 5.21)}
  for name in results["runs"]:
    config = run_config(out, name)
    assert config["method"] == "moca" and config["moca"]["momentum_base"] == 0.999
  # The best λ per τ and seed, re-derived from the cells' per-seed distances.
  by_cell = results["summary"]["by_cell"]
  for tau in (0.05, 1.0):
    sweep = sorted((r["lambda"], r) for r in by_cell.values() if r["K"] == 16 and r["tau"] == tau)
    table = np.asarray([r["fd_digits_classifier"]["values"] for _, r in sweep])
    best = results["summary"]["best_over_lambda"][f"tau{tau:g}"]
    assert best["distance"]["values"] == pytest.approx(table.min(0))
    assert best["best_lambda_per_seed"] == [sweep[i][0] for i in table.argmin(0)]


@pytest.mark.slow
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
  assert set(results["runs"]) == {f"{m}_seed{s}" for m in ("wae_mmd", "wae_gan", "vae")
                                  for s in (0, 1)}
  assert set(results["plots"]) == {"samples.png", "reconstructions.png", "interpolations.png",
                                   "metrics.png"}
  assert results["runs"]["vae_seed1"]["config"]["model.encoder"] == "gaussian"
  assert run_config(out, "wae_gan_seed0")["adversary_log_prior"] is False
  # Seed aggregation, re-derived from each run's own eval.jsonl.
  for method, numbers in results["summary"]["by_method"].items():
    for metric, record in numbers.items():
      finals = []
      for seed in (0, 1):
        assert run_config(out, f"{method}_seed{seed}")["seed"] == seed
        with open(os.path.join(out, "runs", f"{method}_seed{seed}", "eval.jsonl"),
                  encoding="utf-8") as f:
          finals.append(json.loads(f.read().splitlines()[-1])["metrics"][metric])
      assert record["values"] == pytest.approx(finals)
      assert record["mean"] == pytest.approx(np.mean(finals))
      assert record["std"] == pytest.approx(np.std(finals, ddof=1))
  # The classifier FD came from the committed digits net, named with its fingerprint.
  with np.load(os.path.join(REPO_ROOT, "wae_jax", "evaluation", "feature_nets",
                            "digits_8x8x1.npz")) as archive:
    sha256 = archive["__sha256__"].item().decode()
  assert sha256 in results["feature_net"]["fd_digits_classifier"]
  for run in results["runs"].values():
    assert sha256 in run["feature_net"]["fd_digits_classifier"]


@pytest.mark.slow
def test_mnist_size_without_idx_files_names_the_fetch_script(tmp_path):
  """--size=mnist with a folder that lacks the idx files: one line, exit 2, nothing run."""
  out = tmp_path / "out"
  completed = subprocess.run(
      [sys.executable, "-m", "wae_jax.experiments.wae_vs_vae", f"--out={out}", "--size=mnist",
       f"--data_dir={tmp_path / 'no_mnist'}"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert completed.returncode == 2, completed.stderr[-2000:]
  assert completed.stderr.startswith("error: --size=mnist reads the four MNIST idx files")
  assert completed.stderr.count("\n") == 1
  assert "bash wae_jax/experiments/get_mnist.sh" in completed.stderr
  assert os.path.isfile(os.path.join(REPO_ROOT, "wae_jax", "experiments", "get_mnist.sh"))
  assert not os.path.exists(out / "runs")


@pytest.mark.slow
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


@pytest.mark.slow
def test_swae_fig1_figure_and_probes(tmp_path):
  out = str(tmp_path)
  results = swae_fig1.run(out, "toy")
  check_schema(results, out, "swae_fig1")
  assert set(results["runs"]) == {f"{m}_seed{s}" for m in ("swae", "wae_mmd") for s in (0, 1)}
  for method, numbers in results["summary"]["by_method"].items():
    for seed in (0, 1):
      assert run_config(out, f"{method}_seed{seed}")["method"] == method
    for probe in swae_fig1.PROBES:
      assert all(0 <= v <= 1 for v in numbers[probe]["values"])
  for seed, figure in results["summary"]["gmm2d_per_seed"].items():
    assert 0 <= figure["fraction_near_a_mode"] <= 1
    assert figure["min_share"] == min(figure["share_per_mode"])
    assert figure["generated_spread_over_data"] == pytest.approx(
        figure["generated_spread"] / figure["data_spread"])
  assert len(results["checks"]) == 6


def test_gmm2d_coverage_summary_by_hand():
  """Points on their centres have centre ratio 0; the data themselves have spread ratio 1."""
  means = np.asarray([[0.0, 0.0], [4.0, 4.0]])
  points = np.asarray([[0.3, 0.4], [4.0, 3.0]])  # distances 0.5 and 1.0 to their means
  labels = np.asarray([0, 1])
  on_centres = swae_gmm2d.coverage_summary(points, points, points, labels, means)
  assert on_centres["data_spread"] == pytest.approx(0.75)
  assert on_centres["generated_spread_over_data"] == pytest.approx(1.0)
  assert on_centres["distance_to_own_center_over_data"] == 0.0
  spread = swae_gmm2d.coverage_summary(points, means[labels], points, labels, means)
  assert spread["distance_to_own_center"] == pytest.approx(0.75)


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


def test_mnist_size_configs_are_valid(tmp_path):
  """The --size=mnist cells pass the trainer's config checks at 28x28 (no data read)."""
  for experiment in (moca_fig2, moca_fig3, moca_k_tau, wae_vs_vae, swae_fig1):
    configs = experiment.make_configs("mnist", str(tmp_path), "/idx")
    for config in configs.values():
      assert (config.dataset, config.image_size, config.data_dir) == ("mnist_idx", 28, "/idx")
      assert config.model.network == "mlp"
      config_checks.check_values(config, num_devices=1)
    config_checks.check_networks(next(iter(configs.values())), (28, 28, 1))
  assert wae_vs_vae.make_configs("mnist", str(tmp_path), "/idx")["wae_gan"].adversary_log_prior is False
