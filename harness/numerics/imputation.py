"""ROAD's noisy linear imputation (Rong, Leemann et al., ICML 2022): every removed pixel
takes the weighted mean of its eight neighbours (1/6 for the four sharing a side, 1/12
for the diagonal ones, the weights of missing neighbours at the border dropped), all
removed pixels at once, then Gaussian noise is added to them.

Per image that is the sparse linear system ``(D - W_rr) x = W_rk k`` over the removed
pixels x (k: the kept ones), one right-hand side per channel. ``D - W_rr`` is symmetric
and, wherever a region of removed pixels touches a kept one, positive definite. Plain
conjugate gradients need hundreds of iterations on a region of tens of thousands of
pixels (its condition grows with the region's area), so they are preconditioned by a
multigrid V-cycle: the grid is halved again and again by keeping every other pixel
of every other row, a finer grid's values are the bilinear interpolation P of the
coarser one's, each coarser grid's system is P^T A P of the finer one's (Galerkin: a
9-point stencil with its own coefficients per pixel), and a Jacobi step before and
after each coarse correction removes what a coarser grid cannot see. The cycle is
symmetric, so the iteration is still conjugate gradients. Bilinear interpolation
roughly halves the iterations that merging 2 x 2 pixels into one (a piecewise constant
P) needs: about 5 instead of 11 to 14 per thousandfold on ROAD's copies of a 224 px
image.

The iterations run in float32, which halves the memory they stream and doubles the
lanes of each vector instruction, in rounds of iterative refinement: each round solves
for the correction to the float64 solution from the float64 residual, scaled to unit
size, and reduces its error a thousandfold, far above float32's floor. The stopping
rule is on the error, not the residual: a V-cycle of the residual is an estimate of the
error left (the cycle approximates the inverse), and a small residual in the smooth
modes of a large region can hide an error a hundred times larger. The last estimate is
always taken from the float64 residual, so rounding in float32 cannot pass for an
answer.

Every grid is stored whole, padded by a pixel of zeros, with zero coefficients and
values off the unknowns: the stencils then run along contiguous rows without a
neighbour table or a branch, which the compiler vectorises. Each row is swept only over
its span, from its first unknown to its last, which at ROAD's smaller fractions is a
third of the image. The passes over the finest grid are fused where a row's neighbours
allow (the search direction with its product, the update of the residual with the next
cycle's first Jacobi step, the cycle's last step with the products the iteration
needs). Each thread allocates its grids once and reuses them for all the copies it
imputes.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
from numba import njit, prange

# The solve stops when the estimated error of every removed pixel is below this (pixel
# units): 250 times below ROAD's own noise (0.01), and with room under the 1e-4 to which
# the imputation is checked against a direct solve (errors measured up to 4.8e-5).
TOLERANCE = 4e-5
_DIRECT = 64  # pixels at or below which a grid is solved directly
_REDUCTION = 1e-3  # what a float32 round reduces the error by
_ROUNDS = 8  # rounds before a solve that has not converged gives up
_STALL = 3  # iterations without a new smallest estimate that end a round
_DY = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1], np.int64)
_DX = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1], np.int64)
_W = np.array([1 / 12, 1 / 6, 1 / 12, 1 / 6, 0.0, 1 / 6, 1 / 12, 1 / 6, 1 / 12])


def impute(images: np.ndarray, removed: np.ndarray, noise: np.ndarray | None = None,
           source: np.ndarray | None = None, tolerance: float = TOLERANCE) -> np.ndarray:
    """Fill the removed pixels of copies of images by noisy linear imputation.

    Args:
        images: ``(N, H, W, C) float32`` pixel images.
        removed: ``(M, H, W) bool``, one mask per copy, True where a pixel is removed; at
            least one pixel of each copy must be kept where any is removed.
        noise: ``(N, H, W, C)``, a field per image: each copy adds its image's field at
            the pixels it removes. ROAD draws it normal with standard deviation 0.01, so
            every copy's removed pixels get independent draws. None adds nothing.
        source: ``(M,)`` the image of each copy; None: copy i of image i (M = N).
        tolerance: see :data:`TOLERANCE`.

    Returns:
        ``(M, H, W, C) float32``: each copy's kept pixels as its image has them, the
        removed ones imputed.

    Raises:
        ValueError: a copy has every pixel removed (nothing to impute from), or the
            shapes or sources do not match.
        ArithmeticError: a solve stopped with an estimated error above ``tolerance``:
            its pixels would not be the system's.
    """
    x = np.ascontiguousarray(images, np.float32)
    mask = np.ascontiguousarray(removed, np.bool_)
    src = np.arange(len(x)) if source is None else np.asarray(source, np.int64)
    if mask.shape[1:] != x.shape[1:3] or src.shape != mask.shape[:1]:
        raise ValueError(f"removed has shape {mask.shape}, images {x.shape}, sources "
                         f"{src.shape}: one mask of each image's size per copy")
    if len(src) and not (0 <= src.min() and src.max() < len(x)):
        raise ValueError(f"sources run from {src.min()} to {src.max()}, not within the "
                         f"{len(x)} images")
    every = mask.reshape(len(mask), -1).all(axis=1)
    if every.any():
        raise ValueError(f"copy {int(np.argmax(every))} has every pixel removed: "
                         "nothing to impute from")
    if noise is None:
        add = np.zeros((1, 1, 1, x.shape[3]), np.float32)
    else:
        add = np.ascontiguousarray(noise, np.float32)
        if add.shape != x.shape:
            raise ValueError(f"noise has shape {add.shape}, not the images' {x.shape}")
    out = np.empty((len(mask), *x.shape[1:]), np.float32)
    estimate = np.zeros(len(mask))
    _impute_all(x, mask, src, float(tolerance), add, noise is not None, out, estimate,
                max(1, min(len(mask), numba.get_num_threads())))
    failed = ~(estimate <= tolerance)  # NaN fails too
    if failed.any():
        i = int(np.argmax(failed))
        raise ArithmeticError(f"imputation of copy {i} stopped with an estimated error of "
                              f"{estimate[i]:.2g}, above {tolerance:g}")
    return out


@njit(cache=True, parallel=True)
def _impute_all(x, mask, src, tolerance, noise, noisy, out, estimate, threads):
    """Copies split among the threads, each thread's grids allocated once."""
    _, h, w, c = x.shape
    for t in prange(threads):
        work = _grids(h, w, c)
        for i in range(t, len(mask), threads):
            out[i] = x[src[i]]
            estimate[i] = _impute_one(x[src[i]], mask[i], tolerance,
                                      noise[src[i] if noisy else 0], noisy, out[i], work)


# The grids of one solve, every one padded by a pixel: the fine system in float64
# (diagonal, right-hand side, solution, residual), which pixels are unknown, the float32
# iteration's vectors and two rows of scratch (a grid's, a coarser one's), and per grid
# (0 the finest) the stencil in float64 and float32, its inverse diagonal, the cycle's
# right-hand side, smoothed guess and output, each row's span (the columns from its
# first unknown to its last) and the interpolation's weights down a column and along a
# row; per grid but the coarsest, the stencil half coarsened (see :func:`_coarsen`),
# zero between copies, and three rows of couplings as scratch. Every float32 grid is
# zero outside the spans, which is all the iteration reads or writes.
_Grids = namedtuple("_Grids", "diag diag32 rhs sol res unknown r e p ap row crow coef coef32 "
                               "inv b z t lo hi wy wx half scratch")


@njit(cache=True)
def _grids(h, w, c):
    hp, wp = h + 2, w + 2
    r = np.zeros((c, hp, wp), np.float32)
    coef = [np.zeros((9, 1, 1))]  # the finest grid's stencil is fixed: unused
    coef32 = [np.zeros((9, 1, 1), np.float32)]
    inv = [np.zeros((hp, wp), np.float32)]
    b = [r]
    z = [np.zeros((c, hp, wp), np.float32)]
    t = [np.zeros((c, hp, wp), np.float32)]
    lo = [np.zeros(hp, np.int64)]
    hi = [np.zeros(hp, np.int64)]
    wy, wx, half = [_weights(h)], [_weights(w)], []
    while h * w > _DIRECT:
        half.append(np.zeros((9, h + 2, (w + 1) // 2 + 2)))
        h, w = (h + 1) // 2, (w + 1) // 2
        coef.append(np.zeros((9, h + 2, w + 2)))
        coef32.append(np.zeros((9, h + 2, w + 2), np.float32))
        inv.append(np.zeros((h + 2, w + 2), np.float32))
        b.append(np.zeros((c, h + 2, w + 2), np.float32))
        z.append(np.zeros((c, h + 2, w + 2), np.float32))
        t.append(np.zeros((c, h + 2, w + 2), np.float32))
        lo.append(np.zeros(h + 2, np.int64))
        hi.append(np.zeros(h + 2, np.int64))
        wy.append(_weights(h))
        wx.append(_weights(w))
    fine64 = np.zeros((3, c, hp, wp))
    fine32 = np.zeros((3, c, hp, wp), np.float32)
    return _Grids(diag=np.zeros((hp, wp)), diag32=np.zeros((hp, wp), np.float32),
                  rhs=fine64[0], sol=fine64[1], res=fine64[2],
                  unknown=np.zeros((hp, wp), np.float32), r=r, e=fine32[0], p=fine32[1],
                  ap=fine32[2], row=np.zeros(wp + 4, np.float32),
                  crow=np.zeros(wp + 4, np.float32), coef=coef, coef32=coef32, inv=inv, b=b,
                  z=z, t=t, lo=lo, hi=hi, wy=wy, wx=wx, half=half,
                  scratch=np.zeros((3, wp + 4)))


@njit(cache=True)
def _weights(n):
    """The interpolation along an axis of n pixels (padded: 1 to n) from its coarse
    points, the odd ones, as two weights per pixel q: of the coarse point at or left of
    it, (q + 1) // 2 on the coarser axis, and of the next. An odd pixel is a coarse
    point, (1, 0); an even one lies halfway, (1/2, 1/2), but the last pixel of an even
    axis has no coarse point right of it and takes its left one's value, (1, 0): the
    image's border is free, and a correction that fell to zero there would leave a
    smooth error near the border to the Jacobi steps. Zero on the padding, and past it,
    where the passes read ahead."""
    out = np.zeros((2, n + 4), np.float32)
    for q in range(1, n + 1):
        odd = q % 2 == 1 or q == n
        out[0, q] = 1.0 if odd else 0.5
        out[1, q] = 0.0 if odd else 0.5
    return out


@njit(cache=True)
def _impute_one(image, mask, tolerance, noise, noisy, out, g):
    """One copy: its system, the solve, the removed pixels written into ``out`` (which
    holds the image) with the noise field's values there. Returns the estimated error
    the solve stopped at."""
    h, w, c = image.shape
    if not mask.any():
        return 0.0
    _fine_system(image, mask, g)
    last = len(g.coef) - 1
    if last == 0:  # a grid small enough to solve directly
        g.sol[:] = _direct(_fine_stencil(mask, g.diag), g.rhs)
        estimate = 0.0
    else:
        for at in range(last):
            _coarsen(at, g)
            _spans(g.coef[at + 1][4], g.lo[at + 1], g.hi[at + 1])
        _inverse(g.diag, g.inv[0])
        g.diag32[:] = g.diag
        for at in range(1, last + 1):
            g.coef32[at][:] = g.coef[at]
            _inverse(g.coef[at][4], g.inv[at])
        for at in range(last + 1):  # the previous image's values, outside these spans
            g.b[at][:] = 0.0
            g.z[at][:] = 0.0
            g.t[at][:] = 0.0
        g.e[:] = 0.0
        g.p[:] = 0.0
        g.ap[:] = 0.0
        estimate = _solve(g, _factor(g.coef[last]), tolerance)
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                for ch in range(c):
                    out[y, q, ch] = g.sol[ch, y + 1, q + 1] + (noise[y, q, ch] if noisy
                                                               else np.float32(0.0))
    return estimate


@njit(cache=True)
def _spans(diag, lo, hi):
    """Each row's columns from its first unknown (diagonal > 0) to its last; lo = hi = 0
    for a row without one."""
    hp, wp = diag.shape
    for y in range(hp):
        lo[y] = 0
        hi[y] = 0
        for q in range(wp):
            if diag[y, q] > 0.0:
                if hi[y] == 0:
                    lo[y] = q
                hi[y] = q + 1


@njit(cache=True, fastmath=True)
def _fine_system(image, mask, g):
    """The finest grid: which pixels are unknown, their diagonal (the weight of their
    neighbours inside the image: 1 but at the border), each row's span and, over it,
    the right-hand side (the kept neighbours' weighted values), zero elsewhere."""
    h, w, c = image.shape
    kept = g.res  # scratch until the solve, zero but inside the image
    for y in range(h):
        u, removed = g.unknown[y + 1, 1:], mask[y]
        for q in range(w):
            u[q] = np.float32(removed[q])
        for ch in range(c):
            k = kept[ch, y + 1, 1:]
            for q in range(w):
                k[q] = image[y, q, ch] * (np.float32(1.0) - u[q])
    g.diag[:] = g.unknown
    for y in range(h):  # the border's pixels lack neighbours
        for q in range(0, w, 1 if y == 0 or y == h - 1 else max(1, w - 1)):
            if mask[y, q]:
                total = 0.0
                for o in range(9):
                    if 0 <= y + _DY[o] < h and 0 <= q + _DX[o] < w:
                        total += _W[o]
                g.diag[y + 1, q + 1] = total
    lo, hi = g.lo[0], g.hi[0]
    _spans(g.diag, lo, hi)
    for y in range(1, h + 1):
        s0, n = lo[y], hi[y] - lo[y]
        for ch in range(c):
            g.rhs[ch, y, :] = 0.0
            up, mid, down = kept[ch, y - 1, s0 - 1:], kept[ch, y, s0 - 1:], kept[ch, y + 1, s0 - 1:]
            u, b = g.unknown[y, s0:], g.rhs[ch, y, s0:]
            for i in range(n):
                b[i] = u[i] * _weighted_row(up, mid, down, i)
    kept[:] = 0.0  # the solve writes the residual within the spans and reads it all


@njit(cache=True, fastmath=True)
def _coarsen(at, g):
    """The stencil of grid ``at + 1``, P^T A P for P the bilinear interpolation from it
    onto grid ``at``'s unknowns (:func:`_weights` along each axis). P is separable, so
    the product is taken along the rows first, into g.half (grid ``at``'s rows, the
    coarse grid's columns), then across them; each is the same product of three-point
    couplings (:func:`_galerkin`), and a stencil of nine points stays one of nine."""
    cf, half, out, s = g.coef[at], g.half[at], g.coef[at + 1], g.scratch
    lo, hi, wx, wy = g.lo[at], g.hi[at], g.wx[at], g.wy[at]
    hp, wp = lo.size, wx.shape[1] - 2
    for y in range(1, hp - 1):
        if hi[y] <= lo[y]:
            continue
        j0, j1 = _parents(lo[y], hi[y], wp)  # the coarse points of the span's pixels
        f0, m = 2 * j0 - 2, j1 - j0  # the first pixel they gather from
        for dy in range(-1, 2):
            o = (dy + 1) * 3
            tm, t0, tp = half[o, y, j0:], half[o + 1, y, j0:], half[o + 2, y, j0:]
            if at == 0:  # the finest grid's couplings: the fixed weights on the unknowns
                s[:, f0:hi[y] + 2] = 0.0
                n, here, there = hi[y] - lo[y], g.unknown[y, lo[y]:], g.unknown[y + dy, lo[y] - 1:]
                for dx in range(-1, 2):
                    row = s[dx + 1, lo[y]:]
                    if dy == 0 and dx == 0:
                        row[:n] = g.diag[y, lo[y]:hi[y]]
                    else:
                        weight = -_W[o + dx + 1]
                        for i in range(n):
                            row[i] = weight * (here[i] * there[i + dx + 1])
                _galerkin(s[0, f0:], s[1, f0:], s[2, f0:], wx[0, f0:], wx[1, f0:], tm, t0, tp, m)
            else:
                _galerkin(cf[o, y, f0:], cf[o + 1, y, f0:], cf[o + 2, y, f0:], wx[0, f0:],
                          wx[1, f0:], tm, t0, tp, m)
    out[:] = 0.0
    for cy in range(1, out.shape[1] - 1):
        y0, j0, j1 = 2 * cy - 2, out.shape[2], 0
        for y in range(y0, min(y0 + 3, hp - 1)):
            if hi[y] > lo[y]:
                first, end = _parents(lo[y], hi[y], wp)
                j0, j1 = min(j0, first), max(j1, end)
        wra, wla, wlc, wrc = wy[1, y0], wy[0, y0], wy[0, y0 + 2], wy[1, y0 + 2]
        for dx in range(3 if j1 > j0 else 0):
            ma, mb, mc = half[dx, y0, j0:], half[dx, y0 + 1, j0:], half[dx, y0 + 2, j0:]
            za, zb, zc = half[3 + dx, y0, j0:], half[3 + dx, y0 + 1, j0:], half[3 + dx, y0 + 2, j0:]
            pa, pb, pc = half[6 + dx, y0, j0:], half[6 + dx, y0 + 1, j0:], half[6 + dx, y0 + 2, j0:]
            tm, t0, tp = out[dx, cy, j0:], out[3 + dx, cy, j0:], out[6 + dx, cy, j0:]
            for k in range(j1 - j0):  # :func:`_galerkin` with whole rows for pixels
                t0[k] = (wra * (pa[k] + za[k] * wra) + mb[k] * wra + zb[k] + pb[k] * wlc
                         + wlc * (mc[k] + zc[k] * wlc))
                tp[k] = pb[k] * wrc + wlc * (zc[k] * wrc + pc[k])
                tm[k] = wra * (ma[k] + za[k] * wla) + mb[k] * wla
    for y in range(1, hp - 1):  # g.half back to zeros, which the next copy assumes
        if hi[y] > lo[y]:
            j0, j1 = _parents(lo[y], hi[y], wp)
            half[:, y, j0:j1] = 0.0


@njit(cache=True, inline="always")
def _parents(lo, hi, padded):
    """The coarse points that pixels ``lo`` to ``hi`` (excluded) of an axis of
    ``padded`` pixels, padding included, interpolate from (:func:`_weights`)."""
    return (lo + 1) // 2, min((hi + 1) // 2, (padded - 1) // 2) + 1


@njit(cache=True, inline="always")
def _galerkin(sm, s0, sp, wl, wr, tm, t0, tp, m):
    """One axis of P^T S P: from each pixel's coupling to the one before it (sm), to
    itself (s0) and to the one after (sp), the couplings of m coarse points to theirs
    (tm, t0, tp). Coarse point k gathers pixels 2k (weight wr), 2k + 1 (1) and 2k + 2
    (wl) of arrays that start two pixels before its own. The weights are 1/2 but on the
    padding, where every coupling is zero, and at an even axis's last pixel, which only
    the last coarse point can gather: so the loop takes 1/2, which vectorises, and the
    last point its true weights."""
    h = 0.5
    for k in range(m - 1):
        a, b, c = 2 * k, 2 * k + 1, 2 * k + 2
        t0[k] = (h * (sp[a] + sm[b] + sp[b] + sm[c]) + h * h * (s0[a] + s0[c]) + s0[b])
        tp[k] = h * (sp[b] + sp[c]) + h * h * s0[c]
        tm[k] = h * (sm[a] + sm[b]) + h * h * s0[a]
    k = m - 1
    a, b, c = 2 * k, 2 * k + 1, 2 * k + 2
    wra, wla, wlc, wrc = wr[a], wl[a], wl[c], wr[c]
    t0[k] = (wra * (sp[a] + s0[a] * wra) + sm[b] * wra + s0[b] + sp[b] * wlc
             + wlc * (sm[c] + s0[c] * wlc))
    tp[k] = sp[b] * wrc + wlc * (s0[c] * wrc + sp[c])
    tm[k] = wra * (sm[a] + s0[a] * wla) + sm[b] * wla


@njit(cache=True)
def _inverse(diag, out):
    """1 / the diagonal on the unknowns, 0 elsewhere (the Jacobi step's scale)."""
    hp, wp = diag.shape
    for y in range(hp):
        for q in range(wp):
            out[y, q] = 1.0 / diag[y, q] if diag[y, q] > 0.0 else 0.0


@njit(cache=True)
def _solve(g, factor, tolerance):
    """Rounds of float32 conjugate gradients, each on the correction the float64
    residual asks for; a round starts with the estimate of the error left, and the
    solve ends when that is within tolerance. Once the rounds or the iterations are
    spent, a last round only checks. So the estimate returned is always that of the
    solution returned, from its float64 residual."""
    c, hp, wp = g.rhs.shape
    lo, hi = g.lo[0], g.hi[0]
    g.sol[:] = 0.0
    budget = hp * wp + 50  # beyond this, exact arithmetic would have converged
    estimate = np.inf
    for at in range(_ROUNDS + 1):
        _residual64(g.diag, g.unknown, g.sol, g.rhs, g.res, lo, hi)
        scale = _absmax64(g.res)
        if scale == 0.0:
            return 0.0
        for ch in range(c):  # unit size, so float32 holds every round's equation alike
            for y in range(1, hp - 1):
                s0, s1 = lo[y], hi[y]
                r, res, e = g.r[ch, y, s0:s1], g.res[ch, y, s0:], g.e[ch, y, s0:]
                z, inv = g.z[0][ch, y, s0:], g.inv[0][y, s0:]
                for i in range(r.size):
                    r[i] = res[i] / scale
                    e[i] = 0.0
                    z[i] = inv[i] * r[i]
        used, estimate = _pcg32(g, factor, tolerance / scale,
                                budget if at < _ROUNDS else 0)
        estimate *= scale
        if used == 0:  # the estimate of g.sol as it stands
            break
        budget -= used
        for ch in range(c):
            for y in range(1, hp - 1):
                sol, e = g.sol[ch, y, lo[y]:hi[y]], g.e[ch, y, lo[y]:]
                for i in range(sol.size):
                    sol[i] += scale * e[i]
    return estimate


@njit(cache=True, fastmath=True)
def _residual64(diag, unknown, v, rhs, out, lo, hi):
    """out = rhs - A v on the finest grid in float64."""
    c, hp, wp = v.shape
    for ch in range(c):
        for y in range(1, hp - 1):
            s0, n = lo[y], hi[y] - lo[y]
            up, mid, down = v[ch, y - 1, s0 - 1:], v[ch, y, s0 - 1:], v[ch, y + 1, s0 - 1:]
            u, d, b, o = unknown[y, s0:], diag[y, s0:], rhs[ch, y, s0:], out[ch, y, s0:]
            for i in range(n):
                o[i] = u[i] * (b[i] - d[i] * mid[i + 1] + _weighted_row(up, mid, down, i))


@njit(cache=True)
def _pcg32(g, factor, tolerance, budget):
    """Solve A e = r in float32 from e = 0 (r is overwritten by the residual, and g.z[0]
    must hold D^-1 r), preconditioned by a V-cycle, whose output is the estimate of the
    error left. Stops at once if the first estimate is within tolerance; otherwise when
    it has shrunk by :data:`_REDUCTION` (or reached half the tolerance), or stopped
    shrinking, or the budget of iterations is spent. Returns the iterations used and
    the last estimate."""
    c = g.r.shape[0]
    z, rz, estimate = _vcycle(g, factor)
    if estimate <= tolerance:
        return 0, estimate
    target = max(0.5 * tolerance, _REDUCTION * estimate)
    best, since, used = estimate, 0, 0
    alpha = np.zeros(c, np.float32)
    beta = np.zeros(c, np.float32)  # 0: the first direction is z
    while used < budget and estimate > target and since < _STALL:
        used += 1
        pap = _direction_product(z, beta, g)
        for ch in range(c):
            alpha[ch] = rz[ch] / pap[ch] if pap[ch] > 0.0 else 0.0
        _step(alpha, g)
        z, rz_next, estimate = _vcycle(g, factor)
        for ch in range(c):
            beta[ch] = rz_next[ch] / rz[ch] if rz[ch] > 0.0 else 0.0
        rz = rz_next
        if estimate < best:
            best, since = estimate, 0
        else:
            since += 1
    return used, estimate


@njit(cache=True, fastmath=True)
def _step(alpha, g):
    """e += alpha p, r -= alpha A p, and the next cycle's first Jacobi step on the finest
    grid, z = D^-1 r, while r is at hand."""
    p, ap, e, r, z, inv, lo, hi = g.p, g.ap, g.e, g.r, g.z[0], g.inv[0], g.lo[0], g.hi[0]
    for ch in range(p.shape[0]):
        a = alpha[ch]
        for y in range(1, p.shape[1] - 1):
            s0, n = lo[y], hi[y] - lo[y]
            pr, apr, er, rr = p[ch, y, s0:], ap[ch, y, s0:], e[ch, y, s0:], r[ch, y, s0:]
            zr, ir = z[ch, y, s0:], inv[y, s0:]
            for i in range(n):
                er[i] += a * pr[i]
                rr[i] -= a * apr[i]
                zr[i] = ir[i] * rr[i]


@njit(cache=True, fastmath=True)
def _direction_product(z, beta, g):
    """p = z + beta p, then A p, row by row a row behind (each row of A p needs the rows
    of p on either side). Returns per channel p . A p."""
    p, ap, unknown, diag, lo, hi = g.p, g.ap, g.unknown, g.diag32, g.lo[0], g.hi[0]
    c, hp, wp = p.shape
    out = np.zeros(c)
    for ch in range(c):
        b = beta[ch]
        for y in range(1, hp):
            if y < hp - 1:
                zr, pr = z[ch, y, lo[y]:hi[y]], p[ch, y, lo[y]:]
                for i in range(zr.size):
                    pr[i] = zr[i] + b * pr[i]
            y0 = y - 1
            if y0 < 1 or hi[y0] <= lo[y0]:
                continue
            s0, n = lo[y0], hi[y0] - lo[y0]
            up, mid, down = p[ch, y0 - 1, s0 - 1:], p[ch, y0, s0 - 1:], p[ch, y0 + 1, s0 - 1:]
            u, d, o = unknown[y0, s0:], diag[y0, s0:], ap[ch, y0, s0:]
            for i in range(n):
                o[i] = u[i] * (d[i] * mid[i + 1] - _weighted_row32(up, mid, down, i))
            part = np.float32(0.0)  # a float32 row sum vectorises; rows add in float64
            for i in range(n):
                part += mid[i + 1] * o[i]
            out[ch] += part
    return out


@njit(cache=True)
def _absmax64(a):
    """The largest magnitude in a float64 array (NaN if any is); see :func:`_top`."""
    top = np.zeros(1, np.int64)
    top[0] = _top(a.ravel().view(np.int64), np.int64(0x7FFFFFFFFFFFFFFF))
    return top.view(np.float64)[0]


@njit(cache=True)
def _top(bits, sign):
    """The largest of floats' bit patterns without their sign (0 for none): that orders
    magnitudes as their values (a NaN above all), and vectorises where a float maximum
    does not."""
    top = sign - sign
    for i in range(bits.size):
        v = bits[i] & sign
        top = v if v > top else top
    return top


@njit(cache=True, inline="always")
def _weighted_row(up, mid, down, i):
    """The eight neighbours of column i + 1 of the middle of three rows, weighted 1/6
    (sides) and 1/12 (corners)."""
    return ((up[i + 1] + down[i + 1] + mid[i] + mid[i + 2]) / 6.0
            + (up[i] + up[i + 2] + down[i] + down[i + 2]) / 12.0)


@njit(cache=True, inline="always")
def _weighted_row32(up, mid, down, i):
    """:func:`_weighted_row` in float32."""
    return ((up[i + 1] + down[i + 1] + mid[i] + mid[i + 2]) * np.float32(1.0 / 6.0)
            + (up[i] + up[i + 2] + down[i] + down[i + 2]) * np.float32(1.0 / 12.0))


@njit(cache=True, fastmath=True)
def _fine_row(unknown, diag, z, b, y, s0, n, row):
    """row[q] = (b - A z)[y, q] over the n columns from s0 of a row of the finest grid (0
    off the unknowns). Rows are sliced where the span starts so that every index counts
    up from 0: an index Numba cannot prove non-negative stops the loop vectorising."""
    up, mid, down = z[y - 1, s0 - 1:], z[y, s0 - 1:], z[y + 1, s0 - 1:]
    u, d, br, out = unknown[y, s0:], diag[y, s0:], b[y, s0:], row[s0:]
    for i in range(n):
        out[i] = u[i] * (br[i] - d[i] * mid[i + 1] + _weighted_row32(up, mid, down, i))


@njit(cache=True, fastmath=True)
def _coarse_row(cf, z, b, y, s0, n, row):
    """row[q] = (b - A z)[y, q] over the n columns from s0 of a row of a coarse grid."""
    up, mid, down = z[y - 1, s0 - 1:], z[y, s0 - 1:], z[y + 1, s0 - 1:]
    c0, c1, c2 = cf[0, y, s0:], cf[1, y, s0:], cf[2, y, s0:]
    c3, c4, c5 = cf[3, y, s0:], cf[4, y, s0:], cf[5, y, s0:]
    c6, c7, c8 = cf[6, y, s0:], cf[7, y, s0:], cf[8, y, s0:]
    br, out = b[y, s0:], row[s0:]
    for i in range(n):
        out[i] = br[i] - (c0[i] * up[i] + c1[i] * up[i + 1] + c2[i] * up[i + 2]
                          + c3[i] * mid[i] + c4[i] * mid[i + 1] + c5[i] * mid[i + 2]
                          + c6[i] * down[i] + c7[i] * down[i + 1] + c8[i] * down[i + 2])


@njit(cache=True)
def _residual_row(fine, unknown, diag, cf, z, b, y, lo, hi, row):
    """row[q] = (b - A z)[y, q] over [lo, hi) on the finest grid or a coarse one."""
    if hi <= lo:
        return
    if fine:
        _fine_row(unknown, diag, z, b, y, lo, hi - lo, row)
    else:
        _coarse_row(cf, z, b, y, lo, hi - lo, row)


@njit(cache=True, fastmath=True)
def _down(at, g):
    """On the way down from grid ``at``: a Jacobi step from zero, z = D^-1 b (on the
    finest grid already taken where r was last written), and the coarser grid's
    right-hand side, P^T (b - A z): the residual gathered by the interpolation's
    weights, a row at a time."""
    inv, b, z, nb, row = g.inv[at], g.b[at], g.z[at], g.b[at + 1], g.row
    lo, hi, clo, chi = g.lo[at], g.hi[at], g.lo[at + 1], g.hi[at + 1]
    fine, cf = at == 0, g.coef32[at]
    c, hp, wp = z.shape
    for ch in range(c if not fine else 0):
        for y in range(1, hp - 1):
            zr, ir, br = z[ch, y, lo[y]:hi[y]], inv[y, lo[y]:], b[ch, y, lo[y]:]
            for i in range(zr.size):
                zr[i] = ir[i] * br[i]
    wx, wy, crow, half = g.wx[at], g.wy[at], g.crow, np.float32(0.5)
    for ch in range(c):
        for cy in range(1, nb.shape[1] - 1):
            nb[ch, cy, clo[cy]:chi[cy]] = 0.0
        for y in range(1, hp - 1):
            if hi[y] <= lo[y]:
                continue
            j0, j1 = _parents(lo[y], hi[y], wp)
            f0 = 2 * j0 - 2  # the first pixel the span's coarse points gather from
            row[f0:lo[y]] = 0.0
            row[hi[y]:hi[y] + 2] = 0.0
            _residual_row(fine, g.unknown, g.diag32, cf, z[ch], b[ch], y, lo[y], hi[y], row)
            r, cr, k, wl, wr = row[f0:], crow[j0:], j1 - j0 - 1, wx[0, f0:], wx[1, f0:]
            for i in range(k):  # 1/2 but at the last point, as in :func:`_galerkin`
                cr[i] = r[2 * i + 1] + half * (r[2 * i] + r[2 * i + 2])
            cr[k] = wr[2 * k] * r[2 * k] + r[2 * k + 1] + wl[2 * k + 2] * r[2 * k + 2]
            cy, upper, lower = (y + 1) // 2, wy[0, y], wy[1, y]
            into = nb[ch, cy, j0:j1]
            for k in range(into.size):
                into[k] += upper * cr[k]
            if lower > 0.0:
                into = nb[ch, cy + 1, j0:j1]
                for k in range(into.size):
                    into[k] += lower * cr[k]


@njit(cache=True, fastmath=True)
def _up(at, g, correction, rt):
    """On the way up to grid ``at``: the coarser grid's correction, interpolated, added
    to z on the unknowns, then a Jacobi step, into t. On the finest grid, while each row
    of t is at hand, adds its product with r to ``rt`` per channel and returns its
    largest magnitude."""
    inv, b, z, t, row, lo, hi = g.inv[at], g.b[at], g.z[at], g.t[at], g.row, g.lo[at], g.hi[at]
    fine, cf = at == 0, g.coef32[at]
    c, hp, wp = z.shape
    wx, wy, crow, half = g.wx[at], g.wy[at], g.crow, np.float32(0.5)
    for ch in range(c):
        for y in range(1, hp - 1):
            if lo[y] >= hi[y]:
                continue
            j0, j1 = _parents(lo[y], hi[y], wp)
            cy, upper, lower = (y + 1) // 2, wy[0, y], wy[1, y]
            above, below, cr = correction[ch, cy, j0:], correction[ch, cy + 1, j0:], crow[j0:]
            for k in range(j1 - j0 + 1):  # interpolated down the column, then along the row
                cr[k] = upper * above[k] + lower * below[k]
            f, k = row[2 * j0 - 1:], j1 - j0 - 1
            for i in range(k):  # 1/2 but at the last point, as in :func:`_galerkin`
                f[2 * i] = cr[i]
                f[2 * i + 1] = half * (cr[i] + cr[i + 1])
            f[2 * k] = cr[k]
            f[2 * k + 1] = wx[0, 2 * j1 - 2] * cr[k] + wx[1, 2 * j1 - 2] * cr[k + 1]
            zr, ir, rr = z[ch, y, lo[y]:hi[y]], inv[y, lo[y]:], row[lo[y]:]
            for i in range(zr.size):
                zr[i] += rr[i] * np.float32(ir[i] > 0.0)
    top = np.int32(0)
    for ch in range(c):
        for y in range(1, hp - 1):
            _residual_row(fine, g.unknown, g.diag32, cf, z[ch], b[ch], y, lo[y], hi[y], row)
            tr, zr, ir, rr = t[ch, y, lo[y]:hi[y]], z[ch, y, lo[y]:], inv[y, lo[y]:], row[lo[y]:]
            for i in range(tr.size):
                tr[i] = zr[i] + ir[i] * rr[i]
            if fine:
                br = b[ch, y, lo[y]:]
                part = np.float32(0.0)
                for i in range(tr.size):
                    part += br[i] * tr[i]
                rt[ch] += part
                top = max(top, _top(tr.view(np.int32), np.int32(0x7FFFFFFF)))
    return top


@njit(cache=True)
def _vcycle(g, factor):
    """One V-cycle on g.r (a loop, not a recursion: Numba's cache cannot hold a recursive
    function): a Jacobi step from zero on the way down, a coarse correction and another
    Jacobi step on the way up; the steps are their own adjoints, so the cycle is a
    symmetric operator. Returns its output z (g.t[0]), per channel r . z, and the
    largest magnitude in z."""
    last = len(g.coef) - 1
    for at in range(last):
        _down(at, g)
    correction = _coarse_solve(factor, g.b[last])
    rz = np.zeros(g.r.shape[0])
    top = np.zeros(1, np.int32)
    for at in range(last - 1, -1, -1):
        top[0] = _up(at, g, correction, rz)
        correction = g.t[at]
    return correction, rz, float(top.view(np.float32)[0])


@njit(cache=True)
def _fine_stencil(mask, diag):
    """The finest grid's stencil with every coefficient (only for a grid solved
    directly)."""
    h, w = mask.shape
    coef = np.zeros((9, h + 2, w + 2))
    for y in range(h):
        for q in range(w):
            if mask[y, q]:
                coef[4, y + 1, q + 1] = diag[y + 1, q + 1]
                for o in range(9):
                    yy, qq = y + _DY[o], q + _DX[o]
                    if o != 4 and 0 <= yy < h and 0 <= qq < w and mask[yy, qq]:
                        coef[o, y + 1, q + 1] = -_W[o]
    return coef


@njit(cache=True)
def _factor(coef):
    """A grid of at most :data:`_DIRECT` pixels: its unknowns' indices and the Cholesky
    factor of its matrix. A coarse grid's matrix may be singular (two coarse points
    whose interpolation reaches the same lone unknown, and nothing else, merge into
    one): a pivot that vanishes against its diagonal is left zero, which solves the
    system (its right-hand side, P^T r, has no part in the null space) with that
    point's value 0."""
    _, hp, wp = coef.shape
    idx = np.full((hp, wp), -1, np.int64)
    m = 0
    for y in range(1, hp - 1):
        for q in range(1, wp - 1):
            if coef[4, y, q] > 0.0:
                idx[y, q] = m
                m += 1
    a = np.zeros((m, m))
    for y in range(1, hp - 1):
        for q in range(1, wp - 1):
            if idx[y, q] >= 0:
                for o in range(9):
                    j = idx[y + _DY[o], q + _DX[o]]
                    if j >= 0:
                        a[idx[y, q], j] += coef[o, y, q]
    low = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= low[i, k] * low[j, k]
            if i != j:
                low[i, j] = s / low[j, j] if low[j, j] > 0.0 else 0.0
            elif s > 1e-12 * a[i, i]:
                low[i, i] = np.sqrt(s)
    return idx, low


@njit(cache=True)
def _coarse_solve(factor, r):
    """``A^-1 r`` on the grid :func:`_factor` factored, in float64."""
    idx, low = factor
    c, hp, wp = r.shape
    m = len(low)
    x = np.zeros((m, c))
    for y in range(hp):
        for q in range(wp):
            if idx[y, q] >= 0:
                for ch in range(c):
                    x[idx[y, q], ch] = r[ch, y, q]
    for ch in range(c):  # a zero pivot's unknown (see :func:`_factor`) is left at 0
        for i in range(m):
            s = x[i, ch]
            for k in range(i):
                s -= low[i, k] * x[k, ch]
            x[i, ch] = s / low[i, i] if low[i, i] > 0.0 else 0.0
        for i in range(m - 1, -1, -1):
            s = x[i, ch]
            for k in range(i + 1, m):
                s -= low[k, i] * x[k, ch]
            x[i, ch] = s / low[i, i] if low[i, i] > 0.0 else 0.0
    z = np.zeros_like(r)
    for y in range(hp):
        for q in range(wp):
            if idx[y, q] >= 0:
                for ch in range(c):
                    z[ch, y, q] = x[idx[y, q], ch]
    return z


@njit(cache=True)
def _direct(coef, rhs):
    """The finest grid solved directly (an image of at most :data:`_DIRECT` pixels)."""
    return _coarse_solve(_factor(coef), rhs)
