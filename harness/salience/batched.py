"""Shared machinery of the perturbation methods: baselines, and running many perturbed
copies of many images through a model in large batches.

A method supplies a Numba kernel that writes perturbed copies straight into a reused
batch buffer. When the images already have the model's input size, preprocessing is
pointwise, so the kernel blends the *preprocessed* image and baseline in the model's own
layout and the batch goes to ONNX Runtime as it is; otherwise it blends in pixel space
and the batch is preprocessed (resized) afterwards. Both give the model the same input.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from harness.errors import NonFiniteOutput
from harness.model.session import IOBINDING
from harness.numerics.filters import gaussian_blur
from harness.salience.bound import DeviceImages, bound_device
from harness.salience.scoring import class_scores, resolve_targets


def blur_sigmas(images: np.ndarray, baseline, grid: int) -> tuple[float, float] | None:
    """Per-axis sigmas of the blur baseline, or None for another baseline."""
    if isinstance(baseline, str) and baseline == "blur":
        _, h, w, _ = images.shape
        return h / grid / 2.0, w / grid / 2.0
    return None


def _targets(model, n: int, clean, target, score: str, need_clean: bool):
    """The explained class per image and, when wanted, the clean images' scores."""
    if clean is None:
        targets = resolve_targets(np.empty((n, 0)), target, model.num_classes)
    else:
        targets = resolve_targets(clean, target)
    clean_score = class_scores(clean, model.output_kind, targets, score) if need_clean else None
    return targets, clean_score


def make_baseline(images: np.ndarray, baseline, grid: int) -> np.ndarray:
    """What replaces occluded pixels, per image: ``(N, H, W, 3) float32``.

    Args:
        baseline: ``"blur"`` (Gaussian blur with sigma = cell size / 2 per axis, the
            default: it removes the detail of a cell but keeps colours in range),
            ``"mean"`` (per-image, per-channel mean) or a number (constant grey).
        grid: cells per side, which sets the blur's cell size.
    """
    blur = blur_sigmas(images, baseline, grid)
    if blur is not None:
        return gaussian_blur(images, blur)
    if isinstance(baseline, str):
        if baseline == "mean":
            means = images.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
            return np.ascontiguousarray(np.broadcast_to(means, images.shape), np.float32)
        raise ValueError(f"baseline must be 'blur', 'mean' or a number, got {baseline!r}")
    value = float(baseline)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a constant baseline must lie in [0, 1], got {value}")
    return np.full(images.shape, value, np.float32)


@dataclasses.dataclass(frozen=True)
class ScoredCopies:
    """What a perturbation method gets back from :func:`score_perturbations`.

    Attributes:
        targets: ``(N,) int64`` explained class per image.
        clean: ``(N,) float64`` clean-image scores, or None when not asked for.
        scores: ``(N, P) float64`` scores of the P perturbed copies of each image.
    """

    targets: np.ndarray
    clean: np.ndarray | None
    scores: np.ndarray


FillKernel = Callable[..., None]


def score_perturbations(model, images: np.ndarray, baseline, grid: int, per_image: int,
                        fill: FillKernel, target=None, score: str = "log_odds",
                        batch_size: int | None = None, clean=None,
                        need_clean: bool = True, device_fill: tuple | None = None
                        ) -> ScoredCopies:
    """Score ``per_image`` perturbed copies of every image, in large batches.

    Args:
        images: ``(N, H, W, 3) float32`` pixel space.
        baseline, grid: what replaces hidden pixels, see :func:`make_baseline`.
        per_image: perturbations per image (P).
        fill: ``fill(src, base, item_img, item_pert, prev_img, prev_pert, out,
            channels_first)`` writes copy ``item_pert[b]`` of ``src[item_img[b]]`` into
            ``out[b]``. ``prev_*`` say what slot b held before (-1: nothing), so a kernel
            may patch the previous copy instead of rewriting it.
        target, score: see :func:`~harness.salience.scoring.resolve_targets` and
            :func:`~harness.salience.scoring.class_scores`.
        batch_size: copies per ONNX Runtime call (default: the model's).
        clean: the model's clean ``(N, K)`` outputs if the caller has them.
        need_clean: whether clean scores are wanted; without them and with an explicit
            ``target`` no clean pass is run.
        device_fill: ``(kernel, tables)``, the :mod:`~harness.numerics.cuda_kernels` twin of
            ``fill`` and its per-perturbation tables: where the model runs on a GPU the
            baselines, preprocessing, clean pass and copies are then made and run there
            (:mod:`~harness.salience.bound`).

    Each batch slot works through its own contiguous run of (image, perturbation)
    items, so consecutive copies in a slot mostly differ only where the perturbation
    moved; the scores do not depend on the batch size or this order.
    """
    n, h, w, _ = images.shape
    batch = int(batch_size or model.batch_size)
    resized = model.needs_resize((h, w))
    device = bound_device(model, resized) if device_fill is not None else None
    paths = model.__dict__.setdefault("io_paths", set())
    if device is not None:
        paths.add(IOBINDING)
        blur = blur_sigmas(images, baseline, grid)
        on_device = DeviceImages(model, device, images, blur,
                                 None if blur else make_baseline(images, baseline, grid),
                                 batch)
        if clean is None and (target is None or need_clean):
            clean = on_device.clean()
        targets, clean_score = _targets(model, n, clean, target, score, need_clean)
        kernel, tables = device_fill
        scores = on_device.scores(kernel, tables, per_image, targets, score)
        return ScoredCopies(targets, clean_score, scores.reshape(n, per_image))
    baselines = make_baseline(images, baseline, grid)
    if resized:
        src, base, channels_first = images, baselines, False
    else:
        src, base = model.preprocess(images), model.preprocess(baselines)
        channels_first = model.layout == "NCHW"
    if clean is None and (target is None or need_clean):
        clean = model.forward(src, prepared=not resized)
    targets, clean_score = _targets(model, n, clean, target, score, need_clean)
    paths.add("host")
    total = n * per_image
    queue = -(-total // batch)  # items per slot
    buffer = np.empty((min(batch, total),) + src.shape[1:], np.float32)
    prev_img = np.full(len(buffer), -1, np.int64)
    prev_pert = np.full(len(buffer), -1, np.int64)
    scores = np.empty(total, np.float64)
    for step in range(queue):
        items = np.arange(len(buffer)) * queue + step
        items = items[items < total]
        k = len(items)
        item_img, item_pert = items // per_image, items % per_image
        out = buffer[:k]
        fill(src, base, item_img, item_pert, prev_img[:k], prev_pert[:k], out, channels_first)
        prev_img[:k], prev_pert[:k] = item_img, item_pert
        try:
            outputs = model.run_prepared(model.preprocess(out) if resized else out)
        except NonFiniteOutput as exc:
            raise exc.remapped(item_img) from None
        scores[items] = class_scores(outputs, model.output_kind, targets[item_img], score)
    return ScoredCopies(targets, clean_score, scores.reshape(n, per_image))


