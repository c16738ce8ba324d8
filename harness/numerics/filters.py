"""Separable image filters in pixel space: resizing and Gaussian blur.

Both are one mechanism: per axis, each output sample is a weighted sum of a few input
samples (``taps``). The weights are computed once in NumPy; the Numba kernel only loops.

Shapes: images are ``(N, H, W, C) float32``; single-channel maps use C = 1.
"""

import functools
import math

import numpy as np
from numba import njit, prange

# ITU-R BT.601 luma, what Pillow's convert("L") uses.
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@functools.lru_cache(maxsize=64)  # a run resizes to a few sizes, many times each
def resize_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Triangle-filter taps for resizing one axis from ``n_in`` to ``n_out`` samples.

    Pixel centres are at ``i + 0.5`` (half-pixel convention). Upsampling is plain
    bilinear interpolation with edge clamping; downsampling widens the triangle by the
    scale factor (antialiasing), as Pillow's ``BILINEAR`` does, so a large image shrunk
    to a model's input does not alias.

    Returns:
        ``(idx, w)``: ``(n_out, T) int64`` input indices and ``(n_out, T) float32``
        weights summing to 1 per row; read-only, as every caller shares them.
    """
    scale = n_in / n_out
    support = max(scale, 1.0)
    taps = int(math.ceil(support)) * 2 + 1
    idx = np.zeros((n_out, taps), np.int64)
    w = np.zeros((n_out, taps), np.float64)
    for o in range(n_out):
        centre = (o + 0.5) * scale
        first = int(math.floor(centre - support))
        for t in range(taps):
            j = first + t
            weight = max(0.0, 1.0 - abs((j + 0.5 - centre) / support))
            if 0 <= j < n_in and weight > 0.0:
                idx[o, t] = j
                w[o, t] = weight
        w[o] /= w[o].sum()
    w = w.astype(np.float32)
    idx.flags.writeable = w.flags.writeable = False
    return idx, w


def bilinear_source(pos, n_grid, n_up):
    """Where sample ``pos`` of an axis upsampled bilinearly from ``n_grid`` to ``n_up``
    samples reads: (lower index, upper index, weight of the upper), with half-pixel
    centres, clamped at the edges. Plain Python, compiled where it is called: for the CPU
    by the RISE kernels, for the GPU by :mod:`harness.numerics.cuda_kernels`, so both
    upsample the masks with the same arithmetic."""
    f = (pos + 0.5) * n_grid / n_up - 0.5
    if f < 0.0:
        f = 0.0
    if f > n_grid - 1:
        f = float(n_grid - 1)
    lo = int(f)
    hi = min(lo + 1, n_grid - 1)
    return lo, hi, f - lo


def gaussian_taps(n: int, sigma: float, truncate: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian taps for one axis, borders reflected (scipy.ndimage's ``mode='reflect'``).

    The kernel radius is ``int(truncate * sigma + 0.5)``, as in ``scipy.ndimage``;
    ``sigma <= 0`` gives the identity.
    """
    if sigma <= 0:
        return np.arange(n, dtype=np.int64)[:, None], np.ones((n, 1), np.float32)
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    pos = np.arange(n)[:, None] + offsets[None, :]
    period = 2 * n
    pos = np.mod(pos, period)
    pos = np.where(pos >= n, period - 1 - pos, pos)
    return pos.astype(np.int64), np.broadcast_to(kernel, pos.shape).astype(np.float32)


def apply_separable(
    images: np.ndarray, rows: tuple[np.ndarray, np.ndarray], cols: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Apply per-axis taps to ``(N, H, W, C) float32`` images -> ``(N, h, w, C) float32``.

    Each pass filters axis 1 of an ``(N, A, B)`` view so the innermost loop runs over
    contiguous memory (a column pass over strided memory is 8x slower); the image is
    transposed between the two passes.
    """
    images = np.ascontiguousarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected (N, H, W, C) images, got shape {images.shape}")
    n, h, w, c = images.shape
    h_out, w_out = len(rows[0]), len(cols[0])
    tall = _filter_axis1(images.reshape(n, h, w * c), rows[0], rows[1])  # n may be 0
    turned = np.ascontiguousarray(tall.reshape(n, h_out, w, c).transpose(0, 2, 1, 3))
    wide = _filter_axis1(turned.reshape(n, w, h_out * c), cols[0], cols[1])
    return np.ascontiguousarray(wide.reshape(n, w_out, h_out, c).transpose(0, 2, 1, 3))


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(N, H, W, C) float32`` images to ``size = (h, w)``; a no-op copy-free pass-through
    when the size already matches."""
    n, h_in, w_in, _ = images.shape
    h, w = size
    if (h_in, w_in) == (h, w):
        return np.ascontiguousarray(images, dtype=np.float32)
    return apply_separable(images, resize_taps(h_in, h), resize_taps(w_in, w))


def cell_edges(size: int, grid: int) -> np.ndarray:
    """Pixel boundaries of ``grid`` cells along an axis of ``size`` pixels: ``(grid + 1,)``.
    Cells differ by at most one pixel when ``size`` is not a multiple of ``grid``."""
    return (np.arange(grid + 1) * size) // grid


def cell_means(images: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Mean of ``(N, H, W)`` images over each of ``grid`` = (rows, columns) cells."""
    x = np.asarray(images, np.float64)
    ys, xs = cell_edges(x.shape[1], grid[0]), cell_edges(x.shape[2], grid[1])
    sums = np.add.reduceat(np.add.reduceat(x, ys[:-1], axis=1), xs[:-1], axis=2)
    return sums / (np.diff(ys)[:, None] * np.diff(xs)[None, :])


def gaussian_blur(images: np.ndarray, sigma: float | tuple[float, float]) -> np.ndarray:
    """Blur ``(N, H, W, C) float32`` images per channel; ``sigma`` in pixels, per axis or shared."""
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    _, h, w, _ = images.shape
    return apply_separable(images, gaussian_taps(h, float(sy)), gaussian_taps(w, float(sx)))


def to_model_input(images: np.ndarray, color: str, mean: np.ndarray, std: np.ndarray,
                   channels_first: bool) -> np.ndarray:
    """Colour conversion, ``(x - mean) / std`` and layout in one pass over memory.

    Args:
        images: ``(N, H, W, 3) float32`` RGB.
        color: ``"RGB"``, ``"BGR"`` or ``"L"`` (BT.601 luma).
        mean, std: ``(C,) float32`` in the model's channel order.
        channels_first: NCHW output, else NHWC.

    Returns:
        ``(N, C, H, W)`` or ``(N, H, W, C) float32``.
    """
    x = np.ascontiguousarray(images, dtype=np.float32)
    n, h, w, _ = x.shape
    mix, mean, inv_std = normalize_tables(color, mean, std)
    c = len(mix)
    out = np.empty((n, c, h, w) if channels_first else (n, h, w, c), np.float32)
    _normalize(x, mix, mean, inv_std, channels_first, out)
    return out


def normalize_tables(color: str, mean, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What :func:`to_model_input`'s kernel reads: the ``(C, 3)`` colour mix, the mean
    and 1 / std, all float32."""
    mix = {"RGB": np.eye(3), "BGR": np.eye(3)[::-1], "L": LUMA[None, :]}[color]
    return (np.ascontiguousarray(mix, np.float32), np.asarray(mean, np.float32),
            (1.0 / np.asarray(std, np.float64)).astype(np.float32))


@njit(cache=True, parallel=True)
def _normalize(x, mix, mean, inv_std, channels_first, out):
    """out[..., k] = (sum_j mix[k, j] * x[..., j] - mean[k]) * inv_std[k] in out's layout."""
    n, h, w, _ = x.shape
    c = mix.shape[0]
    for job in prange(n * h):
        i, y = job // h, job % h
        for xx in range(w):
            for k in range(c):
                v = mix[k, 0] * x[i, y, xx, 0] + mix[k, 1] * x[i, y, xx, 1] \
                    + mix[k, 2] * x[i, y, xx, 2]
                v = (v - mean[k]) * inv_std[k]
                if channels_first:
                    out[i, k, y, xx] = v
                else:
                    out[i, y, xx, k] = v


@njit(cache=True, parallel=True)
def _filter_axis1(x, idx, w):
    """out[k, o, :] = sum_t w[o, t] * x[k, idx[o, t], :] for x of shape (N, A, B)."""
    n, _, b = x.shape
    a_out, taps = idx.shape
    out = np.zeros((n, a_out, b), np.float32)
    for job in prange(n * a_out):
        k, o = job // a_out, job % a_out
        for t in range(taps):
            wt = w[o, t]
            if wt != 0.0:
                row = x[k, idx[o, t]]
                for j in range(b):
                    out[k, o, j] += wt * row[j]
    return out
