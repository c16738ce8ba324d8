"""Occlusion salience (docs/measures.md): the score drop when a window of grid cells is
replaced by a baseline, one forward pass per window position."""

import numpy as np
from numba import njit

from harness.numerics.filters import cell_edges
from harness.numerics.pixels import checked_float
from harness.salience.batched import score_perturbations


def window_boxes(height: int, width: int, grid: int, window: int) -> np.ndarray:
    """Pixel boxes of every window position, row-major: ``(P, 4) int64`` of
    ``y0, y1, x0, x1`` with P = (grid - window + 1) ** 2 (stride one cell)."""
    ys, xs = cell_edges(height, grid), cell_edges(width, grid)
    steps = grid - window + 1
    return np.array([(ys[p], ys[p + window], xs[q], xs[q + window])
                     for p in range(steps) for q in range(steps)], np.int64).reshape(-1, 4)


def occlusion(model, images, grid: int = 7, window: int = 1, baseline="blur", target=None,
              score: str = "log_odds", batch_size: int | None = None, clean=None) -> np.ndarray:
    """Occlusion maps: score(x) - score(x with a window replaced by the baseline).

    Args:
        model: an :class:`~harness.model.classifier.OnnxClassifier` (or any object with its
            ``forward``/``preprocess``/``run_prepared`` interface).
        images: ``(N, H, W, 3) float32 in [0, 1]`` (or uint8) RGB pixel images.
        grid: cells per side (g); the map is g x g. 7 x 7 matches the paper's Grad-CAM.
        window: window side in cells, moved with a stride of one cell; a cell's value is
            the mean over the windows covering it.
        baseline: ``"blur"`` (default), ``"mean"`` or a constant in [0, 1]; see
            :func:`~harness.salience.batched.make_baseline`.
        target: ``None`` (the class predicted on the clean image), an int, or ``(N,)`` ints.
        score: ``"log_odds"`` (default), ``"logit"`` or ``"probability"``.
        batch_size: occluded copies per ONNX Runtime call (default: the model's).
        clean: the model's ``(N, K)`` outputs on the clean images, when the caller has
            them already; saves N forward passes.

    Returns:
        ``(N, grid, grid) float32`` raw score drops (not normalised).

    Costs N * (grid - window + 1) ** 2 forward passes, plus N without ``clean``.
    """
    x = checked_float(images)
    n, h, w, _ = x.shape
    if not 1 <= grid <= min(h, w):
        raise ValueError(f"grid must lie in [1, {min(h, w)}] for {h}x{w} images, got {grid}")
    if not 1 <= window <= grid:
        raise ValueError(f"window must lie in [1, grid={grid}], got {window}")
    boxes = window_boxes(h, w, grid, window)

    def fill(src, base, item_img, item_pert, prev_img, prev_pert, out, channels_first):
        _fill_occluded(src, base, item_img, item_pert, prev_img, prev_pert, boxes, out,
                       channels_first)

    res = score_perturbations(model, x, baseline, grid, len(boxes), fill,
                              target, score, batch_size, clean,
                              device_fill=("occluded", (boxes,)))
    drops = res.clean[:, None] - res.scores
    return _windows_to_cells(drops, grid, window).astype(np.float32)


def _windows_to_cells(drops: np.ndarray, grid: int, window: int) -> np.ndarray:
    """``(N, P)`` window values -> ``(N, grid, grid)``: each cell the mean over the
    windows that cover it."""
    steps = grid - window + 1
    per_window = drops.reshape(-1, steps, steps)
    if window == 1:
        return per_window
    total = np.zeros((len(drops), grid, grid))
    count = np.zeros((grid, grid))
    for dy in range(window):
        for dx in range(window):
            total[:, dy:dy + steps, dx:dx + steps] += per_window
            count[dy:dy + steps, dx:dx + steps] += 1
    return total / count


@njit(cache=True)
def _fill_occluded(src, base, item_img, item_box, prev_img, prev_box, boxes, out,
                   channels_first):
    """out[b] = src[item_img[b]] with box item_box[b] taken from base[item_img[b]].

    When slot b already holds the same image with another box occluded, only that box is
    restored: a slot's copies then cost two boxes, not a whole image. That work is too
    small to pay for waking threads, so the kernel is serial.
    src, base: (N, H, W, C) or, channels_first, (N, C, H, W); out: (B, ...) same layout.
    """
    for b in range(out.shape[0]):
        i = item_img[b]
        if prev_img[b] == i:
            y0, y1, x0, x1 = boxes[prev_box[b], 0], boxes[prev_box[b], 1], \
                boxes[prev_box[b], 2], boxes[prev_box[b], 3]
            if channels_first:
                out[b, :, y0:y1, x0:x1] = src[i, :, y0:y1, x0:x1]
            else:
                out[b, y0:y1, x0:x1, :] = src[i, y0:y1, x0:x1, :]
        else:
            out[b] = src[i]
        y0, y1, x0, x1 = boxes[item_box[b], 0], boxes[item_box[b], 1], \
            boxes[item_box[b], 2], boxes[item_box[b], 3]
        if channels_first:
            out[b, :, y0:y1, x0:x1] = base[i, :, y0:y1, x0:x1]
        else:
            out[b, y0:y1, x0:x1, :] = base[i, y0:y1, x0:x1, :]
