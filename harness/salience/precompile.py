"""Compiling every Numba kernel before anything is timed."""

import numpy as np


def warmup() -> None:
    """Compile (or load from cache) every Numba kernel on tiny inputs, so the first
    timed call measures work, not compilation."""
    from harness.numerics.filters import gaussian_blur, resize, to_model_input
    from harness.numerics.perturb import degrade
    from harness.numerics.similarity import ssim
    from harness.salience.occlusion import _fill_occluded
    from harness.salience.rise import _fill_masked, _pooled_masks

    img = np.zeros((1, 4, 4, 3), np.float32)
    resize(img, (2, 2))
    gaussian_blur(img, 1.0)
    for channels_first in (True, False):
        to_model_input(img, "RGB", np.zeros(3), np.ones(3), channels_first)
    one = np.zeros(1, np.int64)
    for layout in (img, img.transpose(0, 3, 1, 2).copy()):
        _fill_occluded(layout, layout, one, one, one, one, np.array([[0, 1, 0, 1]]),
                       layout.copy(), layout is not img)
        _fill_masked(layout, layout, one, np.ones((1, 2, 2), np.float32),
                     np.zeros((1, 2), np.int64), 6, 6, layout.copy(), layout is not img)
    _pooled_masks(np.ones((1, 2, 2), np.float32), np.zeros((1, 2), np.int64), 6, 6, 4, 4,
                  np.array([0, 2, 4]), np.array([0, 2, 4]))
    ssim(np.zeros((1, 7, 7), np.uint8), np.zeros((1, 7, 7), np.uint8))
    degrade(np.zeros((1, 8, 8, 3), np.float32), np.zeros((1, 8, 8), np.uint8), "object")
