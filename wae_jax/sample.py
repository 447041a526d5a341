"""Images and arrays from a trained run without training.

  python -m wae_jax.sample --workdir=DIR [--kind=samples|reconstructions|interpolations]
      [--num=64] [--out=FILE.png|FILE.npz|FILE.npy] [--step=N] [--seed=0]

Restores the latest complete checkpoint of DIR (or --step). The extension of
--out chooses what is written (the default is the PNG
<workdir>/images/sample_<kind>_<step>.png, or .npz when the run's data are not
pictures, e.g. 'synthetic' or 'gmm2d' vectors):

  .png  one grid: decoded prior samples, test images beside their
        reconstructions, or rows of latent interpolations between test images.
  .npz  every array of the kind, float32, images NHWC in [0, 1]:
          samples          samples (N,H,W,C), codes (N,d): the prior draws decoded
                           (for methods that decode their prior's draws)
          reconstructions  images, reconstructions (N,H,W,C), codes (N,d): the
                           encoder's codes of the first N test images, labels (N,)
                           when the dataset has them
          interpolations   interpolations (P,S,H,W,C): P pairs of test images,
                           S steps from the first to the second; images_a,
                           images_b (P,H,W,C) and their codes codes_a, codes_b
  .npy  the kind's main array alone (samples, reconstructions or interpolations).

For interpolations --num counts images: P = max(1, num // S) pairs, S =
images.INTERPOLATION_STEPS (10).
"""

import os

import numpy as np
from absl import flags

from wae_jax import cli
from wae_jax import data
from wae_jax import run_files
from wae_jax.images import INTERPOLATION_STEPS, KINDS

FORMATS = (".png", ".npz", ".npy")
CHUNK = 1000  # images decoded per call, so --num=50000 fits in memory

flags.DEFINE_string("workdir", None, "The run's workdir.")
flags.DEFINE_integer("num", 64, "Samples, reconstructed test images, or interpolation images.")
flags.DEFINE_string("out", None, "Output .png, .npz or .npy; default "
                    "<workdir>/images/sample_<kind>_<step>.png.")
flags.DEFINE_enum("kind", "samples", KINDS, "What to draw.")
flags.DEFINE_integer("step", None, "Checkpoint step; default the latest complete one.")
flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def output_format(out: str) -> str:
  """'.png', '.npz' or '.npy' from the output's extension; else UserError."""
  if os.path.isdir(out):
    raise cli.UserError(f"--out={out} is a directory; pass a file name such as "
                        f"{os.path.join(out, 'samples.npz')}.")
  parent = os.path.dirname(os.path.abspath(out))
  while not os.path.lexists(parent):  # The folder it would create: its first existing ancestor.
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise cli.UserError(f"--out={out} lies under {parent}, which is a file; choose a path "
                        "in a directory.")
  extension = os.path.splitext(out)[1].lower()
  if extension not in FORMATS:
    raise cli.UserError(
        f"--out={out} has extension {extension or '(none)'!r}; use .png for an image grid, "
        ".npz for all arrays or .npy for the main array.")
  return extension


def check_request(kind: str, num: int, out: str = None) -> None:
  """The checks that need no checkpoint: fail before restoring anything."""
  if kind not in KINDS:
    raise cli.UserError(f"--kind={kind!r} is not one of {', '.join(KINDS)}; pick one of them.")
  if num <= 0:
    raise cli.UserError(f"--num must be positive, got {num}.")
  if out is not None:
    output_format(out)


def _in_chunks(function, inputs):
  """function applied to `inputs` CHUNK rows at a time, concatenated (numpy)."""
  return np.concatenate([np.asarray(function(inputs[i:i + CHUNK]))
                         for i in range(0, len(inputs), CHUNK)])


def _test_examples(source, num: int):
  """(images, labels or None) of the first `num` test examples."""
  if num > source.num_test_examples:
    raise cli.UserError(f"--num={num} is more than the {source.num_test_examples} test images "
                        f"of {source.name}; use --num<={source.num_test_examples}.")
  batch = next(iter(source.test_batches(num)))
  labels = batch.get("label")
  return np.asarray(batch["image"]), (None if labels is None else np.asarray(labels))


def sample_arrays(state, method, config, kind: str, num: int, seed: int = 0) -> dict:
  """name -> numpy array of `kind` (see the module docstring); 'main' names the main one."""
  import jax  # pylint: disable=g-import-not-at-top
  from wae_jax.methods.shared import autoencoder  # pylint: disable=g-import-not-at-top

  encode = jax.jit(lambda images: method.encode(state, images))
  decode = jax.jit(lambda z: method.decode(state, z))
  key = jax.random.PRNGKey(seed)
  if kind == "samples" and method.sample is autoencoder.sample:
    # The draws autoencoder.sample decodes, kept so that they can be exported.
    codes = np.asarray(autoencoder.sample_prior(state, key, num))
    return {"main": "samples", "samples": _in_chunks(decode, codes), "codes": codes}
  if kind == "samples":  # A method with its own sampler: images only.
    return {"main": "samples", "samples": np.asarray(method.sample(state, key, num))}

  from wae_jax import data  # pylint: disable=g-import-not-at-top
  source = data.build(config)
  if kind == "reconstructions":
    images, labels = _test_examples(source, num)
    codes = _in_chunks(encode, images)
    arrays = {"main": "reconstructions", "images": images, "codes": codes,
              "reconstructions": _in_chunks(decode, codes)}
    if labels is not None:
      arrays["labels"] = labels
    return arrays

  pairs = max(1, num // INTERPOLATION_STEPS)
  images, _ = _test_examples(source, 2 * pairs)
  images_a, images_b = images[:pairs], images[pairs:]
  interpolate = jax.jit(lambda a, b: method.interpolate(state, a, b, INTERPOLATION_STEPS))
  return {"main": "interpolations",
          "interpolations": np.asarray(interpolate(images_a, images_b)),
          "images_a": images_a, "images_b": images_b,
          "codes_a": np.asarray(encode(images_a)), "codes_b": np.asarray(encode(images_b))}


def save_arrays(out: str, arrays: dict) -> None:
  """Writes `out` (.png, .npz or .npy, see the module docstring) atomically."""
  extension = output_format(out)
  image_shape = arrays[arrays["main"]].shape[-3:]
  if extension == ".png" and not data.is_image_shape(image_shape):
    raise cli.UserError(
        f"--out={out} asks for a PNG grid, but this run's data are "
        f"{'x'.join(map(str, image_shape))} examples, not pictures; use --out=<file>.npz or .npy.")
  directory = os.path.dirname(os.path.abspath(out))
  os.makedirs(directory, exist_ok=True)
  if extension == ".png":
    from wae_jax import images  # pylint: disable=g-import-not-at-top
    images.save_png(out, images.kind_grid(arrays))
    return
  tmp_path = f"{out}.tmp-{os.getpid()}"
  with open(tmp_path, "wb") as f:  # A file object: numpy would append .npz to a name.
    if extension == ".npz":
      np.savez(f, **{name: value for name, value in arrays.items() if name != "main"})
    else:
      np.save(f, arrays[arrays["main"]])
  os.replace(tmp_path, out)


def write_samples(workdir: str, kind: str = "samples", num: int = 64, out: str = None,
                  step: int = None, seed: int = 0) -> str:
  """Writes samples, reconstructions or interpolations of a checkpoint; returns the path."""
  check_request(kind, num, out)
  from wae_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from wae_jax import methods  # pylint: disable=g-import-not-at-top
  workdir = cli.check_run_workdir(workdir, checkpoint.CONFIG_FILE)
  config = checkpoint.load_config(workdir)
  steps = checkpoint.all_steps(workdir)
  if not steps:
    raise cli.UserError(f"{workdir} has no complete checkpoint; train first "
                        f"(python -m wae_jax.main --workdir={workdir} ...).")
  if step is not None and step not in steps:
    raise cli.UserError(f"--step={step} has no checkpoint in {workdir}; use one of "
                        f"{', '.join(map(str, steps))}.")
  step = max(steps) if step is None else step
  state = checkpoint.restore_state(workdir, config, step)
  arrays = sample_arrays(state, methods.get(config.method), config, kind, num, seed)
  if out is None:
    is_image = data.is_image_shape(arrays[arrays["main"]].shape[-3:])
    out = os.path.join(workdir, run_files.IMAGE_DIR,
                       f"sample_{kind}_{step:08d}.{'png' if is_image else 'npz'}")
  save_arrays(out, arrays)
  return out


def main(argv):
  del argv  # cli.run_absl refuses extra arguments.
  print(write_samples(FLAGS.workdir, FLAGS.kind, FLAGS.num, FLAGS.out, FLAGS.step, FLAGS.seed))


if __name__ == "__main__":
  cli.run_absl(main)
