r"""Expands a sweep and runs every index as the ordinary trainer.

  python -m launch.sweep --config=configs/bigwae.py --root=/sweeps/bigwae \
      [--num_runs=N] [--engine=local|ray] [--max_parallel=P] [--retries=R] \
      [--address=...] [--config_arg=tiny] [--pack=P]

writes <root>/manifest.jsonl ({index, overrides, workdir, command} per line)
and runs each command, whose workdir is <root>/runs/<index>. A command is
exactly what a user could run by hand:

  python -m wae_jax.main --config=configs/bigwae.py --workdir=<root>/runs/7 \
      --config.method=wae_gan --config.optimizer.learning_rate=0.0003 ...

With --pack=P the runs whose configs differ only in scalar hyper-parameters
(wae_jax/hparams.py's PER_MEMBER: seed, λ, learning rates, ...; so method,
network, latent dim, batch size, image size, encoder type and every other
field match) are grouped, in index order, into populations of at most P, and
each population is one trainer (wae_jax/population.py) with workdir
<root>/packs/<k>, training its runs as members <root>/packs/<k>/<j>. The
manifest still has one line per run index, whose workdir is its member's and
whose command is its population's. A sweep keeps the --pack it was first
launched with.

Launching again skips finished runs and resumes unfinished ones (the trainer
resumes from its checkpoints); see launch/runs.py for the locking and retry
rules. Exit status: 0 when every run is finished, 1 otherwise.
"""

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from typing import Any, Optional, Sequence

from launch import engines
from launch import runs
from wae_jax import cli
from wae_jax import fields
from wae_jax import hparams
from wae_jax import per_member

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFEST_FILE = "manifest.jsonl"
PACK_DIR = "packs"
SWEEP_FILE = "sweep.json"


def split_config_path(config: str) -> tuple[str, Optional[str]]:
  """'configs/bigwae.py:tiny' -> ('configs/bigwae.py', 'tiny')."""
  path, _, arg = config.partition(":")
  return path, (arg or None)


def load_config_module(path: str):
  """Imports a config file (configs/ is no package) by its path."""
  path = os.path.abspath(path)
  if not os.path.isfile(path):
    raise cli.UserError(f"Config file {path} does not exist; pass --config=configs/bigwae.py "
                     "or another file that defines get_config() and sweep().")
  spec = importlib.util.spec_from_file_location(
      "sweep_config_" + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except SyntaxError as error:
    raise cli.UserError(f"--config file {path} has a syntax error on line {error.lineno} "
                        f"({error.msg}); fix it.") from error
  if not callable(getattr(module, "sweep", None)):
    raise cli.UserError(f"{path} has no sweep(num_runs, seed, config_arg) function; "
                     "add one (see configs/bigwae.py).")
  return module


def resolve_num_runs(module, config_file: str, num_runs: Optional[int]) -> int:
  """num_runs, else the config's NUM_RUNS; UserError when neither is there."""
  if num_runs is None:
    num_runs = getattr(module, "NUM_RUNS", None)
    if num_runs is None:
      raise cli.UserError(f"{config_file} defines no NUM_RUNS; pass --num_runs.")
  if num_runs < 0:
    raise cli.UserError(f"--num_runs is {num_runs}; use 0 or more.")
  return num_runs


def format_override(value: Any) -> str:
  """A config value as ml_collections config_flags parses it on the command line."""
  if isinstance(value, (tuple, list)):
    inner = ",".join(format_override(v) for v in value)
    return f"({inner},)" if len(value) == 1 else f"({inner})"
  if isinstance(value, float):
    return repr(value)
  return str(value)


def run_command(python: str, trainer: str, config_file: str, config_arg: Optional[str],
                workdir: str, overrides: dict[str, Any]) -> list[str]:
  """The trainer command (argv) of one run."""
  config = config_file + (f":{config_arg}" if config_arg else "")
  command = [python, "-m", trainer, f"--config={config}", f"--workdir={workdir}"]
  command += [f"--config.{key}={format_override(value)}" for key, value in overrides.items()]
  return command


def expand(root: str, config_file: str, config_arg: Optional[str], num_runs: int,
           seed: int = 0, python: str = sys.executable,
           trainer: str = "wae_jax.main") -> list[dict[str, Any]]:
  """The manifest entries of a sweep: {index, overrides, workdir, command}."""
  root = os.path.abspath(root)
  config_file = os.path.abspath(config_file)
  module = load_config_module(config_file)
  entries = []
  try:
    draws = list(module.sweep(num_runs, seed, config_arg))
  except ValueError as error:  # e.g. an unknown :arg
    raise cli.UserError(f"{config_file}: {cli.one_line(error)}") from error
  for index, overrides in enumerate(draws):
    workdir = os.path.join(root, "runs", str(index))
    command = run_command(python, trainer, config_file, config_arg, workdir, overrides)
    entries.append({"index": index, "overrides": overrides, "workdir": workdir,
                    "command": shlex.join(command)})
  return entries


def _program_key(overrides: dict[str, Any]) -> str:
  """What a population's members must share: the overrides outside PER_MEMBER."""
  return json.dumps({k: v for k, v in overrides.items() if k not in hparams.PER_MEMBER},
                    sort_keys=True)


def pack(entries: Sequence[dict[str, Any]], pack_size: int, root: str, config_file: str,
         config_arg: Optional[str], python: str = sys.executable,
         trainer: str = "wae_jax.main") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """Groups a sweep's entries into populations of at most `pack_size`.

  Runs whose overrides agree outside hparams.PER_MEMBER share every field that
  changes shapes or the program (same base config), so they may share one
  vmapped trainer; they are packed in index order.

  Returns:
    (the entries with each run's member workdir, its population's command
     and "pack": k; the populations [{"pack": k, "workdir", "command",
     "indices"}]).
  """
  root = os.path.abspath(root)
  base = load_config_module(config_file).get_config(config_arg)
  chunks = per_member.group_by_program(sorted(entries, key=lambda e: e["index"]),
                                       lambda e: _program_key(e["overrides"]), pack_size)
  packed, populations = [], []
  for k, chunk in enumerate(chunks):
    workdir = os.path.join(root, PACK_DIR, str(k))
    shared = {key: value for key, value in chunk[0]["overrides"].items()
              if key not in hparams.PER_MEMBER}
    varied = sorted({key for e in chunk for key in e["overrides"] if key in hparams.PER_MEMBER})
    command = run_command(python, trainer, config_file, config_arg, workdir, shared)
    for key in varied:
      values = tuple(e["overrides"].get(key, fields.get(base, key)) for e in chunk)
      command.append(f"--config.{hparams.POPULATION}.{key}={format_override(values)}")
    command = shlex.join(command)
    populations.append({"pack": k, "workdir": workdir, "command": command,
                        "indices": [e["index"] for e in chunk]})
    for j, entry in enumerate(chunk):
      packed.append(dict(entry, workdir=os.path.join(workdir, str(j)), command=command, pack=k))
  packed.sort(key=lambda entry: entry["index"])
  return packed, populations


def with_overrides(config, overrides: dict[str, Any]):
  """config with the dotted overrides set (a sequence becomes a tuple)."""
  for key, value in overrides.items():
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
      node = node[name]
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def check_runs(config_file: str, config_arg: Optional[str],
               entries: Sequence[dict[str, Any]]) -> None:
  """Refuses a sweep any of whose runs the trainer would reject at once.

  Each run's config (get_config(config_arg) plus its overrides) goes through
  the trainer's value checks (its method's check_config among them), without
  the devices or the FID weights, which only the machine of a run has.

  Raises:
    cli.UserError naming the first bad run's index and the reason.
  """
  # Imported here: expanding a sweep needs no JAX.
  from wae_jax import config_checks  # pylint: disable=g-import-not-at-top
  module = load_config_module(config_file)
  for entry in entries:
    try:
      config = with_overrides(module.get_config(config_arg), entry["overrides"])
      config_checks.check_values(config, weights=False)
    except (ValueError, KeyError, AttributeError) as error:
      raise cli.UserError(
          f"Run {entry['index']} of {config_file} would fail at once ({error}); "
          "fix the search space or the base config before launching.") from error


def read_manifest(root: str) -> list[dict[str, Any]]:
  return runs.read_jsonl(os.path.join(root, MANIFEST_FILE))


def _jsonable(overrides: dict[str, Any]) -> Any:
  return json.loads(json.dumps(overrides))


def write_manifest(root: str, entries: Sequence[dict[str, Any]], description: dict[str, Any]
                   ) -> None:
  """Writes manifest.jsonl and sweep.json, refusing to change an existing sweep's runs.

  A relaunch with more runs extends the manifest (run i is the same for any
  num_runs); different overrides for an existing index mean a different
  sweep, which needs its own root.
  """
  os.makedirs(root, exist_ok=True)
  old_entries = read_manifest(root)
  for old in old_entries:
    index = old["index"]
    if index < len(entries) and _jsonable(entries[index]["overrides"]) != old["overrides"]:
      raise cli.UserError(
          f"{root} already holds a different sweep (run {index} was {old['overrides']}, "
          f"now {_jsonable(entries[index]['overrides'])}); use a new --root for a new sweep.")
    if index < len(entries) and entries[index]["workdir"] != old["workdir"]:
      before = (runs.read_json(os.path.join(root, SWEEP_FILE)) or {}).get("pack", 1)
      raise cli.UserError(
          f"{root} was launched with --pack={before} (run {index} trains in "
          f"{old['workdir']}, now in {entries[index]['workdir']}); launch it with "
          f"--pack={before} again.")
  path = os.path.join(root, MANIFEST_FILE)
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    for entry in entries:
      f.write(json.dumps(entry) + "\n")
    # Keep the lines of a longer earlier launch so none of its runs is orphaned.
    for old in old_entries[len(entries):]:
      f.write(json.dumps(old) + "\n")
  os.replace(tmp, path)
  runs.write_json_atomic(os.path.join(root, SWEEP_FILE), description)


def launch(config: str, root: str, num_runs: Optional[int] = None, engine: str = "local",
           max_parallel: int = 1, retries: int = 2, address: Optional[str] = None,
           config_arg: Optional[str] = None, seed: int = 0, python: str = sys.executable,
           trainer: str = "wae_jax.main", engine_options: Optional[dict[str, Any]] = None,
           compilation_cache_dir: Optional[str] = None, log=print,
           pack_size: int = 1) -> list[runs.RunResult]:
  """Expands the sweep, writes the manifest and runs every unfinished index.

  Runs share a JAX persistent compilation cache (compilation_cache_dir,
  default <root>/jax_cache; "" for none; an existing JAX_COMPILATION_CACHE_DIR
  in the environment wins): the runs of one configuration compile the same
  programs, so all but the first skip most of their compile time.

  pack_size > 1 trains runs that differ only in scalar hyper-parameters as
  populations of at most that many members (`pack`); each population is one
  trainer, and the RunResults are then per population (index = its pack k).

  Returns:
    The RunResults of the runs started now (already finished runs are not
    started and have no result).
  """
  config_file, arg_in_path = split_config_path(config)
  if config_arg and arg_in_path and config_arg != arg_in_path:
    raise cli.UserError(f"--config has argument {arg_in_path!r} but --config_arg is "
                     f"{config_arg!r}; give it once.")
  config_arg = config_arg or arg_in_path
  if retries < 0:
    raise cli.UserError(f"retries is {retries}; use 0 or more.")
  if pack_size < 1:
    raise cli.UserError(f"--pack is {pack_size}; use 1 (one trainer per run) or more.")
  module = load_config_module(config_file)
  num_runs = resolve_num_runs(module, config_file, num_runs)
  options = dict(engine_options or {})
  options["max_parallel"] = max_parallel
  if engine == "ray":
    options["address"] = address
  elif address:
    raise cli.UserError("--address is for the ray engine; drop it or use --engine=ray.")
  # Built first so that bad engine options fail before anything is written.
  runner = engines.get_engine(engine, **options)
  root = cli.check_workdir_writable(root, "--root")
  entries = expand(root, config_file, config_arg, num_runs, seed, python, trainer)
  check_runs(config_file, config_arg, entries)
  description = {
      "config": os.path.abspath(config_file), "config_arg": config_arg, "seed": seed,
      "num_runs": num_runs, "trainer": trainer, "engine": engine, "launched": time.time()}
  if pack_size > 1:
    entries, populations = pack(entries, pack_size, root, config_file, config_arg, python,
                                trainer)
    description["pack"] = pack_size
  write_manifest(root, entries, description)

  unfinished = [e for e in entries if not runs.is_finished(e["workdir"])]
  log(f"sweep {root}: {num_runs} runs, {num_runs - len(unfinished)} finished, "
      f"{len(unfinished)} to run on the {engine} engine"
      + (f" in populations of at most {pack_size}" if pack_size > 1 else ""))
  # What a launcher runs: a run, or with --pack a population ("index" = its pack).
  todo = ([{"index": p["pack"], "workdir": p["workdir"], "command": p["command"]}
           for p in populations if not runs.is_finished(p["workdir"])]
          if pack_size > 1 else unfinished)
  if not todo:
    return []
  if compilation_cache_dir is None:
    compilation_cache_dir = os.path.join(root, "jax_cache")
  extra_env = ()
  if compilation_cache_dir and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    extra_env = (("JAX_COMPILATION_CACHE_DIR", os.path.abspath(compilation_cache_dir)),)
  specs = [runs.RunSpec(e["index"], e["workdir"], tuple(shlex.split(e["command"])), PROJECT_ROOT,
                        extra_env) for e in todo]

  what = "population" if pack_size > 1 else "run"

  def progress(result, done, total):
    log(f"[{done}/{total}] {what} {result.index}: {result.state}"
        + (f" after {result.attempts} attempt(s)" if result.attempts else ""))

  results = runner.run(specs, retries, progress)
  workdirs = {e["index"]: e["workdir"] for e in todo}
  results = [_wait_for_other_launcher(r, workdirs[r.index], log) if r.state == runs.BUSY else r
             for r in results]
  for result in sorted(results, key=lambda r: r.index):
    if result.state == runs.FAILED:
      log(f"{what} {result.index} failed after {result.attempts} attempt(s); "
          f"log tail:\n{result.log_tail}")
    elif result.state == runs.BUSY:
      log(f"run {result.index} ended unfinished under another launcher; run the sweep again.")
  counts = {}
  for result in results:
    counts[result.state] = counts.get(result.state, 0) + 1
  log("done: " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
  return results


def _wait_for_other_launcher(result: runs.RunResult, workdir: str, log,
                             poll_seconds: float = 0.5) -> runs.RunResult:
  """A run another launcher holds: waits until it lets go, then reports the run
  ALREADY_FINISHED when it finished there (each run ran once), else BUSY."""
  log(f"run {result.index} is running under another launcher; waiting for it.")
  while runs.is_locked(workdir):
    time.sleep(poll_seconds)
  if runs.is_finished(workdir):
    return runs.RunResult(result.index, runs.ALREADY_FINISHED)
  return result


def main(argv: Optional[Sequence[str]] = None) -> int:
  """The command line; returns the exit status (2: a bad input, one line on stderr)."""
  return cli.run(_main, argv)


def _main(argv: Sequence[str]) -> int:
  parser = cli.ArgumentParser(prog="python -m launch.sweep", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="configs/bigwae.py[:arg]")
  parser.add_argument("--root", required=True, help="the sweep's directory")
  parser.add_argument("--num_runs", type=int, default=None,
                      help="runs 0..N-1 (default: the config's NUM_RUNS)")
  parser.add_argument("--engine", choices=engines.ENGINES, default="local")
  parser.add_argument("--max_parallel", type=int, default=None,
                      help="runs at the same time (local default 1; ray default: all that fit)")
  parser.add_argument("--retries", type=int, default=2)
  parser.add_argument("--address", default=None, help="Ray cluster address (ray engine)")
  parser.add_argument("--config_arg", default=None, help="argument of get_config/sweep")
  parser.add_argument("--seed", type=int, default=0, help="the sweep's seed")
  parser.add_argument("--python", default=sys.executable, help="interpreter of the runs")
  parser.add_argument("--trainer", default="wae_jax.main", help="module run with python -m")
  parser.add_argument("--platform", choices=("auto", "cpu", "gpu", "tpu"), default="auto",
                      help="local engine: which devices to split between workers")
  parser.add_argument("--cpu_devices_per_run", type=int, default=None,
                      help="local engine on CPU: XLA host devices each run sees")
  parser.add_argument("--cpus_per_run", type=float, default=1.0, help="ray engine")
  parser.add_argument("--gpus_per_run", type=float, default=0.0, help="ray engine")
  parser.add_argument("--tpus_per_run", type=float, default=0.0, help="ray engine (TPU chips)")
  parser.add_argument("--num_cpus", type=int, default=None,
                      help="ray engine without --address: CPUs of the local Ray")
  parser.add_argument("--compilation_cache_dir", default=None,
                      help="JAX compilation cache shared by the runs (default <root>/jax_cache; "
                      "'' for none)")
  parser.add_argument("--pack", type=int, default=1,
                      help="train runs that differ only in scalar hyper-parameters as "
                      "populations of at most this many members, one trainer each")
  parser.add_argument("--dry_run", action="store_true",
                      help="print the commands; write and run nothing")
  args = parser.parse_args(argv)
  if args.engine == "local":
    engine_options = dict(platform=args.platform, cpu_devices_per_run=args.cpu_devices_per_run)
    max_parallel = 1 if args.max_parallel is None else args.max_parallel
  else:
    engine_options = dict(cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                          tpus_per_run=args.tpus_per_run, num_cpus=args.num_cpus)
    max_parallel = args.max_parallel
  if args.dry_run:
    config_file, arg_in_path = split_config_path(args.config)
    module = load_config_module(config_file)
    num_runs = resolve_num_runs(module, config_file, args.num_runs)
    config_arg = args.config_arg or arg_in_path
    entries = expand(args.root, config_file, config_arg, num_runs, args.seed, args.python,
                     args.trainer)
    check_runs(config_file, config_arg, entries)
    if args.pack > 1:
      entries = pack(entries, args.pack, args.root, config_file, config_arg, args.python,
                     args.trainer)[1]
    for entry in entries:
      print(entry["command"])
    return 0
  results = launch(args.config, args.root, args.num_runs, args.engine, max_parallel,
                   args.retries, args.address, args.config_arg, args.seed, args.python,
                   args.trainer, engine_options, args.compilation_cache_dir,
                   pack_size=args.pack)
  ok = all(r.state in (runs.FINISHED, runs.ALREADY_FINISHED) for r in results)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
