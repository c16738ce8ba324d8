"""ROAD's noisy linear imputation (Rong, Leemann et al., ICML 2022): every removed pixel
takes the weighted mean of its eight neighbours (1/6 for the four sharing a side, 1/12
for the diagonal ones, the weights of missing neighbours at the border dropped), all
removed pixels at once, then Gaussian noise is added to them.

Per image that is the sparse linear system ``(D - W_rr) x = W_rk k`` over the removed
pixels x (k: the kept ones), one right-hand side per channel. ``D - W_rr`` is symmetric
and, wherever a region of removed pixels touches a kept one, positive definite. Plain
conjugate gradients need hundreds of iterations on a region of tens of thousands of
pixels (its condition grows with the region's area), so they are preconditioned by a
multigrid V-cycle: the grid is halved again and again by merging 2 x 2 pixels, each
grid's system is the finer one's summed over the merged pixels (Galerkin: a 9-point
stencil with its own coefficients per pixel), and a Jacobi step before and after each
coarse correction removes what a coarser grid cannot see. The cycle is symmetric, so
the iteration is still conjugate gradients, and its stopping rule (the residual) makes
the answer the system's whatever the cycle does.

Every grid is stored whole, padded by a pixel of zeros, with zero coefficients and
values off the unknowns: the stencils then run over contiguous rows without a
neighbour table or a branch, which the compiler vectorises.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# The solve stops when every removed pixel's residual, as a share of its neighbours'
# weight, is below this (pixel units): far below ROAD's own noise (0.01).
TOLERANCE = 1e-6
_DIRECT = 64  # pixels at or below which a grid is solved directly
# The coarse correction, scaled up: a merged pixel's constant correction undershoots a
# smooth error (unsmoothed aggregation); 1.5 took the iterations on a 224 px image from
# 14-26 to 10-14 with Gauss-Seidel smoothing (1.0 and 2.0 did worse), 13-15 with Jacobi.
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
        ArithmeticError: a solve stopped (after more iterations than it has unknowns)
            with a residual above ``tolerance``: its pixels would not be the system's.
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
    residual = np.zeros(len(x))
    _impute_all(x, mask, float(tolerance), out, residual)
    if (residual > tolerance).any():
        i = int(np.argmax(residual))
        raise ArithmeticError(f"imputation of image {i} stopped with a residual of "
                              f"{residual[i]:.2g}, above {tolerance:g}")
    if noise is not None:
        out = np.where(mask[..., None], out + np.asarray(noise, np.float32), out)
    return out


@njit(cache=True, parallel=True)
def _impute_all(x, mask, tolerance, out, residual):
    for i in prange(x.shape[0]):
        residual[i] = _impute_one(x[i], mask[i], tolerance, out[i])


@njit(cache=True)
def _impute_one(image, mask, tolerance, out):
    """One image: the finest grid's stencil (``coef[o]`` for offset o of the 3 x 3
    neighbourhood, ``coef[4]`` the diagonal) and right-hand side (the kept neighbours'
    weighted values), the coarser grids, the solve, the removed pixels written back.
    Returns the worst residual the solve stopped at."""
    h, w, c = image.shape
    if not mask.any():
        return 0.0
    coef = np.zeros((9, h + 2, w + 2))
    rhs = np.zeros((c, h + 2, w + 2))
    for y in range(h):
        for q in range(w):
            if not mask[y, q]:
                continue
            for o in range(9):
                yy, qq = y + _DY[o], q + _DX[o]
                if o == 4 or not (0 <= yy < h and 0 <= qq < w):
                    continue
                coef[4, y + 1, q + 1] += _W[o]
                if mask[yy, qq]:
                    coef[o, y + 1, q + 1] = -_W[o]
                else:
                    for ch in range(c):
                        rhs[ch, y + 1, q + 1] += _W[o] * image[yy, qq, ch]
    levels = [coef]
    while (levels[-1].shape[1] - 2) * (levels[-1].shape[2] - 2) > _DIRECT:
        levels.append(_coarsen(levels[-1]))
    inv = [_inverse_diagonal(cf) for cf in levels]
    sol, worst = _pcg(levels, inv, rhs, tolerance)
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                for ch in range(c):
                    out[y, q, ch] = sol[ch, y + 1, q + 1]
    return worst


@njit(cache=True)
def _inverse_diagonal(coef):
    """1 / the diagonal on the unknowns, 0 elsewhere (the Jacobi step's scale)."""
    _, hp, wp = coef.shape
    inv = np.zeros((hp, wp))
    for y in range(hp):
        for q in range(wp):
            if coef[4, y, q] > 0.0:
                inv[y, q] = 1.0 / coef[4, y, q]
    return inv


@njit(cache=True)
def _coarsen(coef):
    """The next coarser grid's stencil: P^T A P for P the merge of 2 x 2 pixels, i.e.
    each coefficient added to the pair of merged pixels it couples."""
    _, hp, wp = coef.shape
    h, w = hp - 2, wp - 2
    hc, wc = (h + 1) // 2, (w + 1) // 2
    out = np.zeros((9, hc + 2, wc + 2))
    for y in range(h):
        for q in range(w):
            if coef[4, y + 1, q + 1] == 0.0:
                continue
            py, px = y // 2, q // 2
            for o in range(9):
                a = coef[o, y + 1, q + 1]
                if a == 0.0:
                    continue
                ny, nx = (y + _DY[o]) // 2, (q + _DX[o]) // 2
                oc = (ny - py + 1) * 3 + (nx - px + 1)
                out[oc, py + 1, px + 1] += a
    return out


@njit(cache=True)
def _apply_fine(diag, v, out):
    """out = A v on the finest grid, whose weights are the same everywhere, so only the
    diagonal (0 off the unknowns) is read; v is 0 off the unknowns."""
    c = v.shape[0]
    hp, wp = diag.shape
    for ch in range(c):
        for y in range(1, hp - 1):
            for q in range(1, wp - 1):
                side = v[ch, y - 1, q] + v[ch, y + 1, q] + v[ch, y, q - 1] + v[ch, y, q + 1]
                corner = (v[ch, y - 1, q - 1] + v[ch, y - 1, q + 1] + v[ch, y + 1, q - 1]
                          + v[ch, y + 1, q + 1])
                a = diag[y, q] * v[ch, y, q] - side / 6.0 - corner / 12.0
                out[ch, y, q] = a if diag[y, q] > 0.0 else 0.0


@njit(cache=True)
def _apply_at(levels, at, v, out):
    """out = A v on grid ``at``."""
    if at == 0:
        _apply_fine(levels[0][4], v, out)
    else:
        _apply(levels[at], v, out)


@njit(cache=True)
def _apply(coef, v, out):
    """out = A v on a coarser grid, with its per-pixel coefficients; v is 0 off the
    unknowns."""
    c = v.shape[0]
    _, hp, wp = coef.shape
    for ch in range(c):
        for y in range(1, hp - 1):
            for q in range(1, wp - 1):
                out[ch, y, q] = (coef[0, y, q] * v[ch, y - 1, q - 1]
                                 + coef[1, y, q] * v[ch, y - 1, q]
                                 + coef[2, y, q] * v[ch, y - 1, q + 1]
                                 + coef[3, y, q] * v[ch, y, q - 1]
                                 + coef[4, y, q] * v[ch, y, q]
                                 + coef[5, y, q] * v[ch, y, q + 1]
                                 + coef[6, y, q] * v[ch, y + 1, q - 1]
                                 + coef[7, y, q] * v[ch, y + 1, q]
                                 + coef[8, y, q] * v[ch, y + 1, q + 1])


@njit(cache=True)
def _coarsest(coef, r):
    """The coarsest grid (at most 64 pixels) solved directly."""
    c = r.shape[0]
    _, hp, wp = coef.shape
    idx = np.full((hp, wp), -1, np.int64)
    m = 0
    for y in range(1, hp - 1):
        for q in range(1, wp - 1):
            if coef[4, y, q] > 0.0:
                idx[y, q] = m
                m += 1
    z = np.zeros_like(r)
    if m == 0:
        return z
    dense = np.zeros((m, m))
    b = np.zeros((m, c))
    for y in range(1, hp - 1):
        for q in range(1, wp - 1):
            k = idx[y, q]
            if k < 0:
                continue
            for ch in range(c):
                b[k, ch] = r[ch, y, q]
            for o in range(9):
                j = idx[y + _DY[o], q + _DX[o]]
                if j >= 0:
                    dense[k, j] += coef[o, y, q]
    x = _cholesky_solve(dense, b)
    for y in range(1, hp - 1):
        for q in range(1, wp - 1):
            k = idx[y, q]
            if k >= 0:
                for ch in range(c):
                    z[ch, y, q] = x[k, ch]
    return z


@njit(cache=True)
def _cholesky_solve(a, b):
    """``a^-1 b`` for a small symmetric positive definite ``a``."""
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
def _vcycle(levels, inv, r):
    """One V-cycle (a loop, not a recursion: Numba's cache cannot hold a recursive
    function): a Jacobi step from zero on the way down, a coarse correction and another
    Jacobi step on the way up; the steps are their own adjoints, so the cycle is a
    symmetric operator."""
    last = len(levels) - 1
    rhs = [r]
    guesses = []
    c = r.shape[0]
    for at in range(last):
        coef, d = levels[at], inv[at]
        _, hp, wp = coef.shape
        z = np.empty_like(rhs[at])
        for ch in range(c):
            for y in range(hp):
                for q in range(wp):
                    z[ch, y, q] = d[y, q] * rhs[at][ch, y, q]
        res = np.zeros_like(z)
        _apply_at(levels, at, z, res)
        chp, cwp = levels[at + 1].shape[1], levels[at + 1].shape[2]
        coarse = np.zeros((c, chp, cwp))
        for ch in range(c):
            for y in range(1, hp - 1):
                for q in range(1, wp - 1):
                    coarse[ch, (y - 1) // 2 + 1, (q - 1) // 2 + 1] += \
                        rhs[at][ch, y, q] - res[ch, y, q]
        guesses.append(z)
        rhs.append(coarse)
    correction = _coarsest(levels[last], rhs[last])
    for at in range(last - 1, -1, -1):
        coef, d = levels[at], inv[at]
        _, hp, wp = coef.shape
        z = guesses[at]
        for ch in range(c):
            for y in range(1, hp - 1):
                for q in range(1, wp - 1):
                    if d[y, q] > 0.0:
                        z[ch, y, q] += _OVER * correction[ch, (y - 1) // 2 + 1, (q - 1) // 2 + 1]
        res = np.zeros_like(z)
        _apply_at(levels, at, z, res)
        for ch in range(c):
            for y in range(hp):
                for q in range(wp):
                    z[ch, y, q] += d[y, q] * (rhs[at][ch, y, q] - res[ch, y, q])
        correction = z
    return correction


@njit(cache=True)
def _pcg(levels, inv, rhs, tolerance):
    """Conjugate gradients on the finest grid, one scalar recurrence per channel, each
    step preconditioned by a V-cycle; stops when every channel's worst residual (as a
    share of the pixel's weight) is within ``tolerance``, or after as many iterations
    as the grid has pixels (exact arithmetic would have converged by then). Returns the
    solution and the worst residual it stopped at."""
    c, hp, wp = rhs.shape
    d = inv[0]
    sol = np.zeros_like(rhs)
    r = rhs.copy()
    z = _vcycle(levels, inv, r)
    p = z.copy()
    rz = _dots(r, z)
    ap = np.zeros_like(rhs)
    worst = 0.0
    for ch in range(c):
        for y in range(hp):
            for q in range(wp):
                worst = max(worst, abs(r[ch, y, q]) * d[y, q])
    for _ in range(hp * wp + 50):
        if worst <= tolerance:
            break
        _apply_at(levels, 0, p, ap)
        pap = _dots(p, ap)
        worst = 0.0
        for ch in range(c):
            alpha = rz[ch] / pap[ch] if pap[ch] > 0.0 else 0.0
            for y in range(hp):
                for q in range(wp):
                    sol[ch, y, q] += alpha * p[ch, y, q]
                    r[ch, y, q] -= alpha * ap[ch, y, q]
                    worst = max(worst, abs(r[ch, y, q]) * d[y, q])
        z = _vcycle(levels, inv, r)
        rz_next = _dots(r, z)
        for ch in range(c):
            beta = rz_next[ch] / rz[ch] if rz[ch] > 0.0 else 0.0
            for y in range(hp):
                for q in range(wp):
                    p[ch, y, q] = z[ch, y, q] + beta * p[ch, y, q]
        rz = rz_next
    return sol, worst


@njit(cache=True)
def _dots(a, b):
    """Per channel, the dot product of two grids."""
    out = np.zeros(a.shape[0])
    for ch in range(a.shape[0]):
        s = 0.0
        for y in range(a.shape[1]):
            for q in range(a.shape[2]):
                s += a[ch, y, q] * b[ch, y, q]
        out[ch] = s
    return out
