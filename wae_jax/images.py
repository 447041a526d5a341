"""Image grids as PNG files: samples, reconstructions, interpolations.

Every grid is a uint8 array (height, width, 3) built from images in [0, 1].
Small images (the 8x8 digits) are enlarged by an integer nearest-neighbour
factor so that each tile is at least `MIN_TILE` pixels wide and the PNG is
readable in an image viewer.
"""

import os
from typing import Optional

import numpy as np
from PIL import Image

MIN_TILE = 32
PAD = 2  # pixels between tiles
PAD_VALUE = 0.5  # grey, so black and white borders of images stay visible


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


def save_png(path: str, grid: np.ndarray) -> None:
  """Writes a uint8 (H, W, 3) grid as PNG, atomically."""
  directory = os.path.dirname(path)
  if directory:
    os.makedirs(directory, exist_ok=True)
  tmp_path = f"{path}.tmp-{os.getpid()}.png"
  Image.fromarray(grid).save(tmp_path, format="PNG")
  os.replace(tmp_path, path)


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
