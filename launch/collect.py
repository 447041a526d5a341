"""One table of a sweep's runs and their best checkpoints, and the appendix plots.

  python -m launch.collect --root=<dir> [--metric=fid] [--out=<root>/collect] [--top=10]

Writes <out>/runs.csv and <out>/runs.jsonl (one row per run: index, state,
every override, best step and the best checkpoint's metrics) and, in the
spirit of the WAE paper's appendix, <out>/best_by_method.png (box plot of the
best metric per method), <out>/metric_vs_hparams.png (the metric against each
hyper-parameter, coloured by method) and <out>/top_runs.png (the best runs,
with their sample grids in <out>/top_runs_samples.png when the runs wrote
images). Works on a partly finished sweep: an unfinished run contributes its
best evaluated checkpoint so far (its state says it is not finished).

The best checkpoint of a finished run is the one in its run_complete.json (the
trainer's choice by config.best_metric); of an unfinished run, the eval.jsonl
line with the lowest plotted metric. The plotted metric is --metric, by
default FID (fid_inception) when any run has it, else the offline feature
distance (fd_<dataset>_classifier), else the test reconstruction error; plot
titles name it.
"""

import argparse
import csv
import json
import math
import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

from launch import runs
from launch import status as status_lib
from launch import sweep
from wae_jax import cli
from wae_jax import run_files
from wae_jax.evaluation import metric_names as metric_names_lib

METHOD_COLOURS = {"wae_mmd": "tab:blue", "wae_gan": "tab:orange", "vae": "tab:green",
                  "moca": "tab:red"}


def _value_text(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return sweep.format_override(tuple(value))
  return str(value)


def _eval_lines(workdir: str) -> list[dict[str, Any]]:
  return [line for line in runs.read_jsonl(os.path.join(workdir, run_files.EVAL_FILE))
          if isinstance(line.get("metrics"), dict)]


def _numeric(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choose_metric(metric_names: set[str], requested: Optional[str] = None) -> Optional[str]:
  """The metric to plot: `requested`, else the first of
  metric_names_lib.METRIC_PREFERENCE present, else test_reconstruction, else the first
  name."""
  if requested:
    return requested
  fallback = ("test_reconstruction" if "test_reconstruction" in metric_names
              else min(metric_names, default=None))
  return metric_names_lib.preferred_metric(metric_names, fallback)


def collect_rows(root: str, metric: Optional[str] = None) -> tuple[list[dict[str, Any]], Optional[str]]:
  """One row per manifest entry, and the metric chosen for plots.

  Returns:
    (rows, metric): each row {"index", "state", "workdir", "overrides",
    "best_step", "best_metrics", "value"} where value is the row's best
    `metric` (None when the run has not evaluated it yet).
  """
  manifest = sweep.read_manifest(root)
  if not manifest:
    raise cli.UserError(f"{root} has no {sweep.MANIFEST_FILE}; launch the sweep there first.")
  gathered = []
  names = set()
  for entry in manifest:
    complete = run_files.read_run_complete(entry["workdir"], move_damaged=False)
    evals = _eval_lines(entry["workdir"])
    for line in evals:
      names.update(k for k, v in line["metrics"].items() if _numeric(v))
    if complete:
      names.update(k for k, v in (complete.get("best_metrics") or {}).items() if _numeric(v))
    gathered.append((entry, complete, evals))
  metric = choose_metric(names, metric)

  rows = []
  for entry, complete, evals in gathered:
    best_step, best_metrics = None, {}
    scored = [line for line in evals if _numeric(line["metrics"].get(metric))]
    if complete:
      best_step = complete.get("best_step")
      best_metrics = dict(complete.get("best_metrics") or {})
      value = best_metrics.get(metric)
      if not _numeric(value):  # the trainer chose by another metric
        value = min((line["metrics"][metric] for line in scored), default=None)
    elif scored:
      best = min(scored, key=lambda line: line["metrics"][metric])
      best_step, best_metrics = best.get("step"), dict(best["metrics"])
      value = best_metrics[metric]
    else:
      value = None
    rows.append({"index": entry["index"], "state": status_lib.run_state(entry["workdir"]),
                 "workdir": entry["workdir"], "overrides": entry["overrides"],
                 "best_step": best_step, "best_metrics": best_metrics,
                 "value": value if _numeric(value) else None})
  return rows, metric


def write_tables(rows: Sequence[dict[str, Any]], metric: Optional[str], out: str) -> tuple[str, str]:
  """Writes runs.jsonl and runs.csv (flat columns) in out; returns their paths."""
  os.makedirs(out, exist_ok=True)
  jsonl_path = os.path.join(out, "runs.jsonl")
  with open(jsonl_path, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps({**row, "metric": metric}) + "\n")
  override_keys = sorted({k for row in rows for k in row["overrides"]})
  metric_keys = sorted({k for row in rows for k in row["best_metrics"]})
  header = (["index", "state", "workdir"] + override_keys + ["best_step"]
            + [f"best.{k}" for k in metric_keys] + [f"plotted.{metric}"])
  csv_path = os.path.join(out, "runs.csv")
  with open(csv_path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      writer.writerow(
          [row["index"], row["state"], row["workdir"]]
          + [_value_text(row["overrides"][k]) if k in row["overrides"] else "" for k in override_keys]
          + ["" if row["best_step"] is None else row["best_step"]]
          + [row["best_metrics"].get(k, "") for k in metric_keys]
          + ["" if row["value"] is None else row["value"]])
  return csv_path, jsonl_path


def _method(row):
  return str(row["overrides"].get("method", "?"))


def _is_number_text(text: str) -> bool:
  try:
    float(text)
    return True
  except ValueError:
    return False


def _short_names(keys) -> dict[str, str]:
  """Each dotted key's last part, or the whole key where last parts collide."""
  last = [k.split(".")[-1] for k in keys]
  return {k: (n if last.count(n) == 1 else k) for k, n in zip(keys, last)}


def _wide_positive(values: Sequence[float]) -> bool:
  """Whether values are positive and span enough to be read on a log axis."""
  values = [v for v in values if v is not None]
  return bool(values) and min(values) > 0 and max(values) / min(values) >= 20


def plot_all(rows: Sequence[dict[str, Any]], metric: Optional[str], out: str,
             top: int = 10) -> list[str]:
  """Draws the PNGs described in the module docstring; returns their paths."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import

  os.makedirs(out, exist_ok=True)
  scored = [r for r in rows if r["value"] is not None]
  finished = sum(r["state"] == "finished" for r in rows)
  what = f"{metric} (lower is better)" if metric else "no metric yet"
  subtitle = f"{len(scored)} of {len(rows)} runs scored, {finished} finished"
  methods = sorted({_method(r) for r in rows})
  colour = {m: METHOD_COLOURS.get(m, f"C{i}") for i, m in enumerate(methods)}
  paths = []

  # 1. Best metric per method.
  fig, ax = plt.subplots(figsize=(6, 4.5))
  groups = [[r["value"] for r in scored if _method(r) == m] for m in methods]
  present = [(m, g) for m, g in zip(methods, groups) if g]
  if present:
    ax.boxplot([g for _, g in present], showfliers=False)
    ax.set_xticks(range(1, len(present) + 1),
                  [f"{m}\n(n={len(g)})" for m, g in present])
    jitter = np.random.default_rng(0)
    for position, (m, g) in enumerate(present, start=1):
      ax.scatter(position + jitter.uniform(-0.12, 0.12, len(g)), g, s=12, alpha=0.7,
                 color=colour[m], zorder=3)
    if _wide_positive([v for _, g in present for v in g]):
      ax.set_yscale("log")
  else:
    ax.text(0.5, 0.5, "no run has been evaluated yet", ha="center", va="center",
            transform=ax.transAxes)
  ax.set_ylabel(metric or "")
  ax.set_title(f"Best {what} per method\n{subtitle}", fontsize=10)
  fig.tight_layout()
  paths.append(os.path.join(out, "best_by_method.png"))
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)

  # 2. Metric against each hyper-parameter, coloured by method.
  # Swept keys only: not the method (the colour), not constants.
  keys = sorted(k for k in {k for r in rows for k in r["overrides"]} - {"method"}
                if len({_value_text(r["overrides"][k]) for r in rows if k in r["overrides"]}) > 1)
  num_cols = min(3, max(1, len(keys)))
  num_rows = max(1, math.ceil(len(keys) / num_cols))
  fig, axes = plt.subplots(num_rows, num_cols, figsize=(4.2 * num_cols, 3.3 * num_rows),
                           squeeze=False)
  log_y = _wide_positive([r["value"] for r in scored])
  jitter = np.random.default_rng(1)
  for ax, key in zip(axes.flat, keys):
    with_key = [r for r in scored if key in r["overrides"]]
    values = [r["overrides"][key] for r in with_key]
    numeric = all(_numeric(v) for v in values) and len({*map(str, values)}) > 3
    if numeric:
      xs = np.array(values, dtype=float)
      if xs.min() > 0 and xs.max() / xs.min() >= 5:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 3.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    else:
      categories = sorted({_value_text(v) for v in values},
                          key=lambda c: (0, float(c), c) if _is_number_text(c) else (1, 0.0, c))
      xs = np.array([categories.index(_value_text(v)) for v in values], dtype=float)
      xs = xs + jitter.uniform(-0.15, 0.15, len(xs))
      ax.set_xticks(range(len(categories)), categories, fontsize=8)
    for m in methods:
      mask = np.array([_method(r) == m for r in with_key], dtype=bool)
      if mask.any():
        ax.scatter(xs[mask], np.array([r["value"] for r in with_key])[mask], s=12,
                   alpha=0.7, color=colour[m], label=m)
    if log_y:
      ax.set_yscale("log")
    ax.set_xlabel(key, fontsize=9)
    ax.set_ylabel(metric or "", fontsize=9)
  for ax in list(axes.flat)[len(keys):]:
    ax.axis("off")
  handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour[m], label=m)
             for m in methods]
  fig.legend(handles=handles, loc="upper right", fontsize=9)
  fig.suptitle(f"Best {what} against each hyper-parameter ({subtitle})", fontsize=11)
  fig.tight_layout(rect=(0, 0, 0.92, 0.96))
  paths.append(os.path.join(out, "metric_vs_hparams.png"))
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)

  # 3. The top runs.
  best = sorted(scored, key=lambda r: r["value"])[:top]
  fig, ax = plt.subplots(figsize=(13, 0.45 * max(len(best), 2) + 1.4))
  short = _short_names(sorted({k for r in rows for k in r["overrides"]}))
  labels = []
  for r in best:
    shown = ", ".join(f"{short[k]}={_value_text(v)}" for k, v in r["overrides"].items()
                      if k != "method")
    labels.append(f"run {r['index']} {_method(r)}: {shown}")
  ax.barh(range(len(best)), [r["value"] for r in best],
          color=[colour[_method(r)] for r in best])
  ax.set_yticks(range(len(best)), labels, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel(metric or "")
  ax.set_title(f"Top {len(best)} runs by {what}\n{subtitle}", fontsize=10, loc="right")
  fig.tight_layout()
  paths.append(os.path.join(out, "top_runs.png"))
  fig.savefig(paths[-1], dpi=100)
  plt.close(fig)

  # Their samples, when the runs wrote sample grids.
  samples = [(r, _sample_image(r["workdir"])) for r in best]
  samples = [(r, p) for r, p in samples if p][:8]
  if samples:
    fig, axes = plt.subplots(1, len(samples), figsize=(2.6 * len(samples), 3), squeeze=False)
    for ax, (r, path) in zip(axes.flat, samples):
      ax.imshow(plt.imread(path), cmap="gray")
      ax.set_title(f"run {r['index']} {_method(r)}\n{metric}={r['value']:.4g}", fontsize=8)
      ax.axis("off")
    fig.suptitle(f"Samples of the top runs by {metric}", fontsize=10)
    fig.tight_layout()
    paths.append(os.path.join(out, "top_runs_samples.png"))
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
  return paths


def _sample_image(workdir: str) -> Optional[str]:
  """The run's latest sample grid PNG, if it wrote one."""
  image_dir = os.path.join(workdir, "images")
  if not os.path.isdir(image_dir):
    return None
  names = sorted(n for n in os.listdir(image_dir) if n.endswith(".png") and "sample" in n)
  latest = [n for n in names if "latest" in n]
  chosen = latest[0] if latest else (names[-1] if names else None)
  return os.path.join(image_dir, chosen) if chosen else None


def collect(root: str, metric: Optional[str] = None, out: Optional[str] = None,
            top: int = 10) -> dict[str, Any]:
  """Tables and plots of a sweep; returns {"metric", "rows", "files"}."""
  root = os.path.abspath(root)
  out = out or os.path.join(root, "collect")
  rows, metric = collect_rows(root, metric)
  files = list(write_tables(rows, metric, out))
  files += plot_all(rows, metric, out, top)
  return {"metric": metric, "rows": rows, "files": files}


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (2: a bad input, one line on stderr)."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  parser = cli.ArgumentParser(prog="python -m launch.collect", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--root", required=True)
  parser.add_argument("--metric", default=None, help="metric to plot (default: see above)")
  parser.add_argument("--out", default=None, help="output folder (default <root>/collect)")
  parser.add_argument("--top", type=int, default=10, help="how many top runs to show")
  args = parser.parse_args(argv)
  if args.top < 1:
    raise cli.UserError(f"--top is {args.top}; use 1 or more.")
  root = os.path.abspath(args.root)
  if not os.path.isdir(root):
    what = "is a file" if os.path.exists(root) else "does not exist"
    raise cli.UserError(f"--root={root} {what}; pass the directory of a sweep "
                        "(python -m launch.sweep --root=...).")
  result = collect(args.root, args.metric, args.out, args.top)
  scored = sum(r["value"] is not None for r in result["rows"])
  print(f"{len(result['rows'])} runs, {scored} with {result['metric']}; wrote:")
  for path in result["files"]:
    print(f"  {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
