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
from harness.measures.chance import equivariant_maps, uniform_maps
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


_CEILINGS: dict = {}


def ceiling(images: np.ndarray, grid: tuple[int, int], moved_grids: dict, keys=None
            ) -> np.ndarray:
    """Per image, the value of the equivariant map (:mod:`harness.measures.chance`)
    through the method's grid: what a perfectly equivariant explanation scores.

    Args:
        images: ``(N, H, W, 3)``.
        grid: the clean maps' (rows, columns).
        moved_grids: transform name -> the grid of the moved images' maps.
        keys: the images' content keys; given, the result is kept for the next model
            of the run with the same grids (it never depends on the model).
    """
    from harness.maps import normalize_upsampled

    key = keys and (tuple(keys), tuple(grid), tuple(sorted(moved_grids.items())))
    if key and key in _CEILINGS:
        return _CEILINGS[key]
    q_up, flat = normalize_upsampled(equivariant_maps(images, grid), images.shape[1:3])
    moved = {name: equivariant_maps(transform(name, images), g)
             for name, g in moved_grids.items()}
    value = np.stack(list(follow_all(q_up, flat, moved).values())).mean(axis=0)
    if key:
        if len(_CEILINGS) >= 8:
            _CEILINGS.clear()
        _CEILINGS[key] = value
    return value


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize_upsampled

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
    if inp.boot is not None:
        size = m.q_up.shape[1:]
        chance_up, chance_flat = normalize_upsampled(
            uniform_maps(inp.boot, m.clean.raw.shape[1:], "clean"), size)
        chance = follow_all(chance_up, chance_flat, {
            t: uniform_maps(inp.boot, raw.shape[1:], f"transform@{t}")
            for t, raw in moved.items()})
        details.append(mean_stat("chance", np.stack(list(chance.values())).mean(axis=0),
                                 inp.boot))
    if inp.images is not None:
        grids = {t: raw.shape[1:] for t, raw in moved.items()}
        details.append(mean_stat("ceiling", ceiling(
            inp.images, m.clean.raw.shape[1:], grids, inp.boot and inp.boot.keys), inp.boot))
    # A flat clean map is NaN under every transform, so it stays NaN (excluded) here.
    return headline_result("transforms", True, np.stack(list(per_transform.values())).mean(
        axis=0), inp.boot, details)


MEASURE = Measure("transforms", True, frozenset({"clean", "transforms"}), compute,
                  "Does the salience follow flips, quarter turns and shifts of the image? "
                  "Mean SSIM of the moved map and the map of the moved image.", min_image=WIN)
