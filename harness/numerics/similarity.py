"""SSIM and entropy of salience maps (docs/measures.md), on arrays.

``ssim`` reproduces ``skimage.metrics.structural_similarity(a, b, data_range=255)`` with
its defaults (7 x 7 uniform window, K1 = 0.01, K2 = 0.03, sample covariance): the mean
SSIM over every window position that lies fully inside the map, which is exactly what
scikit-image's crop of the filter radius leaves. scikit-image is the test oracle only.
"""

import numpy as np
from numba import njit, prange

WIN = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
_CHUNK = 256  # maps per kernel call


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity of paired 8-bit maps.

    Args:
        a, b: ``(N, H, W) uint8`` (or a single ``(H, W)`` pair), H, W >= 7.

    Returns:
        ``(N,) float64`` (a float for a single pair).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim needs maps of one shape, got {a.shape} and {b.shape}")
    single = a.ndim == 2
    a3, b3 = (a[None], b[None]) if single else (a, b)
    if a3.ndim != 3 or min(a3.shape[1:]) < WIN:
        raise ValueError(f"ssim needs (N, H, W) maps with H, W >= {WIN}, got {a.shape}")
    out = np.empty(len(a3))
    # float64 copies of a chunk at a time, not of a whole large set at image size
    for start in range(0, len(a3), _CHUNK):
        stop = start + _CHUNK
        out[start:stop] = _ssim(np.ascontiguousarray(a3[start:stop], np.float64),
                                np.ascontiguousarray(b3[start:stop], np.float64))
    return float(out[0]) if single else out


@njit(cache=True, parallel=True)
def _ssim(a, b):
    n, h, w = a.shape
    np_ = WIN * WIN
    cov_norm = np_ / (np_ - 1.0)
    c1 = (K1 * DATA_RANGE) ** 2
    c2 = (K2 * DATA_RANGE) ** 2
    out = np.empty(n)
    for k in prange(n):
        # integral images of x, y, x^2, y^2, xy with a zero first row and column
        ii = np.zeros((5, h + 1, w + 1))
        for y in range(h):
            for x in range(w):
                va, vb = a[k, y, x], b[k, y, x]
                vals = (va, vb, va * va, vb * vb, va * vb)
                for c in range(5):
                    ii[c, y + 1, x + 1] = vals[c] + ii[c, y, x + 1] + ii[c, y + 1, x] - ii[c, y, x]
        total = 0.0
        for y in range(h - WIN + 1):
            for x in range(w - WIN + 1):
                s = np.empty(5)
                for c in range(5):
                    s[c] = (ii[c, y + WIN, x + WIN] - ii[c, y, x + WIN] - ii[c, y + WIN, x]
                            + ii[c, y, x]) / np_
                ux, uy = s[0], s[1]
                vx = cov_norm * (s[2] - ux * ux)
                vy = cov_norm * (s[3] - uy * uy)
                vxy = cov_norm * (s[4] - ux * uy)
                total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / (
                    (ux * ux + uy * uy + c1) * (vx + vy + c2))
        out[k] = total / ((h - WIN + 1) * (w - WIN + 1))
    return out


def entropy(q: np.ndarray) -> np.ndarray:
    """Normalised histogram entropy of 8-bit maps (the paper's measure (a)).

    H = -sum_v p_v log2 p_v over the 256-bin histogram of values (as
    ``skimage.measure.shannon_entropy``), divided by log2(min(cells, 256)); in [0, 1].

    Args:
        q: ``(N, h, w) uint8``.

    Returns:
        ``(N,) float64``.
    """
    q = np.asarray(q)
    if q.dtype != np.uint8 or q.ndim != 3:
        raise ValueError(f"entropy needs (N, h, w) uint8 maps, got {q.shape} {q.dtype}")
    n, cells = len(q), q.shape[1] * q.shape[2]
    counts = np.zeros((n, 256))
    np.add.at(counts, (np.repeat(np.arange(n), cells), q.reshape(-1)), 1.0)
    return _entropy_bits(counts / cells) / np.log2(min(cells, 256))


def spatial_entropy(s_norm: np.ndarray) -> np.ndarray:
    """Entropy of the map read as a distribution over its cells (Quantus/Xplique's
    definition), normalised by log2(cells); NaN for a map with no mass.

    Args:
        s_norm: ``(N, h, w)`` non-negative maps.

    Returns:
        ``(N,) float64``.
    """
    s = np.asarray(s_norm, np.float64).reshape(len(s_norm), -1)
    mass = s.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / mass
    return _entropy_bits(p) / np.log2(s.shape[1])


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    out = terms.sum(axis=1)
    return np.where(np.isnan(p).any(axis=1), np.nan, out)


def wasserstein_1d(u: np.ndarray, v: np.ndarray) -> float:
    """1-D Wasserstein distance between two samples with equal weights: the area
    between their empirical CDFs (as ``scipy.stats.wasserstein_distance``)."""
    u, v = np.sort(np.asarray(u, np.float64)), np.sort(np.asarray(v, np.float64))
    if not len(u) or not len(v):
        return float("nan")
    points = np.concatenate([u, v])
    points.sort()
    deltas = np.diff(points)
    cdf_u = np.searchsorted(u, points[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, points[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * deltas))


def average_ranks(x: np.ndarray) -> np.ndarray:
    """``(N, k)`` -> the rank of each value within its row, 1..k, tied values sharing the
    mean of the ranks they span (as Spearman's coefficient needs)."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, axis=1, kind="stable")
    ordered = np.take_along_axis(x, order, axis=1)
    ranks = np.empty_like(x)
    k = x.shape[1]
    for i in range(len(x)):
        # runs of equal values: each gets the mean of the positions it covers
        starts = np.flatnonzero(np.r_[True, ordered[i, 1:] != ordered[i, :-1]])
        ends = np.r_[starts[1:], k]
        mean_rank = (starts + ends + 1) / 2.0  # mean of (start + 1) .. end
        ranks[i, order[i]] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each pair of maps: ``a``, ``b`` are ``(N, ...)``,
    compared cell by cell; NaN where either map is constant (no ranking to compare)."""
    ra = average_ranks(np.asarray(a).reshape(len(a), -1))
    rb = average_ranks(np.asarray(b).reshape(len(b), -1))
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    norm = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (ra * rb).sum(axis=1) / norm, np.nan)
