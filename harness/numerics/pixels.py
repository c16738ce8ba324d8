"""Pixel images between their two forms: ``(N, H, W, 3) uint8`` as stored and
``float32 in [0, 1]`` as computed with."""

import numpy as np


def to_float(images) -> np.ndarray:
    """``(N, H, W, 3)`` images with uint8 scaled to ``float32 in [0, 1]``; float images
    are returned as they are.

    Raises:
        ValueError: not an ``(N, H, W, 3)`` array.
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {x.shape}")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x


def checked_float(images) -> np.ndarray:
    """:func:`to_float`, with float images made contiguous float32 and checked to lie in
    [0, 1] (NaN passes: the model reports it).

    Raises:
        ValueError: wrong shape, or float pixels outside [0, 1].
    """
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return to_float(x)
    x = np.ascontiguousarray(to_float(x), dtype=np.float32)
    if x.size and (np.nanmin(x) < 0.0 or np.nanmax(x) > 1.0):
        raise ValueError("pixel images must lie in [0, 1]")
    return x


def to_uint8(images: np.ndarray) -> np.ndarray:
    """``float in [0, 1]`` -> ``uint8``, rounded to the nearest level."""
    return np.round(np.asarray(images) * 255).astype(np.uint8)
