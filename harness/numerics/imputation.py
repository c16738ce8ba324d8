"""ROAD's noisy linear imputation (Rong, Leemann et al., ICML 2022): every removed pixel
takes the weighted mean of its eight neighbours (1/6 for the four sharing a side, 1/12
for the diagonal ones, the weights of missing neighbours at the border dropped), all
removed pixels at once, then Gaussian noise is added to them.

Per image and channel that is the sparse linear system ``D x - W_rr x = W_rk k`` over the
removed pixels x (k: the kept ones). ``D - W_rr`` is symmetric and, wherever a region of
removed pixels touches a kept one, positive definite, so conjugate gradients solve it. A
system over tens of thousands of pixels needs hundreds of iterations from a flat start,
so the solve starts from the same system solved on the image halved (and that one from
its own half, down to a few hundred pixels), and the fine iterations only remove what
the coarse solution could not see.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# The solve stops when every removed pixel's residual, as a share of its neighbours'
# weight, is below this (pixel units): far below ROAD's own noise (0.01).
TOLERANCE = 1e-6
_COARSEST = 256  # pixels below which a level is solved without a coarser start
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
_DY = np.array([o[0] for o in _OFFSETS], np.int64)
_DX = np.array([o[1] for o in _OFFSETS], np.int64)
_W = np.array([1 / 12 if o[0] and o[1] else 1 / 6 for o in _OFFSETS], np.float64)


def impute(images: np.ndarray, removed: np.ndarray, noise: np.ndarray | None = None,
           tolerance: float = TOLERANCE) -> np.ndarray:
    """Fill the removed pixels of each image by noisy linear imputation.

    Args:
        images: ``(N, H, W, C) float32`` pixel images.
        removed: ``(N, H, W) bool``, True where a pixel is removed; at least one pixel of
            each image must be kept where any is removed.
        noise: ``(N, H, W, C)`` values added to the removed pixels (ROAD draws them
            normal with standard deviation 0.01); None adds nothing.
        tolerance: see :data:`TOLERANCE`.

    Returns:
        ``(N, H, W, C) float32``: the kept pixels as they were, the removed ones imputed.

    Raises:
        ValueError: an image has every pixel removed (nothing to impute from).
    """
    x = np.ascontiguousarray(images, np.float32)
    mask = np.ascontiguousarray(removed, np.bool_)
    if mask.shape != x.shape[:3]:
        raise ValueError(f"removed has shape {mask.shape}, images {x.shape}")
    n, h, w, c = x.shape
    every = mask.reshape(n, -1).all(axis=1)
    if every.any():
        raise ValueError(f"image {int(np.argmax(every))} has every pixel removed: "
                         "nothing to impute from")
    out = np.empty_like(x)
    _impute_all(x, mask, float(tolerance), out)
    if noise is not None:
        out = np.where(mask[..., None], out + np.asarray(noise, np.float32), out)
    return out


@njit(cache=True, parallel=True)
def _impute_all(x, mask, tolerance, out):
    n, h, w, c = x.shape
    for job in prange(n * c):
        i, ch = job // c, job % c
        plane = x[i, :, :, ch].astype(np.float64)
        _solve_level(plane, mask[i], tolerance)
        for y in range(h):
            for q in range(w):
                out[i, y, q, ch] = plane[y, q]


@njit(cache=True)
def _solve_level(plane, mask, tolerance):
    """Overwrite the removed pixels of ``plane`` (float64, H x W) with the solution,
    starting from the solution on the image halved."""
    h, w = plane.shape
    if h * w > _COARSEST and h >= 4 and w >= 4:
        hc, wc = (h + 1) // 2, (w + 1) // 2
        coarse = np.zeros((hc, wc))
        cmask = np.ones((hc, wc), np.bool_)
        count = np.zeros((hc, wc))
        for y in range(h):
            for q in range(w):
                if not mask[y, q]:
                    coarse[y // 2, q // 2] += plane[y, q]
                    count[y // 2, q // 2] += 1.0
        any_kept = False
        for y in range(hc):
            for q in range(wc):
                if count[y, q] > 0:
                    coarse[y, q] /= count[y, q]
                    cmask[y, q] = False
                    any_kept = True
        if any_kept:
            _solve_level(coarse, cmask, tolerance)
            for y in range(h):
                for q in range(w):
                    if mask[y, q]:
                        plane[y, q] = coarse[y // 2, q // 2]
    _cg(plane, mask, tolerance)


@njit(cache=True)
def _cg(plane, mask, tolerance):
    """Conjugate gradients on ``(D - W_rr) x = W_rk k`` from the removed pixels' current
    values, Jacobi-preconditioned (D is smaller at the border)."""
    h, w = plane.shape
    m = 0
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                m += 1
    if m == 0:
        return
    ys = np.empty(m, np.int64)
    xs = np.empty(m, np.int64)
    var = np.full((h, w), -1, np.int64)
    k = 0
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                ys[k], xs[k], var[y, q] = y, q, k
                k += 1
    # per removed pixel: its neighbours' weight, the kept neighbours' weighted sum, and
    # the removed neighbours (index, weight) in a fixed table of eight
    diag = np.zeros(m)
    rhs = np.zeros(m)
    nbr = np.full((m, 8), -1, np.int64)
    sol = np.empty(m)
    for k in range(m):
        y, q = ys[k], xs[k]
        sol[k] = plane[y, q]
        for o in range(8):
            yy, qq = y + _DY[o], q + _DX[o]
            if 0 <= yy < h and 0 <= qq < w:
                diag[k] += _W[o]
                if mask[yy, qq]:
                    nbr[k, o] = var[yy, qq]
                else:
                    rhs[k] += _W[o] * plane[yy, qq]
    r = np.empty(m)
    _residual(sol, diag, rhs, nbr, r)
    z = r / diag
    p = z.copy()
    rz = np.dot(r, z)
    ap = np.empty(m)
    for _ in range(10 * m + 100):
        if _worst(r, diag) <= tolerance:
            break
        _apply(p, diag, nbr, ap)
        alpha = rz / np.dot(p, ap)
        sol += alpha * p
        r -= alpha * ap
        z = r / diag
        rz_next = np.dot(r, z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    for k in range(m):
        plane[ys[k], xs[k]] = sol[k]


@njit(cache=True)
def _apply(v, diag, nbr, out):
    for k in range(len(v)):
        s = diag[k] * v[k]
        for o in range(8):
            j = nbr[k, o]
            if j >= 0:
                s -= _W[o] * v[j]
        out[k] = s


@njit(cache=True)
def _residual(sol, diag, rhs, nbr, out):
    _apply(sol, diag, nbr, out)
    for k in range(len(sol)):
        out[k] = rhs[k] - out[k]


@njit(cache=True)
def _worst(r, diag):
    worst = 0.0
    for k in range(len(r)):
        v = abs(r[k]) / diag[k]
        if v > worst:
            worst = v
    return worst
