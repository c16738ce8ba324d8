"""Explaining one model on an image set, as ``harness salience`` does: the maps, the
8-bit maps and flat-map mask, the explained classes, and overlay pictures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, NonFiniteOutput
from harness.inputs.images import ImageSet, load_image_set
from harness.io import atomic_path, check_replaceable, own_folder, safe_file_name
from harness.maps import normalize, scale
from harness.model.classifier import OnnxClassifier
from harness.salience.settings import SalienceConfig


@dataclasses.dataclass(frozen=True)
class Explained:
    """One model's maps of an image set.

    Attributes:
        model: the classifier (its ``forward_passes`` counts what the maps cost).
        data: the images explained.
        method: the salience method.
        raw: ``(N, h, w) float32`` raw maps.
        q, flat: ``(N, h, w) uint8`` 8-bit maps and the ``(N,) bool`` flat-map mask.
        targets: ``(N,) int64`` the explained (predicted) classes.
    """

    model: OnnxClassifier
    data: ImageSet
    method: str
    raw: np.ndarray
    q: np.ndarray
    flat: np.ndarray
    targets: np.ndarray


def explain(clf: OnnxClassifier, images, settings: SalienceConfig,
            limit: int | None = None) -> Explained:
    """Explain ``clf``'s predictions on the image set at ``images`` (first ``limit``).

    Raises:
        HarnessError: unreadable images, a grid too fine for them, or a model that
            returns NaN (naming the images).
    """
    data = load_image_set(images)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    settings.check_image_size(data.size, data.source)
    try:
        outputs, raw = settings.explainer.explain_with_outputs(clf, data.pixels(), settings)
    except NonFiniteOutput as exc:
        shown = ", ".join(data.names[i] for i in exc.rows[:5])
        more = f" and {len(exc.rows) - 5} more" if len(exc.rows) > 5 else ""
        raise HarnessError(f"{clf.path}: model returned NaN or infinite scores for "
                           f"{shown}{more}") from None
    q, flat = normalize(raw)
    return Explained(clf, data, settings.method, raw, q, flat, outputs.argmax(axis=1))


def write_maps(path: Path, explained: Explained, force: bool = False) -> None:
    """The maps as an ``.npz``: raw, q, flat, targets, names and method, and the
    ``harness`` version that wrote it (how a later call knows the file is its own; a
    file of the user's is never replaced unless ``force``)."""
    from harness import __version__

    check_replaceable(path, is_maps_file, force)
    e = explained
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, raw=e.raw, q=e.q, flat=e.flat, targets=e.targets,
                            names=np.array(e.data.names), method=np.array(e.method),
                            harness=np.array(__version__))


def is_maps_file(path: Path) -> bool:
    """Whether ``path`` is an ``.npz`` of maps the harness wrote."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            return "harness" in archive.files
    except (OSError, ValueError, EOFError):
        return False


def write_overlays(folder: Path, explained: Explained) -> None:
    """One PNG per image: its map drawn over it."""
    from PIL import Image

    from harness.report.overlay import overlay

    own_folder(folder, "overlay folder")
    s_norm = scale(explained.raw)[0]
    for i, name in enumerate(explained.data.names):
        stem = safe_file_name(name.replace("/", "__").rsplit(".", 1)[0])
        with atomic_path(folder / f"{stem}.png") as tmp:
            Image.fromarray(overlay(explained.data.images[i], s_norm[i])).save(tmp, format="PNG")
