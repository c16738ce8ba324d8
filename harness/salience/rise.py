"""RISE salience (Petsiuk et al. 2018; docs/measures.md): the score-weighted average of
random smooth masks."""

import dataclasses
import hashlib

import numpy as np
from numba import njit, prange

from harness.numerics.filters import bilinear_source, cell_edges
from harness.numerics.pixels import checked_float
from harness.salience.batched import score_perturbations


@dataclasses.dataclass(frozen=True)
class MaskBank:
    """RISE's random masks for one image size, stored compactly and upsampled on the fly.

    Attributes:
        grids: ``(n, s, s) float32`` binary keep-grids.
        shifts: ``(n, 2) int64`` sub-cell shifts (dy, dx) in pixels.
        up_size: ``(up_h, up_w)``, the size each grid is upsampled to before cropping.
        size: ``(H, W)`` of the images.
        p_keep: probability that a grid cell is kept.
        seed: the seed the bank was drawn with.
    """

    grids: np.ndarray
    shifts: np.ndarray
    up_size: tuple[int, int]
    size: tuple[int, int]
    p_keep: float
    seed: int

    @property
    def hash(self) -> str:
        """Short sha256 of the bank's content, recorded with the results."""
        digest = hashlib.sha256()
        for part in (self.grids, self.shifts, np.array(self.up_size + self.size),
                     np.array([self.p_keep])):
            digest.update(np.ascontiguousarray(part).tobytes())
        return digest.hexdigest()[:16]

    def __len__(self):
        return len(self.grids)


def rise_masks(size: tuple[int, int], n_masks: int = 1000, cell: int = 7, p_keep: float = 0.5,
               seed: int = 0) -> MaskBank:
    """Draw a RISE mask bank as Petsiuk et al.: an s x s binary grid (s = ``cell``) kept
    with probability ``p_keep``, upsampled bilinearly to (s + 1) * ceil(H / s) pixels
    and cropped at a random shift within one cell. Bilinear sampling clamps at the edges.
    """
    if n_masks < 1 or cell < 1 or not 0.0 < p_keep <= 1.0:
        raise ValueError("need n_masks >= 1, cell >= 1 and 0 < p_keep <= 1")
    h, w = size
    cell_h, cell_w = -(-h // cell), -(-w // cell)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    grids = (rng.random((n_masks, cell, cell)) < p_keep).astype(np.float32)
    shifts = np.stack([rng.integers(0, cell_h, n_masks), rng.integers(0, cell_w, n_masks)], 1)
    return MaskBank(grids, shifts.astype(np.int64), ((cell + 1) * cell_h, (cell + 1) * cell_w),
                    (h, w), float(p_keep), int(seed))


def rise(model, images, n_masks: int = 1000, cell: int = 7, p_keep: float = 0.5, seed: int = 0,
         grid: int = 7, baseline="blur", target=None, score: str = "log_odds",
         batch_size: int | None = None, masks: MaskBank | None = None, clean=None) -> np.ndarray:
    """Baseline-subtracted RISE maps: S = sum_i (s_i - mean s) * M_i / (N * p_keep), with
    s_i = score(x * M_i + baseline * (1 - M_i)), pooled (cell means) to a ``grid`` x
    ``grid`` map.

    Subtracting the mean score over the masks makes the sign mean something: a cell is
    positive when keeping it raises the score above its average over the masks. Without
    it a log-odds map (signed scores) can be negative in every cell, and the ReLU of the
    normalisation then leaves it flat; with it, the map is the covariance of score and
    mask, which for a model linear in the pixels is proportional to each cell's
    contribution (the occlusion map).

    Args:
        model: an :class:`~harness.model.classifier.OnnxClassifier`.
        images: ``(N, H, W, 3) float32 in [0, 1]`` (or uint8) RGB pixel images.
        n_masks, cell, p_keep, seed: the mask bank (see :func:`rise_masks`); ignored when
            ``masks`` is given. The same bank serves every image.
        grid: cells per side of the returned map.
        baseline: what masked-out pixels become; ``"blur"`` by default, as for occlusion,
            so the two methods differ only in the shape of what they hide (Petsiuk et al.
            used 0, available as ``baseline=0.0``).
        target, score, batch_size, clean: as for :func:`~harness.salience.occlusion`;
            with an explicit ``target`` RISE needs no clean pass.

    Returns:
        ``(N, grid, grid) float32`` raw maps. Costs N * n_masks forward passes, plus N
        for the clean images unless ``target`` or ``clean`` is given.
    """
    x = checked_float(images)
    n, h, w, _ = x.shape
    if not 1 <= grid <= min(h, w):
        raise ValueError(f"grid must lie in [1, {min(h, w)}] for {h}x{w} images, got {grid}")
    bank = masks if masks is not None else rise_masks((h, w), n_masks, cell, p_keep, seed)
    if bank.size != (h, w):
        raise ValueError(f"mask bank is for {bank.size} images, these are {(h, w)}")
    up_h, up_w = bank.up_size

    def fill(src, base, item_img, item_pert, prev_img, prev_pert, out, channels_first):
        _fill_masked(src, base, item_img, bank.grids[item_pert], bank.shifts[item_pert],
                     up_h, up_w, out, channels_first)

    scores = score_perturbations(model, x, baseline, grid, len(bank), fill,
                                 target, score, batch_size, clean, need_clean=False,
                                 device_fill=("masked", (bank.grids, bank.shifts, up_h, up_w))
                                 ).scores
    pooled = _pooled_masks(bank.grids, bank.shifts, up_h, up_w, h, w,
                           cell_edges(h, grid), cell_edges(w, grid))
    centred = scores - scores.mean(axis=1, keepdims=True)
    maps = np.tensordot(centred, pooled, axes=(1, 0)) / (len(bank) * bank.p_keep)
    return maps.astype(np.float32)


_axis_sample = njit(cache=True, inline="always")(bilinear_source)


@njit(cache=True, inline="always")
def _mask_value(g, dy, dx, y, x, up_h, up_w):
    y0, y1, wy = _axis_sample(y + dy, g.shape[0], up_h)
    x0, x1, wx = _axis_sample(x + dx, g.shape[1], up_w)
    top = g[y0, x0] * (1.0 - wx) + g[y0, x1] * wx
    bottom = g[y1, x0] * (1.0 - wx) + g[y1, x1] * wx
    return top * (1.0 - wy) + bottom * wy


@njit(cache=True, parallel=True)
def _fill_masked(src, base, item_img, grids, shifts, up_h, up_w, out, channels_first):
    """out[b] = src * M_b + base * (1 - M_b) for image item_img[b], in src's layout."""
    for b in prange(out.shape[0]):
        i = item_img[b]
        g = grids[b]
        dy, dx = shifts[b, 0], shifts[b, 1]
        if channels_first:
            c, h, w = src.shape[1], src.shape[2], src.shape[3]
        else:
            h, w, c = src.shape[1], src.shape[2], src.shape[3]
        for y in range(h):
            for x in range(w):
                m = _mask_value(g, dy, dx, y, x, up_h, up_w)
                for ch in range(c):
                    if channels_first:
                        out[b, ch, y, x] = src[i, ch, y, x] * m + base[i, ch, y, x] * (1.0 - m)
                    else:
                        out[b, y, x, ch] = src[i, y, x, ch] * m + base[i, y, x, ch] * (1.0 - m)


@njit(cache=True, parallel=True)
def _pooled_masks(grids, shifts, up_h, up_w, h, w, ys, xs):
    """Mean of each full-size mask over each grid cell: (n, g, g) float64."""
    n = grids.shape[0]
    g = ys.shape[0] - 1
    out = np.zeros((n, g, g))
    for k in prange(n):
        for cy in range(g):
            for cx in range(g):
                acc = 0.0
                for y in range(ys[cy], ys[cy + 1]):
                    for x in range(xs[cx], xs[cx + 1]):
                        acc += _mask_value(grids[k], shifts[k, 0], shifts[k, 1], y, x, up_h, up_w)
                out[k, cy, cx] = acc / ((ys[cy + 1] - ys[cy]) * (xs[cx + 1] - xs[cx]))
    return out
