"""What every paper experiment shares: its command line, training runs through
the library's trainer, the results.json it writes and its matplotlib plots.

    python -m wae_jax.experiments.<name> --out=DIR [--size=small|paper|toy] [--data_dir=D]

Run from the repository root: the experiments start from the files in
configs/ (configs/default.py for the small runs, the paper configs for
--size=paper). Each training run lives in DIR/runs/<run>/ and is trained by
`wae_jax.train.train_and_evaluate`, so running the command again skips the
finished runs and resumes the others; DIR/results.json and DIR/*.png are then
rebuilt from the runs' logs.

Sizes: `small` (the default: scikit-learn's digits or synthetic data, a few
minutes on 2 CPU cores), `paper` (the paper's dataset and networks, for a GPU
or TPU; the tfds data must be prepared), `toy` (a few steps and tiny widths:
proves the wiring, measures nothing).

results.json (every experiment):
  experiment, source (paper and figure), claim, size, command,
  settings: the choices shared by all runs,
  runs: {run name: {"config": the fields the run overrides, "history":
    [{"step": s, metric: value, ...}] (the evaluations), "final": {metric:
    value}} plus what the experiment measures itself},
  summary: the numbers the checks read,
  checks: {statement: true/false}, the claim split into testable parts,
  verdict: "held" (every check true), "partly" or "did not hold" (none),
  plots: PNG file names in DIR, wall_seconds.
"""

import importlib
import os
import time
from typing import Callable, Dict, Iterable, Optional, Sequence

import matplotlib
import ml_collections
import numpy as np
from absl import flags
from flax import traverse_util
from PIL import Image

from wae_jax import checkpoint
from wae_jax import cli
from wae_jax import data
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import train as train_lib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZES = ("small", "paper", "toy")
VERDICTS = ("held", "partly", "did not hold")
RESULTS_FILE = "results.json"
RUNS_DIR = "runs"

FLAGS = flags.FLAGS


# ----------------------------------------------------------------------------
# Configs.


def config_module(name: str):
  """configs/<name>.py, read from the repository root."""
  try:
    return importlib.import_module(f"configs.{name}")
  except ModuleNotFoundError as e:
    raise ValueError(
        "The experiments read configs/ from the repository root; run "
        "`python -m wae_jax.experiments.<name>` from there.") from e


def base_config() -> ml_collections.ConfigDict:
  """configs/default.py's base config (every field, unlocked)."""
  return config_module("default").base_config()


def file_config(name: str, data_dir: str = "") -> ml_collections.ConfigDict:
  """configs/<name>.py's get_config(), unlocked, reading tfds data from data_dir."""
  config = ml_collections.ConfigDict(config_module(name).get_config().to_dict())
  config.data_dir = data_dir
  return config


def set_method(config: ml_collections.ConfigDict, method: str) -> None:
  """config.method plus the values the method requires (e.g. the VAE's Gaussian encoder)."""
  config.method = method
  methods.apply_required(config)


def shrink_to_toy(config: ml_collections.ConfigDict, out: str) -> None:
  """A few steps with tiny widths and evaluations (in place)."""
  config.num_train_steps = 2
  config.batch_size = 8
  config.model.hidden_sizes = (16,)
  config.model.width_multiplier = 1 / 16
  config.adversary.hidden_sizes = (16,)
  config.moca.queue_size = 2 * config.batch_size
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.num_eval_images = 8
  config.evaluation.num_samples = 16
  config.evaluation.batch_size = 64  # fewer evaluation calls
  config.evaluation.probe_train_examples = 64
  config.evaluation.swd_images = 16
  config.evaluation.feature_net_steps = 5
  config.evaluation.cache_dir = os.path.join(out, "cache")


def steps_per_epoch(config: ml_collections.ConfigDict) -> int:
  """Global batches per epoch of config's data.

  Opens the data without downloading, so a tfds dataset that is not prepared
  fails here, before any training, with how to prepare it.
  """
  return int(data.build(config, download=False).steps_per_epoch)


def check_data(configs: Iterable[ml_collections.ConfigDict]) -> None:
  """Opens every dataset the runs read, so that missing data fails before any training."""
  opened = set()
  for config in configs:
    if (config.dataset, config.data_dir) not in opened:
      steps_per_epoch(config)
      opened.add((config.dataset, config.data_dir))


def evaluate_every_epochs(config: ml_collections.ConfigDict, epochs: int) -> None:
  """Evaluates (and checkpoints) every `epochs` epochs of config's data."""
  config.eval_every_steps = epochs * steps_per_epoch(config)
  config.checkpoint_every_steps = config.eval_every_steps


# ----------------------------------------------------------------------------
# Runs.


def run_dir(out: str, name: str) -> str:
  return os.path.join(out, RUNS_DIR, name)


def train(config: ml_collections.ConfigDict, out: str, name: str) -> dict:
  """Trains (or resumes, or skips when finished) run `name`; returns its record.

  Returns:
    {"history": [{"step", metric: value}, ...] from eval.jsonl, "final": the
    last evaluation's metrics}.
  """
  workdir = run_dir(out, name)
  print(f"[{name}] training in {workdir}", flush=True)
  train_lib.train_and_evaluate(config, workdir)
  evaluations = metrics_io.read_jsonl(os.path.join(workdir, metrics_io.EVAL_FILE))
  history = [dict(step=int(e["step"]), **e["metrics"]) for e in evaluations]
  return {"history": history, "final": dict(history[-1]) if history else {}}


def train_runs(configs: Dict[str, ml_collections.ConfigDict], out: str) -> dict:
  """Checks every run's data, then trains each run; {name: `train`'s record + "config"}.

  "config" is what the run changes in configs/default.py's base config.
  """
  check_data(configs.values())
  base = base_config()
  runs = {}
  for name, config in configs.items():
    runs[name] = train(config, out, name)
    runs[name]["config"] = overrides(config, base)
  return runs


def final_state(out: str, name: str):
  """The TrainState of run `name`'s last checkpoint."""
  return checkpoint.restore_state(run_dir(out, name))


def train_images(config: ml_collections.ConfigDict, limit: int):
  """The first `limit` training images of epoch 0 (distinct images).

  Returns:
    (images (n, H, W, C) float32, labels (n,) or None), n = min(limit, the
    whole batches of one epoch).
  """
  source = data.build(config, download=False)
  batches = source.train_batches(0)
  chosen = [next(batches) for _ in range(min(source.steps_per_epoch,
                                             -(-limit // config.batch_size)))]
  images = np.concatenate([b["image"] for b in chosen])[:limit]
  labels = None if "label" not in chosen[0] else np.concatenate(
      [b["label"] for b in chosen])[:limit]
  return images, labels


def encode(state, config: ml_collections.ConfigDict, images):
  """method.encode over `images` in batches of config.batch_size -> (n, d) float64."""
  encode_batch = methods.jitted(methods.get(config.method).encode)
  size = int(config.batch_size)
  return np.concatenate([np.asarray(encode_batch(state, images[i:i + size]), np.float64)
                         for i in range(0, len(images), size)])


def overrides(config: ml_collections.ConfigDict, base: ml_collections.ConfigDict) -> dict:
  """The flattened fields where `config` differs from `base` (what a run changes)."""
  ours, theirs = (traverse_util.flatten_dict(checkpoint.config_to_dict(c), sep=".")
                  for c in (config, base))
  return {k: v for k, v in ours.items() if theirs.get(k, object()) != v}


# ----------------------------------------------------------------------------
# Verdicts and results.


def sample_distance(final: dict) -> str:
  """The name of a run's best sample distance: FID, else the classifier FD, else image SWD."""
  if "fid_inception" in final:
    return "fid_inception"
  classifier = [n for n in final if n.startswith("fd_") and n.endswith("_classifier")]
  return classifier[0] if classifier else "swd_image_avg"


def verdict(checks: Dict[str, bool]) -> str:
  """'held' when every check is true, 'did not hold' when none is, else 'partly'."""
  if not checks:
    raise ValueError("A verdict needs at least one check.")
  passed = sum(bool(v) for v in checks.values())
  if passed == len(checks):
    return VERDICTS[0]
  return VERDICTS[2] if passed == 0 else VERDICTS[1]


def command(name: str, out: str, size: str) -> str:
  size_flag = "" if size == "small" else f" --size={size}"
  return f"python -m wae_jax.experiments.{name} --out={out}{size_flag}"


def write_results(name: str, source: str, claim: str, size: str, out: str,
                  settings: dict, runs: dict, summary: dict,
                  checks: Dict[str, bool], plots: Sequence[str], start_time: float) -> dict:
  """Writes DIR/results.json (see the module docstring) atomically; returns the record."""
  results = {
      "experiment": name, "source": source, "claim": claim, "size": size,
      "command": command(name, out, size), "settings": settings, "runs": runs,
      "summary": summary, "checks": {k: bool(v) for k, v in checks.items()},
      "verdict": verdict(checks), "plots": list(plots),
      "wall_seconds": round(time.time() - start_time, 1),
  }
  os.makedirs(out, exist_ok=True)
  checkpoint.write_json_atomic(os.path.join(out, RESULTS_FILE), results)
  return results


# ----------------------------------------------------------------------------
# Plots.


def save_figure(figure, out: str, file_name: str) -> str:
  """Saves a figure as a small PNG in `out`; returns the file name."""
  os.makedirs(out, exist_ok=True)
  figure.tight_layout()
  figure.savefig(os.path.join(out, file_name), dpi=80)
  plt.close(figure)
  return file_name


def line_plot(out: str, file_name: str, curves: Dict[str, tuple], xlabel: str,
              ylabel: str, title: str, log_y: bool = False,
              reference: Optional[tuple] = None) -> str:
  """One line per {label: (xs, ys)}; `reference` (label, y) is a dashed level."""
  figure, axis = plt.subplots(figsize=(6, 4))
  for label, (xs, ys) in curves.items():
    axis.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=label)
  if reference is not None:
    axis.axhline(reference[1], color="grey", linestyle="--", label=reference[0])
  if log_y:
    axis.set_yscale("log")
  axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
  axis.legend(fontsize=8)
  axis.grid(alpha=0.3)
  return save_figure(figure, out, file_name)


def image_panels(out: str, file_name: str, panels: Dict[str, str], title: str) -> str:
  """PNG grids side by side, one titled panel per {label: png path}."""
  figure, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6))
  for axis, (label, path) in zip(np.atleast_1d(axes), panels.items()):
    axis.imshow(np.asarray(Image.open(path)))
    axis.set_title(label, fontsize=9)
    axis.axis("off")
  figure.suptitle(title, fontsize=10)
  return save_figure(figure, out, file_name)


# ----------------------------------------------------------------------------
# The command line.


def main(run: Callable[[str, str, str], dict]) -> None:
  """The command line: run(--out, --size, --data_dir) -> results; prints the verdict.

  A user's mistake (a bad --out, data that is not prepared) is one line on
  stderr and exit status 2 (wae_jax.cli).
  """

  # Defined here, not at import, so that importing an experiment (a test does)
  # never clashes with another command's --out in the same process.
  flags.DEFINE_string("out", None, "Folder for results.json, the plots and the runs.")
  flags.DEFINE_enum("size", "small", SIZES,
                    "small: CPU minutes on digits/synthetic data; paper: the paper's "
                    "data and networks (GPU/TPU); toy: a few steps, a wiring check.")
  flags.DEFINE_string("data_dir", "", "tfds data_dir of --size=paper ('' = tfds's default).")

  def _main(argv):
    del argv  # cli.run_absl refuses extra arguments.
    if not FLAGS.out:
      raise cli.UserError("--out is required: the folder for results.json and the plots, "
                          "e.g. --out=/tmp/experiment.")
    cli.check_workdir_writable(FLAGS.out, "--out")
    # As typed, so that results.json's command is the one the user ran.
    results = run(FLAGS.out, FLAGS.size, FLAGS.data_dir)
    print(f"{results['experiment']} ({results['size']}): {results['verdict']}; "
          f"{os.path.join(FLAGS.out, RESULTS_FILE)}")

  cli.run_absl(_main)


def curve(history: Iterable[dict], metric: str) -> tuple:
  """(steps, values) of `metric` over an evaluation history."""
  points = [(h["step"], h[metric]) for h in history if metric in h]
  return [p[0] for p in points], [p[1] for p in points]

