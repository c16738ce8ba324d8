"""ROAD's noisy linear imputation (Rong, Leemann et al., ICML 2022): every removed pixel
takes the weighted mean of its eight neighbours (1/6 for the four sharing a side, 1/12
for the diagonal ones, the weights of missing neighbours at the border dropped), all
removed pixels at once, then Gaussian noise is added to them.

Per image that is the sparse linear system ``(D - W_rr) x = W_rk k`` over the removed
pixels x (k: the kept ones), one right-hand side per channel. ``D - W_rr`` is symmetric
and, wherever a region of removed pixels touches a kept one, positive definite. Plain
conjugate gradients need hundreds of iterations on a region of tens of thousands of
pixels (its condition grows with the region's area), so they are preconditioned by a
multigrid V-cycle: pixels are merged 2 x 2 into coarser and coarser grids, each grid's
system is the finer one's summed over the merged pixels (Galerkin), and a symmetric
Gauss-Seidel sweep before and after each coarse correction removes what a coarse grid
cannot see. The cycle is symmetric, so the iteration is still conjugate gradients, and
its stopping rule (the residual) makes the answer the system's whatever the cycle does.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# The solve stops when every removed pixel's residual, as a share of its neighbours'
# weight, is below this (pixel units): far below ROAD's own noise (0.01).
TOLERANCE = 1e-6
_DIRECT = 64  # unknowns at or below which a grid is solved directly
_LEVELS = 12  # coarsenings at most (a 4096 x 4096 image reaches a pixel)
_SWEEPS = 10  # symmetric sweeps standing in for a direct solve too large to make
# The coarse correction, scaled up: a merged pixel's constant correction undershoots
# a smooth error (unsmoothed aggregation); 1.5 took the iterations on a 224 px image
# from 14-26 to 10-14 (1.0 and 2.0 both did worse).
_OVER = 1.5
_DY = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1], np.int64)
_DX = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1], np.int64)
_W = np.array([1 / 12, 1 / 6, 1 / 12, 1 / 6, 0.0, 1 / 6, 1 / 12, 1 / 6, 1 / 12])


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
    every = mask.reshape(len(mask), -1).all(axis=1)
    if every.any():
        raise ValueError(f"image {int(np.argmax(every))} has every pixel removed: "
                         "nothing to impute from")
    out = x.copy()
    _impute_all(x, mask, float(tolerance), out)
    if noise is not None:
        out = np.where(mask[..., None], out + np.asarray(noise, np.float32), out)
    return out


@njit(cache=True, parallel=True)
def _impute_all(x, mask, tolerance, out):
    for i in prange(x.shape[0]):
        _impute_one(x[i], mask[i], tolerance, out[i])


@njit(cache=True)
def _impute_one(image, mask, tolerance, out):
    h, w, c = image.shape
    var = np.full((h, w), -1, np.int64)
    m = 0
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                var[y, q] = m
                m += 1
    if m == 0:
        return
    # the finest grid: stencil (diagonal at 4, minus the removed neighbours' weights) and
    # right-hand side (the kept neighbours' weighted values)
    coef = np.zeros((m, 9))
    nbr = np.full((m, 9), -1, np.int32)
    rhs = np.zeros((m, c))
    cell_y = np.empty(m, np.int64)
    cell_x = np.empty(m, np.int64)
    for y in range(h):
        for q in range(w):
            k = var[y, q]
            if k < 0:
                continue
            cell_y[k], cell_x[k] = y, q
            nbr[k, 4] = k
            for o in range(9):
                yy, qq = y + _DY[o], q + _DX[o]
                if o == 4 or not (0 <= yy < h and 0 <= qq < w):
                    continue
                coef[k, 4] += _W[o]
                j = var[yy, qq]
                if j >= 0:
                    coef[k, o] = -_W[o]
                    nbr[k, o] = j
                else:
                    for ch in range(c):
                        rhs[k, ch] += _W[o] * image[yy, qq, ch]
    levels = _hierarchy(coef, nbr, cell_y, cell_x)
    sol = _pcg(levels, rhs, tolerance)
    for k in range(m):
        for ch in range(c):
            out[cell_y[k], cell_x[k], ch] = sol[k, ch]


@njit(cache=True)
def _hierarchy(coef, nbr, cell_y, cell_x):
    """The grids from the finest down: per grid its stencil, neighbours and the index of
    each unknown's parent on the next coarser grid (-1 on the coarsest)."""
    levels = [(coef, nbr, np.full(len(coef), -1, np.int32))]
    for _ in range(_LEVELS):
        coef, nbr, _ = levels[-1]
        m = len(coef)
        if m <= _DIRECT:
            break
        py, px = cell_y // 2, cell_x // 2
        hc, wc = py.max() + 1, px.max() + 1
        index = np.full((hc, wc), -1, np.int64)
        parent = np.empty(m, np.int32)
        mc = 0
        for k in range(m):
            if index[py[k], px[k]] < 0:
                index[py[k], px[k]] = mc
                mc += 1
            parent[k] = index[py[k], px[k]]
        ccoef = np.zeros((mc, 9))
        cnbr = np.full((mc, 9), -1, np.int32)
        cy = np.empty(mc, np.int64)
        cx = np.empty(mc, np.int64)
        for k in range(m):
            pk = parent[k]
            cy[pk], cx[pk] = py[k], px[k]
            for o in range(9):
                j = nbr[k, o]
                if j < 0:
                    continue
                pj = parent[j]
                oc = (py[j] - py[k] + 1) * 3 + (px[j] - px[k] + 1)
                ccoef[pk, oc] += coef[k, o]
                cnbr[pk, oc] = pj
        levels[-1] = (coef, nbr, parent)
        levels.append((ccoef, cnbr, np.full(mc, -1, np.int32)))
        cell_y, cell_x = cy, cx
    return levels


@njit(cache=True)
def _apply(coef, nbr, v, out):
    for k in range(len(coef)):
        for ch in range(v.shape[1]):
            s = 0.0
            for o in range(9):
                j = nbr[k, o]
                if j >= 0:
                    s += coef[k, o] * v[j, ch]
            out[k, ch] = s


@njit(cache=True)
def _sweep(coef, nbr, r, z, backward):
    """One Gauss-Seidel sweep on ``A z = r`` in place, in index order or reversed (the
    pair is symmetric, as conjugate gradients need)."""
    m = len(coef)
    for step in range(m):
        k = m - 1 - step if backward else step
        for ch in range(r.shape[1]):
            s = r[k, ch]
            for o in range(9):
                j = nbr[k, o]
                if j >= 0 and o != 4:
                    s -= coef[k, o] * z[j, ch]
            z[k, ch] = s / coef[k, 4]


@njit(cache=True)
def _coarsest(coef, nbr, r):
    """The coarsest grid's solve: direct (it has a few dozen unknowns), or symmetric
    sweeps where its unknowns never merged."""
    m = len(coef)
    if m > _DIRECT:  # only when unknowns never merge (a lattice of single pixels)
        z = np.zeros_like(r)
        for _ in range(_SWEEPS):
            _sweep(coef, nbr, r, z, False)
            _sweep(coef, nbr, r, z, True)
        return z
    dense = np.zeros((m, m))
    for k in range(m):
        for o in range(9):
            if nbr[k, o] >= 0:
                dense[k, nbr[k, o]] += coef[k, o]
    return _cholesky_solve(dense, r)


@njit(cache=True)
def _vcycle(levels, r):
    """One V-cycle from the finest grid (a loop, not a recursion: Numba's cache cannot
    hold a recursive function). A forward sweep on the way down, a backward one on the
    way up, so the cycle is a symmetric operator."""
    last = len(levels) - 1
    rhs = [r]
    guesses = []
    for at in range(last):
        coef, nbr, parent = levels[at]
        m, c = rhs[at].shape
        z = np.zeros((m, c))
        _sweep(coef, nbr, rhs[at], z, False)
        res = np.empty((m, c))
        _apply(coef, nbr, z, res)
        coarse = np.zeros((len(levels[at + 1][0]), c))
        for k in range(m):
            for ch in range(c):
                coarse[parent[k], ch] += rhs[at][k, ch] - res[k, ch]
        guesses.append(z)
        rhs.append(coarse)
    correction = _coarsest(levels[last][0], levels[last][1], rhs[last])
    for at in range(last - 1, -1, -1):
        coef, nbr, parent = levels[at]
        z = guesses[at]
        for k in range(len(z)):
            for ch in range(z.shape[1]):
                z[k, ch] += _OVER * correction[parent[k], ch]
        _sweep(coef, nbr, rhs[at], z, True)
        correction = z
    return correction


@njit(cache=True)
def _cholesky_solve(a, b):
    """``a^-1 b`` for a small symmetric positive definite ``a`` (the coarsest grid)."""
    n = len(a)
    low = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            low[i, j] = np.sqrt(s) if i == j else s / low[j, j]
    x = b.copy()
    for i in range(n):
        for k in range(i):
            x[i] -= low[i, k] * x[k]
        x[i] /= low[i, i]
    for i in range(n - 1, -1, -1):
        for k in range(i + 1, n):
            x[i] -= low[k, i] * x[k]
        x[i] /= low[i, i]
    return x


@njit(cache=True)
def _pcg(levels, rhs, tolerance):
    """Conjugate gradients on the finest grid, one scalar recurrence per channel, each
    step preconditioned by a V-cycle; stops when every channel's worst residual (as a
    share of the pixel's weight) is within ``tolerance``."""
    coef, nbr, _ = levels[0]
    m, c = rhs.shape
    sol = np.zeros((m, c))
    r = rhs.copy()
    z = _vcycle(levels, r)
    p = z.copy()
    rz = _dots(r, z)
    ap = np.empty((m, c))
    for _ in range(m + 50):
        worst = 0.0
        for k in range(m):
            for ch in range(c):
                worst = max(worst, abs(r[k, ch]) / coef[k, 4])
        if worst <= tolerance:
            break
        _apply(coef, nbr, p, ap)
        pap = _dots(p, ap)
        alpha = np.zeros(c)
        for ch in range(c):
            if pap[ch] > 0.0:  # else this channel has converged to rounding
                alpha[ch] = rz[ch] / pap[ch]
        for k in range(m):
            for ch in range(c):
                sol[k, ch] += alpha[ch] * p[k, ch]
                r[k, ch] -= alpha[ch] * ap[k, ch]
        z = _vcycle(levels, r)
        rz_next = _dots(r, z)
        for ch in range(c):
            beta = rz_next[ch] / rz[ch] if rz[ch] > 0.0 else 0.0
            for k in range(m):
                p[k, ch] = z[k, ch] + beta * p[k, ch]
        rz = rz_next
    return sol


@njit(cache=True)
def _dots(a, b):
    """Per channel, the dot product of two ``(m, c)`` arrays."""
    out = np.zeros(a.shape[1])
    for k in range(a.shape[0]):
        for ch in range(a.shape[1]):
            out[ch] += a[k, ch] * b[k, ch]
    return out
