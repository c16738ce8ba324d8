"""Salience overlays: an 8-bit map drawn over its image, for people to look at."""

import numpy as np

from harness.numerics.filters import resize

# Anchors of a perceptually ordered dark-to-bright colormap (close to matplotlib's
# "inferno"), interpolated to 256 entries so no plotting library is needed.
_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66],
                     [245, 125, 21], [250, 193, 39], [252, 255, 164]], np.float64)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_ANCHORS)),
                               _ANCHORS[:, c]) for c in range(3)], axis=1).astype(np.uint8)


def overlay(image: np.ndarray, salience: np.ndarray, alpha: float = 0.55,
            min_side: int = 224) -> np.ndarray:
    """Blend a salience map over an image.

    Args:
        image: ``(H, W, 3) uint8``.
        salience: ``(h, w)`` map in [0, 1] (any grid size; upsampled bilinearly).
        alpha: weight of the colour-mapped salience where it is highest; it fades with the
            salience, so unexplained regions show the image as it is.
        min_side: small images are enlarged so the shorter side has at least this many
            pixels, so a 25 px face crop is still legible.

    Returns:
        ``(H', W', 3) uint8``.
    """
    h, w = image.shape[:2]
    factor = max(1, int(np.ceil(min_side / min(h, w))))
    size = (h * factor, w * factor)
    big = resize(image[None].astype(np.float32) / 255.0, size)[0]
    heat = resize(np.asarray(salience, np.float32)[None, ..., None], size)[0, ..., 0]
    colours = COLORMAP[np.clip(np.round(heat * 255), 0, 255).astype(np.uint8)] / 255.0
    weight = alpha * np.sqrt(np.clip(heat, 0, 1))[..., None]
    blended = (1 - weight) * big + weight * colours
    return np.clip(np.round(blended * 255), 0, 255).astype(np.uint8)
