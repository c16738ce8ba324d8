"""Pixel-space perturbations of docs/measures.md: the 12 geometric transforms of measure
(c), salt-and-pepper noise of measure (b), and the salience-guided blur of measure (e).

Transforms act on the two image axes that follow the batch axis, so the same call moves
an image batch ``(N, H, W, 3)`` and a map batch ``(N, H, W)`` alike.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from harness.numerics.filters import gaussian_blur

NOISE_LEVELS = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 1.00)

# Translations by (dx, dy) in units of t; positive moves content right / down.
_SHIFTS = {"shift_up_left": (-1, -1), "shift_up": (0, -1), "shift_up_right": (1, -1),
           "shift_left": (-1, 0), "shift_right": (1, 0), "shift_down_left": (-1, 1),
           "shift_down": (0, 1), "shift_down_right": (1, 1)}
TRANSFORMS = ("hflip", "vflip", "rot90_cw", "rot90_ccw") + tuple(_SHIFTS)
_INVERSE = {"hflip": "hflip", "vflip": "vflip", "rot90_cw": "rot90_ccw", "rot90_ccw": "rot90_cw"}


def shift_pixels(height: int) -> int:
    """Translation step t = round(16 * H / 224): 16 px at the paper's 224 px."""
    return int(round(16 * height / 224))


def _shift_of(name: str, t: int) -> tuple[int, int]:
    dx, dy = _SHIFTS[name]
    return dx * t, dy * t


def transform(name: str, arrays: np.ndarray, t: int | None = None) -> np.ndarray:
    """Apply one of :data:`TRANSFORMS` to ``(N, H, W, ...)`` arrays.

    Flips and quarter turns are exact. A shift by (dx, dy) pixels moves content right
    and down for positive values (``out[y, x] = in[y - dy, x - dx]``) and fills the
    uncovered border by replicating the edge.

    Args:
        name: transform name.
        arrays: images or maps, batch first.
        t: translation step in pixels (default: :func:`shift_pixels` of H).
    """
    if name == "hflip":
        return np.ascontiguousarray(arrays[:, :, ::-1])
    if name == "vflip":
        return np.ascontiguousarray(arrays[:, ::-1])
    if name == "rot90_cw":
        return np.ascontiguousarray(np.rot90(arrays, k=-1, axes=(1, 2)))
    if name == "rot90_ccw":
        return np.ascontiguousarray(np.rot90(arrays, k=1, axes=(1, 2)))
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; known: {', '.join(TRANSFORMS)}")
    h, w = arrays.shape[1:3]
    dx, dy = _shift_of(name, shift_pixels(h) if t is None else t)
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return np.ascontiguousarray(arrays[:, rows][:, :, cols])


def inverse(name: str) -> tuple[str, int]:
    """The transform undoing ``name`` and the sign of its step: ``(name, +1)`` for
    flips and turns, the opposite shift ``(name, -1)`` (apply with ``t = -t``)."""
    if name in _INVERSE:
        return _INVERSE[name], 1
    return name, -1


def salt_and_pepper(images: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Replace each element (pixel x channel) with probability ``level``, half of them by
    0 and half by 1 (the authors' noise).

    Args:
        images: ``(N, H, W, C) float32 in [0, 1]``.
        level: in [0, 1].
        rng: the seeded generator to draw from.
    """
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must lie in [0, 1], got {level}")
    hit = rng.random(images.shape) < level
    salt = rng.random(images.shape) < 0.5
    return np.where(hit, salt.astype(np.float32), images).astype(np.float32)


def degrade(images: np.ndarray, q_up: np.ndarray, mode: str) -> np.ndarray:
    """The authors' salience-guided blur, scaled to the image height H.

    1. ``q = q_up`` (mode ``background``) or ``255 - q_up`` (mode ``object``);
    2. G = Gaussian of q with sigma = 5 H / 224; level s = round(10 G / max G, 1);
    3. a pixel at level s takes its value from the image blurred with
       sigma(s) = (10 - s)^4 / 1000 * H / 224: level 10 stays sharp, level 0 gets
       sigma 10 H / 224. A map with max G = 0 (nothing salient) puts every pixel at
       level 0.

    Args:
        images: ``(N, H, W, 3) float32`` pixel images.
        q_up: ``(N, H, W) uint8`` maps upsampled to the image size.
        mode: ``"background"`` blurs what the model did not look at, ``"object"`` what
            it did.

    Returns:
        ``(N, H, W, 3) float32``.
    """
    if mode not in ("background", "object"):
        raise ValueError(f"mode must be 'background' or 'object', got {mode!r}")
    n, h, w, _ = images.shape
    if q_up.shape != (n, h, w):
        raise ValueError(f"maps {q_up.shape} do not match images {images.shape}")
    q = q_up.astype(np.float32) if mode == "background" else 255.0 - q_up.astype(np.float32)
    g = gaussian_blur(q[..., None], 5.0 * h / 224)[..., 0].astype(np.float64)
    peak = g.reshape(n, -1).max(axis=1)[:, None, None]
    level = np.round(10.0 * np.divide(g, peak, out=np.zeros_like(g), where=peak > 0), 1)
    steps = np.rint(level * 10).astype(np.int64)  # level 0.0..10.0 as 0..100
    radius, weights = _level_kernels(h)
    pad = int(radius.max())
    # numpy's "symmetric" padding is scipy.ndimage's "reflect": no index arithmetic left
    # in the kernel's inner loops
    padded = np.pad(np.asarray(images, np.float32), ((0, 0), (pad, pad), (pad, pad), (0, 0)),
                    mode="symmetric")
    out = _blur_by_level(np.ascontiguousarray(images, np.float32), padded, pad, steps, radius,
                         weights)
    # a normalised kernel keeps values in [0, 1] up to float32 rounding
    return np.clip(out, 0.0, 1.0, out=out)


def _level_kernels(height: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian kernels of the 101 levels: sigma(s) = (10 - s)^4 / 1000 * H / 224, radius
    int(4 sigma + 0.5) as scipy.ndimage (radius 0: the pixel keeps its value)."""
    sigmas = (10.0 - np.arange(101) / 10.0) ** 4 / 1000.0 * height / 224
    radius = (4.0 * sigmas + 0.5).astype(np.int64)
    weights = np.zeros((101, 2 * radius.max() + 1), np.float32)
    for s, (sigma, r) in enumerate(zip(sigmas, radius, strict=True)):
        if r > 0:
            k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
            weights[s, :2 * r + 1] = k / k.sum()
    return radius, weights


@njit(cache=True, parallel=True)
def _blur_by_level(images, padded, pad, steps, radius, weights):
    """Each pixel takes the value of the image blurred with its level's kernel. Per level,
    the row pass is computed only where the column pass of that level's pixels reads it
    and the column pass only at those pixels, so the cost follows the pixels, not 101
    whole-image blurs. ``padded`` is the images with ``pad`` reflected pixels each side."""
    n, h, w, c = images.shape
    out = images.copy()
    for k in prange(n):
        # bucket the pixels by level (counting sort)
        count = np.zeros(102, np.int64)
        for y in range(h):
            for x in range(w):
                count[steps[k, y, x] + 1] += 1
        start = np.cumsum(count)
        fill = start[:-1].copy()
        order = np.empty(h * w, np.int64)
        for y in range(h):
            for x in range(w):
                s = steps[k, y, x]
                order[fill[s]] = y * w + x
                fill[s] += 1
        rows = np.empty((h + 2 * pad, w, c), np.float32)  # row pass, by padded row
        done = np.full((h + 2 * pad, w), -1, np.int64)  # the level rows[py, x] holds
        for s in range(101):
            r = radius[s]
            if r == 0 or start[s] == start[s + 1]:
                continue
            for p in range(start[s], start[s + 1]):
                y, x = order[p] // w, order[p] % w
                for py in range(y + pad - r, y + pad + r + 1):
                    if done[py, x] == s:
                        continue
                    done[py, x] = s
                    for ch in range(c):
                        acc = np.float32(0.0)
                        for t in range(2 * r + 1):
                            acc += weights[s, t] * padded[k, py, x + pad - r + t, ch]
                        rows[py, x, ch] = acc
                for ch in range(c):
                    acc = np.float32(0.0)
                    for t in range(2 * r + 1):
                        acc += weights[s, t] * rows[y + pad - r + t, x, ch]
                    out[k, y, x, ch] = acc
    return out
