"""Reference maps a headline is read against (docs/measures.md, "Chance levels" and
"transforms"):

- chance: maps whose cells are i.i.d. uniform, seeded per image (the run seed, the
  image's content hash and what the map stands for), pushed through the same
  normalisation and measure as the model's maps. They depend on the images and the
  grid only, never on the model, so every model of a run reads the same ones.
- beyond chance: the model's per-image value against the random map's on the same
  image, for measures whose values are in the model's score units.
- the equivariant map: each image's own grey intensity, blurred with sigma = half a
  cell and pooled to the method's grid. It moves exactly with the image, so what it
  loses through the grid, the upsampling and the quantisation is the transforms
  measure's ceiling.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from harness.measures.base import Stat, mean_stat
from harness.numerics.filters import cell_means, gaussian_blur
from harness.numerics.pixels import to_float

_STREAM = zlib.crc32(b"chance")


def uniform_maps(images, shape: tuple[int, int], what: str) -> np.ndarray:
    """``(N, *shape)`` maps of i.i.d. uniform cells, one per image of ``images`` (an
    :class:`Images`, or the run's :class:`~harness.stats.bootstrap.Bootstrap`: anything
    with the run ``seed`` and the image ``keys``); ``what`` names the map (``clean``,
    ``noise@0.05``, ``family-2``...), so maps standing for different things are
    independent."""
    label = zlib.crc32(what.encode())
    return np.stack([np.random.default_rng(np.random.SeedSequence(
        images.seed, spawn_key=(_STREAM, label, zlib.crc32(k.encode())))).random(shape)
        for k in images.keys]) if len(images.keys) else np.zeros((0, *shape))


@dataclasses.dataclass(frozen=True)
class Images:
    """What reference maps are drawn from: the run seed and some images' keys."""

    seed: int
    keys: list


CHUNK = 128  # images whose reference maps exist at a time


def chunked(boot, compute) -> np.ndarray:
    """``compute(images, rows)`` for consecutive chunks of the run's images (an
    :class:`Images` and the chunk's slice), concatenated: ``(N,)``. Reference maps at
    image size for a whole large set would dwarf what a run otherwise holds."""
    parts = [compute(Images(boot.seed, boot.keys[s:s + CHUNK]), slice(s, s + CHUNK))
             for s in range(0, len(boot.keys), CHUNK)]
    return np.concatenate(parts) if parts else np.zeros(0)


_KEPT: dict = {}


def remembered(key: tuple, compute) -> np.ndarray:
    """Per-image reference values (a chance level, the ceiling) computed once per run and
    kept for its next model: they depend on the images, the grid and the seed, never on
    the model. ``key`` must name all of those; only small ``(N,)`` arrays are kept."""
    if key not in _KEPT:
        if len(_KEPT) >= 32:
            _KEPT.clear()
        _KEPT[key] = compute()
    return _KEPT[key]


def chance_stat(boot, key: tuple, per_chunk) -> Stat:
    """A measure's ``chance`` row: the mean of its per-image values for random maps,
    ``per_chunk(images, rows)`` computed a chunk of images at a time and kept for the
    run's next model. ``key`` names what decides them besides the seed and the images
    (the measure, its grid, its parameters)."""
    values = remembered((*key, boot.seed, tuple(boot.keys)), lambda: chunked(boot, per_chunk))
    return mean_stat("chance", values, boot)


def beyond_chance(own, chance, higher: bool, boot) -> Stat:
    """``beyond_chance``: per image, how much better the model's map does than the random
    map on the same image (own - chance, or chance - own where lower is better). An
    area or gap in score units grows with the model's score range, so across models
    this, read beside ``chance``, says more than such a headline."""
    diff = np.asarray(own, np.float64) - np.asarray(chance, np.float64)
    return mean_stat("beyond_chance", diff if higher else -diff, boot)


def equivariant_maps(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The grey intensity of ``(N, H, W, 3)`` images blurred with sigma = half a cell and
    pooled to ``grid`` = (rows, columns): ``(N, rows, columns)``."""
    grey = to_float(images).mean(axis=3, keepdims=True, dtype=np.float32)
    h, w = grey.shape[1:3]
    blurred = gaussian_blur(grey, (h / grid[0] / 2.0, w / grid[1] / 2.0))[..., 0]
    return cell_means(blurred, grid)
