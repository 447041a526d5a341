"""Image-space sliced Wasserstein distance, by the protocol of Karras et al.

"Progressive Growing of GANs" (2018), metrics/sliced_wasserstein.py, as MoCA
uses it to compare convergence:
  * a Laplacian pyramid of each image (5x5 binomial filter, mirror borders, as
    cv2.pyrDown / pyrUp) with one level per resolution from the image size
    down to 16x16 (levels: H, H/2, ..., >= 16);
  * per level, 128 random 7x7 neighbourhoods per image, all channels
    (descriptors of 7*7*C values);
  * the descriptors of each set normalised per channel to zero mean and unit
    standard deviation (over neighbourhoods and positions);
  * 4 repeats of 128 random unit directions: project, sort, mean |difference|;
    the mean over repeats is the level's SWD;
  * every level times 1e3, and their mean ("SWDx1e3_avg").
Images smaller than 16x16 (the 8x8 digits) get a single level, the image
itself. The two sets must hold the same number of images; the larger one is
subsampled. Randomness comes from `seed`, so a result is reproducible.
One deliberate difference: both sets share the neighbourhood positions
(common random numbers; see below), so SWD(A, A) = 0 exactly.
Memory: 128 * N * 49 * C float32 per level and set (N = 4096, C = 3: 300 MB).
"""

from typing import Dict, List

import numpy as np

NEIGHBOURHOOD_SIZE = 7
NEIGHBOURHOODS_PER_IMAGE = 128
DIRECTION_REPEATS = 4
DIRECTIONS_PER_REPEAT = 128
MIN_RESOLUTION = 16

_GAUSSIAN_FILTER = np.float32([[1, 4, 6, 4, 1], [4, 16, 24, 16, 4],
                               [6, 24, 36, 24, 6], [4, 16, 24, 16, 4],
                               [1, 4, 6, 4, 1]]) / 256.0


def pyramid_resolutions(size: int) -> List[int]:
  """[size, size/2, ...] down to MIN_RESOLUTION; [size] if size < 16."""
  resolutions = []
  while size >= MIN_RESOLUTION:
    resolutions.append(size)
    size //= 2
  return resolutions or [size]


def _pyr_down(images: np.ndarray) -> np.ndarray:
  """(N, C, H, W) -> (N, C, H/2, W/2), as cv2.pyrDown."""
  import scipy.ndimage  # pylint: disable=g-import-not-at-top  # 0.2 s; only the image SWD needs it
  blurred = scipy.ndimage.convolve(
      images, _GAUSSIAN_FILTER[np.newaxis, np.newaxis], mode="mirror")
  return blurred[:, :, ::2, ::2]


def _pyr_up(images: np.ndarray) -> np.ndarray:
  """(N, C, H, W) -> (N, C, 2H, 2W), as cv2.pyrUp."""
  import scipy.ndimage  # pylint: disable=g-import-not-at-top
  n, c, h, w = images.shape
  upsampled = np.zeros((n, c, 2 * h, 2 * w), images.dtype)
  upsampled[:, :, ::2, ::2] = images
  return scipy.ndimage.convolve(
      upsampled, _GAUSSIAN_FILTER[np.newaxis, np.newaxis] * 4.0, mode="mirror")


def laplacian_pyramid(images: np.ndarray, num_levels: int) -> List[np.ndarray]:
  """(N, C, H, W) -> [band-pass levels ..., low-pass residual], float32."""
  pyramid = [np.array(images, np.float32)]  # a copy: levels are changed in place
  for _ in range(1, num_levels):
    pyramid.append(_pyr_down(pyramid[-1]))
    pyramid[-2] -= _pyr_up(pyramid[-1])
  return pyramid


def _descriptors(level: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
  """Random 7x7 neighbourhoods of an (N, C, H, W) level -> (N*128, C, 7, 7)."""
  n, c, h, w = level.shape
  count = NEIGHBOURHOODS_PER_IMAGE * n
  half = NEIGHBOURHOOD_SIZE // 2
  nhood, chan, x, y = np.ogrid[0:count, 0:c, -half:half + 1, -half:half + 1]
  image = nhood // NEIGHBOURHOODS_PER_IMAGE
  x = x + rng.randint(half, w - half, size=(count, 1, 1, 1))
  y = y + rng.randint(half, h - half, size=(count, 1, 1, 1))
  return level.reshape(-1)[((image * c + chan) * h + y) * w + x]


def _normalise(descriptors: np.ndarray) -> np.ndarray:
  """Per-channel zero mean, unit std -> (count, C*7*7)."""
  descriptors = descriptors - descriptors.mean(axis=(0, 2, 3), keepdims=True)
  std = descriptors.std(axis=(0, 2, 3), keepdims=True)
  descriptors = descriptors / np.maximum(std, 1e-12)
  return descriptors.reshape(descriptors.shape[0], -1)


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray,
                        rng: np.random.RandomState) -> float:
  results = []
  for _ in range(DIRECTION_REPEATS):
    directions = rng.randn(a.shape[1], DIRECTIONS_PER_REPEAT)
    directions /= np.sqrt(np.sum(directions ** 2, axis=0, keepdims=True))
    directions = directions.astype(np.float32)
    projected_a = np.sort(a @ directions, axis=0)
    projected_b = np.sort(b @ directions, axis=0)
    results.append(np.mean(np.abs(projected_a - projected_b)))
  return float(np.mean(results))


def sliced_wasserstein_images(images1: np.ndarray, images2: np.ndarray,
                              seed: int = 0) -> Dict[str, float]:
  """Karras et al.'s SWD between two image sets.

  Args:
    images1, images2: (N_i, H, W, C) in [0, 1], same H = W >= 7 and C.
    seed: seed of the neighbourhood and direction draws.

  Returns:
    {'swd_<res>': SWD x 1e3 at each pyramid level, 'swd_avg': their mean}.
  """
  images1, images2 = np.asarray(images1), np.asarray(images2)
  if (images1.ndim != 4 or images1.shape[1:] != images2.shape[1:]
      or images1.shape[1] != images1.shape[2]
      or images1.shape[1] < NEIGHBOURHOOD_SIZE):
    raise ValueError(
        f"sliced_wasserstein_images needs two (N, H, H, C) sets with the same "
        f"H >= {NEIGHBOURHOOD_SIZE} and C, got {images1.shape} and "
        f"{images2.shape}.")
  rng = np.random.RandomState(seed)
  count = min(images1.shape[0], images2.shape[0])
  if count < 1:
    raise ValueError("sliced_wasserstein_images needs at least one image per set.")
  images1 = images1[np.sort(rng.choice(images1.shape[0], count, replace=False))]
  images2 = images2[np.sort(rng.choice(images2.shape[0], count, replace=False))]
  resolutions = pyramid_resolutions(images1.shape[1])
  # ProGAN works on uint8-range NCHW images; the normalisation makes the
  # scale irrelevant, the layout matters for the indexing.
  pyramids = [laplacian_pyramid(255.0 * np.transpose(x, (0, 3, 1, 2)),
                                len(resolutions)) for x in (images1, images2)]
  metrics = {}
  for resolution, level1, level2 in zip(resolutions, *pyramids):
    # Common random numbers: both sets use the same neighbourhood positions.
    # Each set's descriptors are still uniform over positions (as in ProGAN),
    # but the distance of a set to itself is exactly 0 and comparisons
    # between checkpoints are less noisy.
    position_seed = rng.randint(2**31)
    descriptors1 = _normalise(
        _descriptors(level1, np.random.RandomState(position_seed)))
    descriptors2 = _normalise(
        _descriptors(level2, np.random.RandomState(position_seed)))
    metrics[f"swd_{resolution}"] = 1e3 * _sliced_wasserstein(
        descriptors1, descriptors2, rng)
  metrics["swd_avg"] = float(np.mean(list(metrics.values())))
  return metrics
