"""Image sets: a folder of images, a single image, or an ``.npz`` -> arrays and labels.

Folder layout (docs/measures.md)::

    images/real/a.png  images/synthetic/b.jpg   labels from the sub-folder names
    images/labels.csv                           or from a CSV: ``path,label`` rows
    images/masks/real/a.png                     optional human maps, mirroring the names

An ``.npz`` holds ``images`` ``(N, H, W, 3)`` (or ``(N, H, W)`` grey) uint8, or float in
[0, 1]; optional ``labels`` ``(N,)`` ints or strings, ``label_names``, ``names`` and
``masks`` ``(N, H, W)`` (non-zero = marked), and ``split`` ``(N,)`` strings naming each
image's split (train/val/test). A mask with no marked pixel means the image has none.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, excerpt, first_line
from harness.inputs.decode import check_image_shape, read_image, read_mask
from harness.limits import CLASSES
from harness.numerics.pixels import to_float, to_uint8

_SAMPLE_STREAM = zlib.crc32(b"limit")  # the seed stream of --limit's draw

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MASK_DIR = "masks"


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images with optional labels and human maps.

    Attributes:
        images: ``(N, H, W, 3) uint8`` RGB.
        names: ``N`` identifiers (relative paths for folders).
        labels: ``(N,) int64`` indices into ``label_names``, or None.
        label_names: class names in index order, or None.
        masks: ``(N, H, W) bool`` human maps, or None; ``has_mask`` says which are real.
        source: where the set was read from.
    """

    images: np.ndarray
    names: tuple[str, ...]
    labels: np.ndarray | None = None
    label_names: tuple[str, ...] | None = None
    masks: np.ndarray | None = None
    source: str = ""

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, H, W, 3) uint8, got {self.images.shape} "
                             f"{self.images.dtype}")
        if len(self.names) != n:
            raise HarnessError(f"{self.source}: {len(self.names)} names for {n} images")
        if self.labels is not None and len(self.labels) != n:
            raise HarnessError(f"{self.source}: {len(self.labels)} labels for {n} images")
        if self.masks is not None and self.masks.shape != self.images.shape[:3]:
            raise HarnessError(f"{self.source}: masks have shape {self.masks.shape}, images "
                               f"{self.images.shape[:3]}")

    def __len__(self):
        return len(self.images)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def has_mask(self) -> np.ndarray:
        """``(N,) bool``: which images carry a human map with at least one marked pixel."""
        return marked(self.masks, len(self))

    def pixels(self) -> np.ndarray:
        """``(N, H, W, 3) float32 in [0, 1]``."""
        return to_float(self.images)

    def sample(self, limit: int, seed: int) -> ImageSet:
        """``limit`` of the images, drawn so that their labels keep the whole set's
        proportions (each label's share within one image), seeded by the run's ``seed``
        and nested: the images of a smaller limit are among those of a larger one.
        They keep the set's order. An unlabelled set is one stratum."""
        order = stratified_order(self.labels, len(self), seed)
        return self.subset(np.sort(order[:min(limit, len(self))]))

    def subset(self, index) -> ImageSet:
        index = np.asarray(index)
        return dataclasses.replace(
            self, images=self.images[index], names=tuple(np.asarray(self.names)[index]),
            labels=None if self.labels is None else self.labels[index],
            masks=None if self.masks is None else self.masks[index])

    @functools.cached_property
    def hash(self) -> str:
        """sha256 over pixels, labels and masks: identifies the set in the results."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images))  # hashed in place
        for part in (self.labels, self.masks):
            if part is not None:
                digest.update(np.ascontiguousarray(part))
        return digest.hexdigest()


def marked(masks, n: int) -> np.ndarray:
    """``(n,) bool``: which of ``(n, H, W)`` human maps (or None) mark at least one pixel."""
    if masks is None:
        return np.zeros(n, bool)
    return np.asarray(masks).reshape(n, -1).any(axis=1)


def stratified_order(labels, n: int, seed: int) -> np.ndarray:
    """All ``n`` image indices in an order whose every prefix holds each label in the
    proportion the whole set has it, within one image: each label's images are shuffled
    (seeded) and placed at (rank + 1/2) / count along the order, ties broken by label.

    Args:
        labels: ``(n,)`` label per image, or None (one stratum).
        seed: the run's seed.
    """
    groups = np.zeros(n, np.int64) if labels is None else np.asarray(labels)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SAMPLE_STREAM,)))
    place = np.empty(n, np.float64)
    for label in np.unique(groups):
        members = rng.permutation(np.flatnonzero(groups == label))
        place[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.lexsort((groups, place))


def load_image_set(path, labels_csv=None, split: str | None = None) -> ImageSet:
    """Read an image set from a folder, a single image file, or an ``.npz``.

    ``split`` keeps only the images of that split of an ``.npz`` that has a ``split``
    array (e.g. ``"test"`` for the built-in data set).

    Images of differing sizes in one folder are resized (bilinear) to the most common
    size, since every measure compares images of one size. Grey, palette and CMYK images
    are converted to RGB; an alpha channel is dropped.

    Raises:
        HarnessError: missing path, no images, an unreadable image, inconsistent labels.
    """
    path = Path(path)
    if not path.exists():
        raise HarnessError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() == ".npz":
        return _load_npz(path, split)
    if split is not None:
        raise HarnessError(f"{path}: a split ({split!r}) can only be chosen in an .npz "
                           "image set with a 'split' array")
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise HarnessError(f"{path}: not an image set (expected a folder, an .npz or an "
                               f"image file: {', '.join(IMAGE_SUFFIXES)})")
        return ImageSet(read_image(path)[None], (path.name,), source=str(path))
    return _load_folder(path, None if labels_csv is None else Path(labels_csv))


def _load_folder(root: Path, labels_csv: Path | None) -> ImageSet:
    mask_root = root / MASK_DIR
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES and mask_root not in p.parents)
    if not files:
        raise HarnessError(f"{root}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    for file in files:
        _check_inside(root, file)
    names = tuple(p.relative_to(root).as_posix() for p in files)
    arrays = [read_image(p) for p in files]
    size = Counter(a.shape[:2] for a in arrays).most_common(1)[0][0]
    images = np.stack([a if a.shape[:2] == size else read_image(p, size)
                       for a, p in zip(arrays, files, strict=True)])

    csv_file = labels_csv or (root / "labels.csv" if (root / "labels.csv").is_file() else None)
    if csv_file is not None:
        if labels_csv is None:
            _check_inside(root, csv_file)
        by_name = _read_labels_csv(csv_file)
        missing = [n for n in names if n not in by_name]
        if missing:
            raise HarnessError(f"{csv_file}: no label for {len(missing)} image(s), "
                               f"e.g. {missing[0]}")
        raw_labels = [by_name[n] for n in names]
    elif all("/" in n for n in names):
        raw_labels = [n.split("/", 1)[0] for n in names]
    else:
        raw_labels = None
    label_names, labels = _encode_labels(raw_labels)

    masks = None
    if mask_root.is_dir():
        masks = np.zeros(images.shape[:3], bool)
        for i, name in enumerate(names):
            stem = Path(name).with_suffix("")
            found = [mask_root / (stem.as_posix() + s) for s in IMAGE_SUFFIXES
                     if (mask_root / (stem.as_posix() + s)).is_file()]
            if found:
                _check_inside(root, found[0])
                masks[i] = read_mask(found[0], size)
    return ImageSet(images, names, labels, label_names, masks, str(root))


def _check_inside(root: Path, file: Path) -> None:
    """Refuse a file of the data folder that is a link to somewhere outside it: the
    loaders would read, and could quote, whatever it points at."""
    if root.resolve() not in file.resolve().parents:
        raise HarnessError(f"{file}: links to a file outside {root}; refused (copy the file "
                           "into the folder instead)")


def _read_labels_csv(file: Path) -> dict[str, str]:
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"{file}: cannot read labels ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    bad = [r for r in rows if len(r) < 2]
    if bad:
        raise HarnessError(f"{file}: each row must be 'path,label', got "
                           f"{excerpt(','.join(bad[0]))}")
    return {r[0].strip(): r[1].strip() for r in rows}


def _encode_labels(raw) -> tuple[tuple[str, ...] | None, np.ndarray | None]:
    if raw is None:
        return None, None
    names = tuple(sorted(set(raw)))
    index = {n: i for i, n in enumerate(names)}
    return names, np.array([index[r] for r in raw], np.int64)


def _vector(arrays: dict, key: str, path: Path) -> np.ndarray:
    """``arrays[key]`` as a one-dimensional array, or one clear error."""
    value = arrays[key]
    if value.ndim != 1:
        raise HarnessError(f"{path}: '{key}' must be one value per image, got an array of "
                           f"shape {value.shape}")
    return value


def _load_npz(path: Path, split: str | None) -> ImageSet:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot read .npz ({first_line(exc)})") from None
    if "images" not in arrays:
        raise HarnessError(f"{path}: no 'images' array (found: {', '.join(arrays) or 'none'})")
    images = arrays["images"]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise HarnessError(f"{path}: 'images' must be (N, H, W, 3) or (N, H, W) with N >= 1, "
                           f"got {images.shape}")
    check_image_shape(images.shape[1], images.shape[2], path)
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all() \
                or images.min() < 0 or images.max() > 1:
            raise HarnessError(f"{path}: 'images' must be uint8, or float in [0, 1] without NaN "
                               f"or infinity (got {images.dtype})")
        images = to_uint8(images)
    n = len(images)
    names = tuple(str(s) for s in _vector(arrays, "names", path)) if "names" in arrays \
        else tuple(f"{path.stem}[{i}]" for i in range(n))
    labels = label_names = None
    if "labels" in arrays:
        raw = _vector(arrays, "labels", path)
        if len(raw) != n:
            raise HarnessError(f"{path}: {len(raw)} labels for {n} images")
        if np.issubdtype(raw.dtype, np.integer):
            labels = raw.astype(np.int64)
            label_names = (tuple(str(s) for s in _vector(arrays, "label_names", path))
                           if "label_names" in arrays else None)
            # checked before a name is made for every class up to the largest label
            limit = CLASSES.value() if label_names is None else len(label_names)
            if labels.min() < 0 or labels.max() >= limit:
                raise HarnessError(f"{path}: integer labels must lie in [0, {limit - 1}]"
                                   f"{'' if label_names else f' ({CLASSES.env})'}, "
                                   f"got {labels.min()}..{labels.max()}")
            label_names = label_names or tuple(str(i) for i in range(int(labels.max()) + 1))
        else:
            label_names, labels = _encode_labels([str(r) for r in raw])
    masks = arrays["masks"].astype(bool) if "masks" in arrays else None
    data = ImageSet(np.ascontiguousarray(images), names, labels, label_names, masks, str(path))
    if split is None:
        return data
    if "split" not in arrays:
        raise HarnessError(f"{path}: has no 'split' array to choose {split!r} from")
    keep = np.flatnonzero(arrays["split"].astype(str) == split)
    if not len(keep):
        known = ", ".join(sorted(set(arrays["split"].astype(str))))
        raise HarnessError(f"{path}: no images in split {split!r} (splits: {known})")
    return dataclasses.replace(data.subset(keep), source=f"{path}[{split}]")
