"""Wall time of the evaluation building blocks (not a test).

  python benchmarks/evaluation.py [--inception_images=8] [--swd_images=1000]

Prints one table row per piece: Fréchet distance on 2048-d features (the
eigendecomposition square root vs scipy.linalg.sqrtm), KID with the paper's
100 subsets of 1000, image SWD on 64x64x3 images, and FID Inception pool3
features at 299x299 (random weights: the speed is the same as the real ones).
"""

import argparse
import time

import numpy as np
import scipy.linalg

from wae_jax.evaluation import fid
from wae_jax.evaluation import inception
from wae_jax.evaluation import swd


def _timed(function, repeats=1, warm_up=False):
  if warm_up:
    function()  # compilation
  start = time.perf_counter()
  for _ in range(repeats):
    function()
  return (time.perf_counter() - start) / repeats


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--features", type=int, default=10_000)
  parser.add_argument("--swd_images", type=int, default=1000)
  parser.add_argument("--inception_images", type=int, default=8)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  print(f"{'piece':<40} {'items':>8} {'seconds':>10} {'ms/item':>10}", flush=True)

  class Rows(list):
    def append(self, row):
      name, items, seconds = row
      print(f"{name:<40} {items:>8} {seconds:>10.3f} {1e3 * seconds / items:>10.2f}",
            flush=True)

  rows = Rows()

  feats1 = rng.standard_normal((args.features, 2048)).astype(np.float32)
  feats2 = feats1 + 0.1 * rng.standard_normal(feats1.shape).astype(np.float32)
  mu1, s1 = fid.feature_statistics(feats1)
  mu2, s2 = fid.feature_statistics(feats2)
  rows.append(("statistics of (N, 2048) features", args.features,
               _timed(lambda: fid.feature_statistics(feats1))))
  rows.append(("frechet_distance, eigh sqrt (d=2048)", 1,
               _timed(lambda: fid.frechet_distance(mu1, s1, mu2, s2))))
  rows.append(("scipy.linalg.sqrtm(S1 S2) (d=2048)", 1, _timed(lambda: scipy.linalg.sqrtm(s1 @ s2))))
  rows.append(("KID, 100 subsets x 1000", args.features,
               _timed(lambda: fid.kernel_inception_distance(feats1, feats2))))

  images1 = rng.uniform(size=(args.swd_images, 64, 64, 3)).astype(np.float32)
  images2 = rng.uniform(size=(args.swd_images, 64, 64, 3)).astype(np.float32)
  rows.append(("image SWD 64x64x3 (3 levels)", args.swd_images,
               _timed(lambda: swd.sliced_wasserstein_images(images1, images2))))

  extract = inception.InceptionFeatures(variables=inception.random_variables(0),
                                        batch_size=args.inception_images)
  images = rng.uniform(size=(args.inception_images, 32, 32, 3)).astype(np.float32)
  seconds = _timed(lambda: extract(images), warm_up=True)
  rows.append(("Inception pool3 at 299x299", args.inception_images, seconds))


if __name__ == "__main__":
  main()
