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


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize_upsampled

    m = inp.maps
    names = [t for t in TRANSFORMS if t in m.transformed]
    per_transform, details = [], []
    for name in names:
        out = m.transformed[name]
        h, w = transform(name, m.q_up[:1]).shape[1:]
        s = follow_ssim(m.q_up, m.flat, normalize_upsampled(out.raw, (h, w))[0], name)
        per_transform.append(s)
        details.append(mean_stat(stat_name("ssim", name), s, inp.boot))
        details.append(mean_stat(stat_name("unchanged", name),
                                 (out.predicted == m.clean.predicted).astype(float), inp.boot))
    # A flat clean map is NaN under every transform, so it stays NaN (excluded) here.
    if not per_transform:
        return MeasureResult("transforms", True, (plain_stat("headline", None, 0),))
    return headline_result("transforms", True, np.stack(per_transform).mean(axis=0), inp.boot,
                           details)


MEASURE = Measure("transforms", True, frozenset({"clean", "transforms"}), compute,
                  "Does the salience follow flips, quarter turns and shifts of the image? "
                  "Mean SSIM of the moved map and the map of the moved image.", min_image=WIN)
