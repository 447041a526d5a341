"""Image sharpness as in the WAE paper (Tolstikhin et al. 2018, Table 1).

Greyscale the image, convolve it with the 3x3 Laplace filter
[[0, 1, 0], [1, -4, 1], [0, 1, 0]] ('valid' padding), take the variance of the
response over pixels, and average over images (the paper uses 1000 samples).
Blurry images have little high-frequency energy, hence a small value. Images
are in [0, 1]; RGB is greyscaled with tf.image.rgb_to_grayscale's ITU-R 601
weights (0.2989, 0.5870, 0.1140).
"""

import numpy as np

LAPLACE_FILTER = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float64)
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float64)
NUM_SHARPNESS_SAMPLES = 1000


def to_greyscale(images: np.ndarray) -> np.ndarray:
  """(N, H, W, 1 or 3) -> (N, H, W) float64."""
  images = np.asarray(images, np.float64)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(
        f"sharpness needs images of shape (N, H, W, 1 or 3), got {images.shape}.")
  if images.shape[-1] == 1:
    return images[..., 0]
  return images @ GREY_WEIGHTS


def sharpness_per_image(images: np.ndarray) -> np.ndarray:
  """Variance of the valid Laplace-filter response of each image -> (N,)."""
  grey = to_greyscale(images)
  if grey.shape[1] < 3 or grey.shape[2] < 3:
    raise ValueError(f"sharpness needs images of at least 3x3 pixels, got "
                     f"{grey.shape[1]}x{grey.shape[2]}.")
  # The filter is symmetric, so correlation equals convolution.
  response = (grey[:, :-2, 1:-1] + grey[:, 2:, 1:-1] + grey[:, 1:-1, :-2]
              + grey[:, 1:-1, 2:] - 4.0 * grey[:, 1:-1, 1:-1])
  return response.reshape(response.shape[0], -1).var(axis=1)


def sharpness(images: np.ndarray) -> float:
  """Mean over images of `sharpness_per_image`; images (N, H, W, C) in [0, 1]."""
  return float(sharpness_per_image(images).mean())
