"""(c) Following geometric transformations: does the salience move with the face?
Higher is better."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    mean_stat,
    plain_stat,
    stat_name,
)
from harness.measures.chance import chance_stat, equivariant_maps, remembered, uniform_maps
from harness.numerics.perturb import TRANSFORMS, transform
from harness.numerics.similarity import WIN, ssim


def follow_ssim(q_up: np.ndarray, flat: np.ndarray, q_up_transformed: np.ndarray,
                name: str) -> np.ndarray:
    """SSIM between T(S_up(x)) and S_up(T(x)) per image.

    Args:
        q_up: ``(N, H, W) uint8`` clean maps at image size; flat: ``(N,) bool`` (NaN).
        q_up_transformed: ``(N, H', W') uint8`` maps of the transformed images.
        name: the transform T (see :data:`harness.numerics.perturb.TRANSFORMS`).

    Returns:
        ``(N,) float64``.
    """
    return np.where(flat, np.nan, ssim(transform(name, q_up), q_up_transformed))


def follow_all(q_up: np.ndarray, flat: np.ndarray, moved: dict[str, np.ndarray]
               ) -> dict[str, np.ndarray]:
    """:func:`follow_ssim` for every transform: ``moved`` maps a transform's name to the
    raw grid maps of the moved images; returns name -> ``(N,)``."""
    from harness.maps import normalize_upsampled

    out = {}
    for name, raw in moved.items():
        h, w = transform(name, q_up[:1]).shape[1:]
        out[name] = follow_ssim(q_up, flat, normalize_upsampled(raw, (h, w))[0], name)
    return out


_CHUNK = 128  # images at a time: the ceiling works on float copies of whole images


def ceiling(images: np.ndarray, grid: tuple[int, int], moved_grids: dict) -> np.ndarray:
    """Per image, the value of the equivariant map (:mod:`harness.measures.chance`)
    through the method's grid: what a perfectly equivariant explanation scores.

    Args:
        images: ``(N, H, W, 3)``.
        grid: the clean maps' (rows, columns).
        moved_grids: transform name -> the grid of the moved images' maps.
    """
    from harness.maps import normalize_upsampled

    values = []
    for start in range(0, len(images), _CHUNK):
        x = images[start:start + _CHUNK]
        q_up, flat = normalize_upsampled(equivariant_maps(x, grid), x.shape[1:3])
        moved = {name: equivariant_maps(transform(name, x), g)
                 for name, g in moved_grids.items()}
        values.append(np.stack(list(follow_all(q_up, flat, moved).values())).mean(axis=0))
    return np.concatenate(values) if values else np.zeros(0)


def chance(boot, shape: tuple[int, int], size: tuple[int, int], moved_shapes: dict
           ) -> np.ndarray:
    """Per image, the value for maps of i.i.d. uniform cells, the clean and each moved
    image's drawn independently."""
    from harness.maps import normalize_upsampled

    q_up, flat = normalize_upsampled(uniform_maps(boot, shape, "clean"), size)
    moved = {t: uniform_maps(boot, g, f"transform@{t}") for t, g in moved_shapes.items()}
    return np.stack(list(follow_all(q_up, flat, moved).values())).mean(axis=0)


def compute(inp: MeasureInputs) -> MeasureResult:
    m = inp.maps
    moved = {t: m.transformed[t].raw for t in TRANSFORMS if t in m.transformed}
    if not moved:
        return MeasureResult("transforms", True, (plain_stat("headline", None, 0),))
    per_transform = follow_all(m.q_up, m.flat, moved)
    details = []
    for name, s in per_transform.items():
        details.append(mean_stat(stat_name("ssim", name), s, inp.boot))
        details.append(mean_stat(stat_name("unchanged", name),
                                 (m.transformed[name].predicted == m.clean.predicted)
                                 .astype(float), inp.boot))
    grid, grids = m.clean.raw.shape[1:], {t: raw.shape[1:] for t, raw in moved.items()}
    shapes = (grid, tuple(sorted(grids.items())))
    if inp.boot is not None:
        details.append(chance_stat(inp.boot, ("transforms", *shapes), lambda part, _: chance(
            part, grid, m.q_up.shape[1:], grids)))
    if inp.images is not None:
        values = remembered(("ceiling", tuple(inp.boot.keys), *shapes),
                            lambda: ceiling(inp.images, grid, grids)) if inp.boot is not None \
            else ceiling(inp.images, grid, grids)
        details.append(mean_stat("ceiling", values, inp.boot))
    # A flat clean map is NaN under every transform, so it stays NaN (excluded) here.
    return headline_result("transforms", True, np.stack(list(per_transform.values())).mean(
        axis=0), inp.boot, details)


MEASURE = Measure("transforms", True, frozenset({"clean", "transforms"}), compute,
                  "Does the salience follow flips, quarter turns and shifts of the image? "
                  "Mean SSIM of the moved map and the map of the moved image.", min_image=WIN)
