"""Reference maps a headline is read against (docs/measures.md, "Chance levels" and
"transforms"):

- chance: maps whose cells are i.i.d. uniform, seeded per image (the run seed, the
  image's content hash and what the map stands for), pushed through the same
  normalisation and measure as the model's maps. They depend on the images and the
  grid only, never on the model, so every model of a run reads the same ones.
- the equivariant map: each image's own grey intensity, blurred with sigma = half a
  cell and pooled to the method's grid. It moves exactly with the image, so what it
  loses through the grid, the upsampling and the quantisation is the transforms
  measure's ceiling.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np

from harness.numerics.filters import cell_means, gaussian_blur
from harness.numerics.pixels import to_float

_STREAM = zlib.crc32(b"chance")


def uniform_maps(boot, shape: tuple[int, int], what: str) -> np.ndarray:
    """``(N, *shape)`` maps of i.i.d. uniform cells, one per image of ``boot`` (the run's
    :class:`~harness.stats.bootstrap.Bootstrap`, which knows the seed and the image
    keys); ``what`` names the map (``clean``, ``noise@0.05``, ``family-2``...), so maps
    standing for different things are independent."""
    return _uniform(boot.seed, tuple(boot.keys), tuple(shape), what).copy()


@functools.lru_cache(maxsize=256)
def _uniform(seed: int, keys: tuple, shape: tuple, what: str) -> np.ndarray:
    label = zlib.crc32(what.encode())
    return np.stack([np.random.default_rng(np.random.SeedSequence(
        seed, spawn_key=(_STREAM, label, zlib.crc32(k.encode())))).random(shape)
        for k in keys]) if keys else np.zeros((0, *shape))


def equivariant_maps(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The grey intensity of ``(N, H, W, 3)`` images blurred with sigma = half a cell and
    pooled to ``grid`` = (rows, columns): ``(N, rows, columns)``."""
    x = to_float(images)
    grey = x.mean(axis=3, keepdims=True).astype(np.float32)
    h, w = grey.shape[1:3]
    blurred = gaussian_blur(grey, (h / grid[0] / 2.0, w / grid[1] / 2.0))[..., 0]
    return cell_means(blurred, grid)
