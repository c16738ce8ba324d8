"""Occlusion salience (docs/measures.md): the score drop when a window of grid cells is
replaced by a baseline, one forward pass per window position."""

import numpy as np
from numba import njit

from harness.errors import NonFiniteOutput
from harness.numerics.filters import cell_edges
from harness.numerics.pixels import checked_float
from harness.salience.batched import ScoredCopies, make_baseline, score_perturbations
from harness.salience.bound import bound_device
from harness.salience.incremental import (
    REFUSED,
    TOLERANCE,
    USED,
    choose,
    deviation,
    plan_for,
    provenance,
    rows_of,
    why_not,
)
from harness.salience.incremental import scores as incremental_scores
from harness.salience.scoring import class_scores


def window_boxes(height: int, width: int, grid: int, window: int) -> np.ndarray:
    """Pixel boxes of every window position, row-major: ``(P, 4) int64`` of
    ``y0, y1, x0, x1`` with P = (grid - window + 1) ** 2 (stride one cell)."""
    ys, xs = cell_edges(height, grid), cell_edges(width, grid)
    steps = grid - window + 1
    return np.array([(ys[p], ys[p + window], xs[q], xs[q + window])
                     for p in range(steps) for q in range(steps)], np.int64).reshape(-1, 4)


def occlusion(model, images, grid: int = 7, window: int = 1, baseline="blur", target=None,
              score: str = "log_odds", batch_size: int | None = None, clean=None,
              incremental: str = "auto") -> np.ndarray:
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
        incremental: ``"auto"`` (default) recomputes only the layers' regions a window
            changes where the graph allows it and that is predicted to save at least 1.3x
            the multiply-adds (:mod:`~harness.salience.incremental`); ``"on"`` wherever
            the graph allows it (an error naming why not otherwise); ``"off"`` never.
            The maps are the same up to float rounding, checked on the first image a
            model explains; a model that fails the check is recomputed in full.

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
    device = bound_device(model, model.needs_resize((h, w))) is not None
    plan = choose(model, (h, w), boxes, (grid, window), incremental, device)
    drops = None
    if plan is not None:
        drops = _incremental_drops(model, x, plan, boxes, baseline, grid, window, target,
                                   score, batch_size, clean)
    if drops is None:
        res = _full(model, x, boxes, baseline, grid, target, score, batch_size, clean)
        drops = res.clean[:, None] - res.scores
    return _windows_to_cells(drops, grid, window).astype(np.float32)


def incremental_provenance(model, settings, image_size: tuple[int, int],
                           execution: str) -> dict:
    """What a run records of how ``model``'s occlusion maps at ``settings`` were computed
    on images of ``image_size`` (see :func:`~harness.salience.incremental.provenance`)."""
    reason = why_not(model, image_size)
    plan = None if reason else plan_for(
        model, window_boxes(*image_size, settings.grid, settings.window),
        (settings.grid, settings.window))
    return provenance(plan, reason, settings.incremental, execution)


def _full(model, x, boxes, baseline, grid, target, score, batch_size, clean) -> ScoredCopies:
    """Every window's occluded copy run through the whole model."""

    def fill(src, base, item_img, item_pert, prev_img, prev_pert, out, channels_first):
        _fill_occluded(src, base, item_img, item_pert, prev_img, prev_pert, boxes, out,
                       channels_first)

    return score_perturbations(model, x, baseline, grid, len(boxes), fill, target, score,
                               batch_size, clean, device_fill=("occluded", (boxes,)))


def _incremental_drops(model, x, plan, boxes, baseline, grid, window, target, score,
                       batch_size, clean) -> np.ndarray | None:
    """``(N, P)`` window drops recomputed incrementally, or None where the model's
    self-check refused that: on its first call at these settings, the first image's
    scores against the full recompute's (:data:`~harness.salience.incremental.TOLERANCE`).
    The check's passes are not counted: they are not the maps' work."""
    checked = model.__dict__.setdefault("_incremental_checked", {})
    key = (grid, window)
    if checked.get(key) is False:
        return None
    src, base = model.preprocess(x), model.preprocess(make_baseline(x, baseline, grid))
    batch = int(batch_size or model.batch_size)
    first = 0
    if key not in checked:
        first = 1
        clean_1, targets_1, ours = incremental_scores(
            model, plan, src[:1], base[:1], rows_of(target, slice(0, 1)), score, batch,
            rows_of(clean, slice(0, 1)))
        passes = model.forward_passes
        full = _full(model, x[:1], boxes, baseline, grid, targets_1, score, batch_size,
                     clean_1)
        model.forward_passes = passes
        checked[key] = deviation(ours, full.scores, full.clean) <= TOLERANCE
        if not checked[key]:
            model.__dict__.setdefault("io_paths", set()).add(REFUSED)
            return None
    rest = slice(first, None)
    try:
        outputs, targets, scores = incremental_scores(
            model, plan, src[rest], base[rest], rows_of(target, rest), score, batch,
            rows_of(clean, rest))
    except NonFiniteOutput as exc:  # its images count from the first one checked
        raise exc.remapped(np.arange(first, len(x))) from None
    if first:
        outputs, targets = np.concatenate([clean_1, outputs]), np.concatenate([targets_1,
                                                                                targets])
        scores = np.concatenate([ours, scores])
    model.__dict__.setdefault("io_paths", set()).add(USED)
    clean_score = class_scores(outputs, model.output_kind, targets, score)
    return clean_score[:, None] - scores


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
