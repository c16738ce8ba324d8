"""The copies the faithfulness measures score (docs/measures.md, "deletion",
"insertion", "road", "faithfulness_correlation"): orders of a map's cells and pixels,
which cells each copy hides, and the kernel that writes a copy.

A copy is described by the cells it hides: ``hidden[i, p, c]`` says whether copy p of
image i shows cell c from the baseline instead of the image. Deletion hides the first
cells of the map's order, insertion all but them, faithfulness correlation a random
subset; one kernel writes them all.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from harness.numerics.filters import cell_edges

# Curves take one cell per step up to this many cells; a finer map moves
# ceil(cells / MAX_STEPS) cells per step, so a curve never costs more than 65 passes.
MAX_STEPS = 64
# ROAD's removal fractions (percent of the pixels), most- and least-relevant first: the
# tenths the paper plots.
ROAD_PERCENTS = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01  # ROAD's imputation noise (standard deviation, pixel units)
# Faithfulness correlation: this many random subsets, each hiding this share of the cells
SUBSETS = 32
SUBSET_SHARE = 0.25


def steps(cells: int) -> int:
    """The steps K of a deletion or insertion curve over a map of ``cells`` cells."""
    return min(cells, MAX_STEPS)


def shown_counts(cells: int) -> np.ndarray:
    """``(K + 1,)`` cells taken from the order after each step: c_k = floor(k C / K)."""
    k = steps(cells)
    return (np.arange(k + 1) * cells) // k


def subset_size(cells: int) -> int:
    """Cells hidden by each of faithfulness correlation's subsets."""
    return max(1, int(round(SUBSET_SHARE * cells)))


def ranks(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of each element of ``values`` (flattened) in decreasing order, 0 = largest;
    equal values in the order of a permutation drawn from ``rng``: ``(size,) int64``."""
    flat = np.asarray(values, np.float64).reshape(-1)
    perm = rng.permutation(flat.size)
    keys = -flat[perm]
    within = np.argsort(keys)  # a faster sort, which only ties (or NaN) tell from a stable one
    if not (np.diff(keys[within]) > 0).all():
        within = np.argsort(keys, kind="stable")
    order = perm[within]
    out = np.empty(flat.size, np.int64)
    out[order] = np.arange(flat.size)
    return out


def deletion_hidden(cell_ranks: np.ndarray) -> np.ndarray:
    """``(N, C)`` cell ranks -> ``(N, K + 1, C) bool``: copy k hides the c_k first cells."""
    counts = shown_counts(cell_ranks.shape[1])
    return cell_ranks[:, None, :] < counts[None, :, None]


def insertion_hidden(cell_ranks: np.ndarray) -> np.ndarray:
    """``(N, C)`` cell ranks -> ``(N, K + 1, C) bool``: copy k shows only the c_k first
    cells (copy 0 is the whole baseline, copy K the image)."""
    return ~deletion_hidden(cell_ranks)


def subset_hidden(cells: int, rng: np.random.Generator) -> np.ndarray:
    """``(S + 1, C) bool``: copy 0 hides nothing, copy s hides the s-th random subset."""
    out = np.zeros((SUBSETS + 1, cells), np.bool_)
    size = subset_size(cells)
    for s in range(1, SUBSETS + 1):
        out[s, rng.choice(cells, size, replace=False)] = True
    return out


def road_removed(pixel_ranks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H * W,)`` pixel ranks -> ``(2F, H, W) bool``: the pixels each of ROAD's copies
    removes, most relevant first at each of :data:`ROAD_PERCENTS`, then least relevant
    first. A fraction p removes floor(H W p / 100) pixels."""
    total = pixel_ranks.size
    counts = [total * p // 100 for p in ROAD_PERCENTS]
    morf = [pixel_ranks < c for c in counts]
    lerf = [pixel_ranks >= total - c for c in counts]
    return np.stack(morf + lerf).reshape(-1, *shape)


def road_noise(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """``(H, W, C) float32``: an image's noise field, added at the pixels each of its
    ROAD copies removes. Every copy's removed pixels so get independent normal draws,
    as ROAD defines, and its copies share them (common random numbers: the noise does
    not differ between the copies a curve compares), at one draw per pixel instead of
    one per pixel and copy."""
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(ROAD_NOISE)


def cell_index(size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """``(H, W) int64``: the cell of a ``grid`` = (rows, columns) map each pixel lies in,
    with the occlusion grid's cell edges."""
    ys = np.searchsorted(cell_edges(size[0], grid[0]), np.arange(size[0]), side="right") - 1
    xs = np.searchsorted(cell_edges(size[1], grid[1]), np.arange(size[1]), side="right") - 1
    return ys[:, None] * grid[1] + xs[None, :]


@njit(cache=True)
def fill_hidden(src, base, item_img, item_copy, hidden, cells, out, channels_first):
    """out[b] = src[item_img[b]] with the cells ``hidden[item_img[b], item_copy[b]]``
    marks taken from base[item_img[b]].

    src, base: (N, H, W, C) or, channels_first, (N, C, H, W); hidden: (N, P, cells);
    cells: (H, W) cell of each pixel; out: (B, ...) in src's layout.
    """
    h, w = cells.shape
    for b in range(out.shape[0]):
        i, p = item_img[b], item_copy[b]
        for y in range(h):
            for x in range(w):
                pick = base if hidden[i, p, cells[y, x]] else src
                if channels_first:
                    for c in range(out.shape[1]):
                        out[b, c, y, x] = pick[i, c, y, x]
                else:
                    for c in range(out.shape[3]):
                        out[b, y, x, c] = pick[i, y, x, c]
