"""What every paper experiment shares: its command line, training runs through
the library's trainer, the results.json it writes and its matplotlib plots.

    python -m wae_jax.experiments.<name> --out=DIR [--size=small|mnist|paper|toy] [--data_dir=D]
        [--pack=P]

Run from the repository root: the experiments start from the files in
configs/ (configs/default.py for the small runs, the paper configs for
--size=paper). Each training run lives in DIR/runs/<run>/, written as
`wae_jax.train.train_and_evaluate` writes a run, so running the command again
skips the finished runs and resumes the others; DIR/results.json and
DIR/*.png are then rebuilt from the runs' logs.

Populations (--pack=P; default `default_pack()`: 1 on a CPU, DEFAULT_PACK on
an accelerator): the runs whose configs differ
only in scalar hyper-parameters (wae_jax/hparams.py's PER_MEMBER: the seeds, a
λ or τ sweep) are trained as populations of at most P, each one vmapped
program (wae_jax/population.py), every run still in its own DIR/runs/<run>/.
A member equals the run trained alone (exactly where XLA computes the same
operations, else to float32 rounding that training may then amplify), so a
figure's numbers can move by about what another machine moves them.
--pack=1 trains every run alone: on a CPU a population runs no faster than its
members one after another (benchmarks/README.md, "Populations"), and alone a
rerun of a committed CPU result is bit for bit. A run may be resumed with
another --pack.

Sizes: `small` (the default: scikit-learn's digits or synthetic data, a few
minutes on 2 CPU cores), `mnist` (real MNIST at 28x28 from the idx files in
--data_dir, MLPs that fit a 2-core CPU: the reproductions whose numbers are
committed), `paper` (the paper's dataset and networks, for a GPU or TPU; the
tfds data must be prepared), `toy` (a few steps and tiny widths: proves the
wiring, measures nothing).

Seeds: every cell (a method, a λ, ...) is trained with each seed of
SEEDS[size] as run `<cell>_seed<s>`; numbers are reported as mean ± std over
the seeds and each check follows the rule of stats.py (held / did not hold
only when the difference of the means exceeds two standard errors, else
inconclusive).

results.json (every experiment):
  experiment, source (paper and figure), claim, size, command,
  settings: the choices shared by all runs,
  runs: {run name: {"config": the fields the run overrides, "history":
    [{"step": s, metric: value, ...}] (the evaluations), "final": {metric:
    value}} plus what the experiment measures itself},
  summary: the numbers the checks read,
  checks: {statement: "held" | "did not hold" | "inconclusive"}, the claim
    split into testable parts, decided over the seeds (stats.compare),
  check_details: {statement: {"difference", "standard_error", "lower",
    "higher"}}: the numbers each check compared,
  verdict: "held", "partly", "did not hold" or "inconclusive" (stats.verdict),
  seeds: the seeds every cell ran with,
  feature_net: {metric: the pinned feature net's name, file, sha256 and test
    accuracy} for every classifier FD the runs report ({} when none),
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
from wae_jax import hparams
from wae_jax import methods
from wae_jax import metrics_io
from wae_jax import per_member
from wae_jax import population
from wae_jax import train as train_lib
from wae_jax.experiments import stats

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

SIZES = ("small", "mnist", "paper", "toy")
VERDICTS = stats.VERDICTS
# Three seeds per cell for every measured size; two at toy size keep the
# wiring tests fast while still exercising the aggregation.
SEEDS = {"small": (0, 1, 2), "mnist": (0, 1, 2), "paper": (0, 1, 2), "toy": (0, 1)}
RESULTS_FILE = "results.json"
RUNS_DIR = "runs"
# Runs per population (train_runs, --pack): a cell's three seeds and a few of a
# sweep's values in one program, while memory grows only by P states.
DEFAULT_PACK = 8


def default_pack() -> int:
  """--pack's default: 1 on a CPU (see the module docstring), else DEFAULT_PACK."""
  import jax  # pylint: disable=g-import-not-at-top
  return 1 if jax.default_backend() == "cpu" else DEFAULT_PACK

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


MNIST_IMAGE_SIZE = 28
MNIST_PIXELS = 28 * 28
DEFAULT_MNIST_DIR = os.path.join("~", ".cache", "wae_jax", "mnist_idx")  # get_mnist.sh's
GET_MNIST = "wae_jax/experiments/get_mnist.sh"


def check_mnist_dir(data_dir: str) -> str:
  """The idx folder of --size=mnist (default DEFAULT_MNIST_DIR), or a one-line UserError
  naming the script that fetches it."""
  from wae_jax.data import offline  # pylint: disable=g-import-not-at-top
  folder = os.path.expanduser(data_dir or DEFAULT_MNIST_DIR)
  missing = [name for name in offline.MNIST_IDX_FILES.values()
             if offline._find_idx_file(folder, name) is None]  # pylint: disable=protected-access
  if missing:
    raise cli.UserError(
        f"--size=mnist reads the four MNIST idx files from --data_dir, and {folder} lacks "
        f"{', '.join(missing)}; fetch them with `bash {GET_MNIST} {folder}` (about 55 MB, "
        "seconds) and run the command again.")
  return folder


def mnist_config(data_dir: str) -> ml_collections.ConfigDict:
  """configs/default.py's base config on real MNIST (28x28) from the idx folder.

  The MLP (256, 256) of the small runs, batch 100 (the WAE paper's MNIST
  batch), evaluations on all 10,000 test images: the classifier FD with
  10,000 samples and the pinned MNIST net, the probes on the codes of 10,000
  training images.
  """
  config = base_config()
  config.dataset = "mnist_idx"
  config.data_dir = data_dir
  config.image_size = MNIST_IMAGE_SIZE
  config.batch_size = 100
  config.model.network = "mlp"
  config.model.hidden_sizes = (256, 256)
  config.evaluation.num_samples = 10_000
  config.evaluation.probe_train_examples = 10_000
  return config


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


def seed_run_name(cell: str, seed: int) -> str:
  return f"{cell}_seed{seed}"


def seeded(cells: Dict[str, ml_collections.ConfigDict],
           seeds: Sequence[int]) -> Dict[str, ml_collections.ConfigDict]:
  """{'<cell>_seed<s>': a copy of the cell's config with config.seed = s}, cell by cell."""
  configs = {}
  for cell, config in cells.items():
    for seed in seeds:
      copy = ml_collections.ConfigDict(config.to_dict())
      copy.seed = int(seed)
      configs[seed_run_name(cell, seed)] = copy
  return configs


def per_seed(runs: dict, cell: str, seeds: Sequence[int], metric: str) -> list:
  """[run '<cell>_seed<s>''s final `metric` for s in seeds]."""
  return [float(runs[seed_run_name(cell, s)]["final"][metric]) for s in seeds]


def run_record(out: str, name: str) -> dict:
  """Run `name`'s record, read from its eval.jsonl.

  Returns:
    {"history": [{"step", metric: value}, ...] (the evaluations), "final": the
    last evaluation's metrics, "feature_net": the last evaluation's
    {metric: the feature net it used}}.
  """
  evaluations = metrics_io.read_jsonl(os.path.join(run_dir(out, name), metrics_io.EVAL_FILE))
  history = [dict(step=int(e["step"]), **e["metrics"]) for e in evaluations]
  return {"history": history, "final": dict(history[-1]) if history else {},
          "feature_net": dict(evaluations[-1].get("feature_net", {})) if evaluations else {}}


def check_pack(pack: int) -> int:
  """`pack`, or a one-line cli.UserError when it is below 1."""
  if pack < 1:
    raise cli.UserError(f"--pack is {pack}; use 1 (every run trained alone) or more.")
  return pack


def populations(configs: Dict[str, ml_collections.ConfigDict], pack: int) -> list:
  """The runs grouped into populations: [[run name, ...], ...] in the runs' order.

  Runs whose configs differ only in hparams.PER_MEMBER fields (seed, λ, τ,
  learning rates, ...) share one compiled step; each group holds at most
  `pack` of them, filled in the runs' order. pack=1: every run alone.
  """
  check_pack(pack)
  return per_member.group_by_program(
      list(configs), lambda name: hparams.program_key(configs[name]), pack)


def train_runs(configs: Dict[str, ml_collections.ConfigDict], out: str,
               pack: Optional[int] = None) -> dict:
  """Checks every run's data, then trains (or resumes, or skips when finished)
  each run in DIR/runs/<name>/; {name: `run_record` + "config"}.

  Runs that may share one compiled step are trained together as a population
  of at most `pack` (`populations`, wae_jax/population.py): each still trains
  in its own workdir, as it would alone, and equals the run trained alone
  (exactly where XLA computes the same operations, else to float32 rounding).
  pack=1 trains each run alone (wae_jax.train.train_and_evaluate); None:
  default_pack().
  "config" is what the run changes in configs/default.py's base config.
  """
  groups = populations(configs, default_pack() if pack is None else pack)
  check_data(configs.values())
  for group in groups:
    workdirs = [run_dir(out, name) for name in group]
    if len(group) == 1:
      print(f"[{group[0]}] training in {workdirs[0]}", flush=True)
      train_lib.train_and_evaluate(configs[group[0]], workdirs[0])
    else:
      print(f"[{', '.join(group)}] training as one population in "
            f"{os.path.join(out, RUNS_DIR)}", flush=True)
      population.train_members([configs[name] for name in group], workdirs)
  base = base_config()
  return {name: dict(run_record(out, name), config=overrides(config, base))
          for name, config in configs.items()}


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


verdict = stats.verdict


def command(name: str, out: str, size: str, data_dir: str = "",
            pack: Optional[int] = None) -> str:
  size_flag = "" if size == "small" else f" --size={size}"
  data_flag = f" --data_dir={data_dir}" if data_dir else ""
  pack_flag = "" if pack in (None, default_pack()) else f" --pack={pack}"
  return f"python -m wae_jax.experiments.{name} --out={out}{size_flag}{data_flag}{pack_flag}"


def feature_nets(runs: dict) -> dict:
  """{metric: the feature net every run used for it} from the runs' records.

  Raises:
    ValueError: two runs measured one metric with different nets (their
      numbers would not be comparable).
  """
  nets = {}
  for name, record in runs.items():
    for metric, description in record.get("feature_net", {}).items():
      if nets.setdefault(metric, description) != description:
        raise ValueError(f"Run {name} measured {metric} with {description}, another run "
                         f"with {nets[metric]}; their numbers are not comparable.")
  return nets


def write_results(name: str, source: str, claim: str, size: str, out: str,
                  settings: dict, runs: dict, summary: dict, checks: Dict[str, dict],
                  plots: Sequence[str], start_time: float, seeds: Sequence[int] = (0,),
                  data_dir: str = "", pack: Optional[int] = None) -> dict:
  """Writes DIR/results.json (see the module docstring) atomically; returns the record.

  checks: {statement: stats.compare(...)'s record}.
  """
  results = {
      "experiment": name, "source": source, "claim": claim, "size": size,
      "command": command(name, out, size, data_dir, pack), "settings": settings, "runs": runs,
      "summary": summary, "checks": {k: v["outcome"] for k, v in checks.items()},
      "check_details": {k: {f: v[f] for f in ("difference", "standard_error", "lower",
                                               "higher")} for k, v in checks.items()},
      "verdict": verdict({k: v["outcome"] for k, v in checks.items()}),
      "seeds": [int(s) for s in seeds], "feature_net": feature_nets(runs),
      "plots": list(plots), "wall_seconds": round(time.time() - start_time, 1),
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


def band(axis, xs, per_seed: Sequence[Sequence[float]], label: str, **style) -> None:
  """The mean over seeds as a line, mean ± std as a shaded band (rows of per_seed: seeds)."""
  values = np.asarray(per_seed, np.float64)
  mean = values.mean(0)
  std = values.std(0, ddof=1) if values.shape[0] > 1 else np.zeros_like(mean)
  line, = axis.plot(xs, mean, marker="o" if len(xs) <= 30 else None, markersize=3,
                    label=label, **style)
  axis.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def bars(axis, labels: Sequence[str], per_seed: Sequence[Sequence[float]], title: str) -> None:
  """One bar per label at the mean over seeds, error bars ± std, the seeds as dots."""
  for index, values in enumerate(per_seed):
    values = np.asarray(values, np.float64)
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    axis.bar(index, values.mean(), yerr=std, capsize=4, color=f"C{index}", alpha=0.8)
    axis.plot(np.full(len(values), index), values, "k.", markersize=4)
  axis.set_xticks(range(len(labels)), labels, fontsize=8)
  axis.set_title(title, fontsize=9)
  axis.grid(alpha=0.3, axis="y")


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


def main(run: Callable[..., dict], reads_mnist: bool = True, packs: bool = True) -> None:
  """The command line: run(--out, --size, --data_dir[, pack=--pack]) -> results;
  prints the verdict.

  A user's mistake (a bad --out, data that is not prepared, --size=mnist
  without the idx files, --pack below 1) is one line on stderr and exit
  status 2 (wae_jax.cli). reads_mnist: whether --size=mnist reads the idx
  folder; packs: whether the runs go through `train_runs` (then --pack).
  """

  # Defined here, not at import, so that importing an experiment (a test does)
  # never clashes with another command's --out in the same process.
  flags.DEFINE_string("out", None, "Folder for results.json, the plots and the runs.")
  flags.DEFINE_enum("size", "small", SIZES,
                    "small: CPU minutes on digits/synthetic data; mnist: real MNIST "
                    "(28x28) on a CPU, the committed reproductions; paper: the paper's "
                    "data and networks (GPU/TPU); toy: a few steps, a wiring check.")
  flags.DEFINE_string("data_dir", "", "--size=mnist: the folder of the MNIST idx files "
                      f"(default {DEFAULT_MNIST_DIR}, fetched by {GET_MNIST}); "
                      "--size=paper: the tfds data_dir ('' = tfds's default).")
  if packs:
    flags.DEFINE_integer("pack", None,
                         "At most this many runs that differ only in scalar hyper-parameters "
                         "(seed, λ, τ, ...) train as one population (one vmapped program), "
                         "each in its own DIR/runs/<run>/; 1 trains every run alone. "
                         f"Default: 1 on a CPU, {DEFAULT_PACK} on an accelerator.")

  def _main(argv):
    del argv  # cli.run_absl refuses extra arguments.
    if not FLAGS.out:
      raise cli.UserError("--out is required: the folder for results.json and the plots, "
                          "e.g. --out=/tmp/experiment.")
    extra = {"pack": check_pack(default_pack() if FLAGS.pack is None else FLAGS.pack)} if packs else {}
    cli.check_workdir_writable(FLAGS.out, "--out")
    data_dir = FLAGS.data_dir
    if FLAGS.size == "mnist" and reads_mnist:
      data_dir = check_mnist_dir(data_dir)
    # --out as typed, so that results.json's command is the one the user ran.
    results = run(FLAGS.out, FLAGS.size, data_dir, **extra)
    print(f"{results['experiment']} ({results['size']}): {results['verdict']}; "
          f"{os.path.join(FLAGS.out, RESULTS_FILE)}")

  cli.run_absl(_main)


def curve(history: Iterable[dict], metric: str) -> tuple:
  """(steps, values) of `metric` over an evaluation history."""
  points = [(h["step"], h[metric]) for h in history if metric in h]
  return [p[0] for p in points], [p[1] for p in points]

