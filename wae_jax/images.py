"""Image grids as PNG files: samples, reconstructions, interpolations.

Every grid is a uint8 array (height, width, 3) built from images in [0, 1].
Small images (the 8x8 digits) are enlarged by an integer nearest-neighbour
factor so that each tile is at least `MIN_TILE` pixels wide and the PNG is
readable in an image viewer. The trainer (`ImageGrids`, every evaluation) and
wae_jax.sample (`kind_grid`) draw the same three kinds the same way.
"""

import os
from typing import Optional

import numpy as np
from PIL import Image

KINDS = ("samples", "reconstructions", "interpolations")
MIN_TILE = 32
PAD = 2  # pixels between tiles
PAD_VALUE = 0.5  # grey, so black and white borders of images stay visible
INTERPOLATION_PAIRS = 8   # rows of the trainer's interpolation grid
INTERPOLATION_STEPS = 10  # decoded points from one code to the other, ends included


def upscale_factor(height: int) -> int:
  """Integer factor enlarging a tile to at least MIN_TILE pixels."""
  return max(1, -(-MIN_TILE // int(height)))


def grid_size(num_rows: int, num_cols: int, image_height: int, image_width: int) -> tuple:
  """(height, width) in pixels of the grid `make_grid` builds."""
  factor = upscale_factor(image_height)
  tile_h, tile_w = image_height * factor, image_width * factor
  return (num_rows * tile_h + (num_rows + 1) * PAD,
          num_cols * tile_w + (num_cols + 1) * PAD)


def make_grid(images: np.ndarray, num_cols: int) -> np.ndarray:
  """Tiles images row by row into one picture.

  Args:
    images: (N, H, W, C) floats in [0, 1], C in {1, 3}; missing tiles of the
      last row stay grey.
    num_cols: tiles per row.

  Returns:
    uint8 (rows * H' + pad, num_cols * W' + pad, 3) where H', W' are the
    enlarged tile sizes (see `grid_size`).
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be (N, H, W, 1 or 3), got shape {images.shape}.")
  num, height, width, _ = images.shape
  if images.shape[-1] == 1:
    images = np.repeat(images, 3, axis=-1)
  factor = upscale_factor(height)
  images = images.repeat(factor, axis=1).repeat(factor, axis=2)
  tile_h, tile_w = height * factor, width * factor
  num_rows = max(1, -(-num // num_cols))
  out_h, out_w = grid_size(num_rows, num_cols, height, width)
  grid = np.full((out_h, out_w, 3), PAD_VALUE, np.float32)
  for index in range(num):
    row, col = divmod(index, num_cols)
    top = PAD + row * (tile_h + PAD)
    left = PAD + col * (tile_w + PAD)
    grid[top:top + tile_h, left:left + tile_w] = images[index]
  return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def samples_grid(samples: np.ndarray) -> np.ndarray:
  """Prior samples (N, H, W, C) in a near-square grid."""
  num_cols = int(np.ceil(np.sqrt(len(samples))))
  return make_grid(samples, num_cols)


def reconstructions_grid(originals: np.ndarray, reconstructions: np.ndarray,
                         pairs_per_row: int = 8) -> np.ndarray:
  """Each original immediately left of its reconstruction.

  Args:
    originals: (N, H, W, C) test images.
    reconstructions: (N, H, W, C) their reconstructions.
    pairs_per_row: original/reconstruction pairs per row.
  """
  originals = np.asarray(originals)
  reconstructions = np.asarray(reconstructions)
  if originals.shape != reconstructions.shape:
    raise ValueError(
        f"originals {originals.shape} and reconstructions {reconstructions.shape} differ in shape.")
  interleaved = np.stack([originals, reconstructions], axis=1)
  interleaved = interleaved.reshape((-1,) + originals.shape[1:])
  return make_grid(interleaved, 2 * pairs_per_row)


def interpolations_grid(interpolations: np.ndarray) -> np.ndarray:
  """One row per pair: (B, num_steps, H, W, C) -> B rows of num_steps tiles."""
  interpolations = np.asarray(interpolations)
  num_pairs, num_steps = interpolations.shape[:2]
  return make_grid(interpolations.reshape((num_pairs * num_steps,) + interpolations.shape[2:]),
                   num_steps)


def kind_grid(arrays: dict) -> np.ndarray:
  """The grid of one kind's arrays: {'main': kind, ...} with 'samples' (N,H,W,C);
  'images' and 'reconstructions' (N,H,W,C); or 'interpolations' (P,S,H,W,C)."""
  kind = arrays["main"]
  if kind == "samples":
    return samples_grid(arrays["samples"])
  if kind == "reconstructions":
    return reconstructions_grid(arrays["images"], arrays["reconstructions"])
  if kind == "interpolations":
    return interpolations_grid(arrays["interpolations"])
  raise ValueError(f"Unknown grid kind {kind!r}; use one of {KINDS}.")


class ImageGrids:
  """The grids of a state at every evaluation of a run.

  The same test images and prior draws at every evaluation, so grids of
  successive steps are comparable.
  """

  def __init__(self, method, config, source):
    """method: a wae_jax.methods.Method; source: the run's data source."""
    import jax  # pylint: disable=g-import-not-at-top
    from wae_jax import compiled  # pylint: disable=g-import-not-at-top
    self._reconstruct = compiled.jitted(method.reconstruct)
    self._sample = compiled.jitted(method.sample, (2,))
    self._interpolate = compiled.jitted(method.interpolate, (3,))
    num_images = int(config.num_eval_images)
    test_images = next(iter(source.test_batches(max(num_images, 2 * INTERPOLATION_PAIRS))))
    test_images = test_images["image"]
    self.eval_images = test_images[:num_images]
    pairs = min(INTERPOLATION_PAIRS, len(test_images) // 2)
    self.pairs_a = test_images[:pairs]
    self.pairs_b = test_images[pairs:2 * pairs]
    self.sample_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x5A3)

  def __call__(self, state) -> dict:
    """kind -> uint8 (H, W, 3) grid."""
    arrays = {
        "samples": {"main": "samples", "samples": np.asarray(
            self._sample(state, self.sample_key, len(self.eval_images)))},
        "reconstructions": {"main": "reconstructions", "images": self.eval_images,
                            "reconstructions": np.asarray(
                                self._reconstruct(state, self.eval_images))},
        "interpolations": {"main": "interpolations", "interpolations": np.asarray(
            self._interpolate(state, self.pairs_a, self.pairs_b, INTERPOLATION_STEPS))},
    }
    return {kind: kind_grid(arrays[kind]) for kind in KINDS}


def save_png(path: str, grid: np.ndarray) -> None:
  """Writes a uint8 (H, W, 3) grid as PNG, atomically."""
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  tmp_path = f"{path}{PARTIAL_MARKER}{os.getpid()}.png"
  try:
    Image.fromarray(grid).save(tmp_path, format="PNG")
    os.replace(tmp_path, path)
  except OSError as error:
    if error.filename is None:  # PIL's write errors name no file.
      raise OSError(error.errno, error.strerror, path) from error
    raise
  finally:
    if os.path.exists(tmp_path):  # A failed write (a full disk) leaves no half file.
      os.remove(tmp_path)


# save_png's temporary names: <name>.png.tmp-<pid>.png.
PARTIAL_MARKER = ".tmp-"


def remove_partial_files(image_dir: str) -> list[str]:
  """Deletes the half-written PNGs a killed writer left in `image_dir`; returns them.

  Call it only while holding the workdir (the trainer's lock): then no writer is alive.
  """
  if not os.path.isdir(image_dir):
    return []
  removed = [os.path.join(image_dir, name) for name in sorted(os.listdir(image_dir))
             if PARTIAL_MARKER in name and name.endswith(".png")]
  for path in removed:
    os.remove(path)
  return removed


def write_grids(image_dir: str, step: Optional[int], grids: dict, summary_writer=None) -> dict:
  """Saves each grid as <image_dir>/<name>_<step>.png and <name>_latest.png.

  Args:
    image_dir: folder for the PNGs.
    step: the training step (None: only the <name>.png file is written).
    grids: name -> uint8 (H, W, 3).
    summary_writer: optional `metrics_io.MetricWriter`; grids also go to
      TensorBoard under images/<name>.

  Returns:
    name -> path of the per-step PNG.
  """
  paths = {}
  for name, grid in grids.items():
    if step is None:
      path = os.path.join(image_dir, f"{name}.png")
      save_png(path, grid)
    else:
      path = os.path.join(image_dir, f"{name}_{step:08d}.png")
      save_png(path, grid)
      save_png(os.path.join(image_dir, f"{name}_latest.png"), grid)
      if summary_writer is not None:
        summary_writer.write_image(f"images/{name}", grid, step)
    paths[name] = path
  return paths
