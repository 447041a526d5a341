"""Images from a trained run without training.

  python -m wae_jax.sample --workdir=DIR [--num=64] [--out=FILE.png]
      [--kind=samples|reconstructions|interpolations] [--step=N] [--seed=0]

Restores the latest complete checkpoint of DIR (or --step) and writes one PNG
grid: decoded prior samples, test images beside their reconstructions, or rows
of latent interpolations between pairs of test images. The default output is
<workdir>/images/sample_<kind>_<step>.png.
"""

import os

from absl import app
from absl import flags

KINDS = ("samples", "reconstructions", "interpolations")

flags.DEFINE_string("workdir", None, "The run's workdir.")
flags.DEFINE_integer("num", 64, "Samples, reconstructed test images, or interpolation pairs x steps.")
flags.DEFINE_string("out", None, "Output PNG; default <workdir>/images/sample_<kind>_<step>.png.")
flags.DEFINE_enum("kind", "samples", KINDS, "What to draw.")
flags.DEFINE_integer("step", None, "Checkpoint step; default the latest complete one.")
flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

INTERPOLATION_STEPS = 8


def write_sample_grid(workdir: str, kind: str = "samples", num: int = 64,
                      out: str = None, step: int = None, seed: int = 0) -> str:
  """Writes one PNG grid from a checkpoint; returns its path."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from wae_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from wae_jax import images  # pylint: disable=g-import-not-at-top
  from wae_jax import methods  # pylint: disable=g-import-not-at-top

  if kind not in KINDS:
    raise ValueError(f"Unknown kind {kind!r}; use one of {', '.join(KINDS)}.")
  if num <= 0:
    raise ValueError(f"--num must be positive, got {num}.")
  config = checkpoint.load_config(workdir)
  steps = checkpoint.all_steps(workdir)
  if not steps:
    raise FileNotFoundError(f"No complete checkpoint in {workdir!r}; train first.")
  step = max(steps) if step is None else step
  state = checkpoint.restore_state(workdir, config, step)
  method = methods.get(config.method)

  if kind == "samples":
    pictures = np.asarray(method.sample(state, jax.random.PRNGKey(seed), num))
    grid = images.samples_grid(pictures)
  else:
    from wae_jax import data  # pylint: disable=g-import-not-at-top
    source = data.build(config)
    needed = num if kind == "reconstructions" else 2 * max(1, num // INTERPOLATION_STEPS)
    test_images = np.concatenate(
        [b["image"] for b in source.test_batches(needed)][:1])[:needed]
    if kind == "reconstructions":
      grid = images.reconstructions_grid(
          test_images, np.asarray(method.reconstruct(state, test_images)))
    else:
      pairs = len(test_images) // 2
      grid = images.interpolations_grid(np.asarray(method.interpolate(
          state, test_images[:pairs], test_images[pairs:2 * pairs], INTERPOLATION_STEPS)))

  if out is None:
    out = os.path.join(workdir, "images", f"sample_{kind}_{step:08d}.png")
  images.save_png(out, grid)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from wae_jax import metrics_io  # pylint: disable=g-import-not-at-top
  metrics_io.quiet_orbax_logging()
  path = write_sample_grid(FLAGS.workdir, FLAGS.kind, FLAGS.num, FLAGS.out, FLAGS.step,
                           FLAGS.seed)
  print(path)


if __name__ == "__main__":
  app.run(main)
