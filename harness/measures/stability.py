"""(d) Stability across independent training runs: do models of one family, differing
only in the training seed, explain alike? Higher is better."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    mean_stat,
    plain_stat,
    stat_name,
)
from harness.numerics.similarity import WIN, ssim


def pairwise_ssim(q: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """SSIM between every pair of a family's maps of each image.

    Args:
        q: ``(k, N, g, g) uint8``, one stack per model.
        flat: ``(k, N) bool``; a pair with a flat map is NaN.

    Returns:
        ``(k, k, N) float64``, symmetric, NaN on the diagonal.
    """
    k, n = flat.shape
    out = np.full((k, k, n), np.nan)
    for i in range(k):
        for j in range(i + 1, k):
            s = np.where(flat[i] | flat[j], np.nan, ssim(q[i], q[j]))
            out[i, j] = out[j, i] = s
    return out


def _nanmean(a, axis):
    count = (~np.isnan(a)).sum(axis=axis)
    total = np.nansum(a, axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize

    m = inp.maps
    stats = []
    if inp.family is None:
        stats.append(plain_stat("headline", None, 0))
    else:
        me = next(i for i, f in enumerate(inp.family) if f is m)
        names = inp.family_names or [str(i) for i in range(len(inp.family))]
        pairs = pairwise_ssim(np.stack([f.q for f in inp.family]),
                              np.stack([f.flat for f in inp.family]))
        k = len(inp.family)
        upper = pairs[np.triu_indices(k, 1)]  # (pairs, N)
        stats.append(mean_stat("headline", _nanmean(upper, 0), inp.rng))
        stats.append(mean_stat("vs_rest", _nanmean(np.delete(pairs[me], me, axis=0), 0), inp.rng))
        stats.append(plain_stat("family_size", k, k))
        for j in range(k):
            if j != me:
                stats.append(mean_stat(stat_name("ssim_with", names[j]), pairs[me, j], inp.rng))
    if m.second_seed is not None:
        q2, flat2 = normalize(m.second_seed)
        floor = np.where(m.flat | flat2, np.nan, ssim(m.q, q2))
        stats.append(mean_stat("explainer_floor", floor, inp.rng))
    return MeasureResult("stability", True, tuple(stats))


MEASURE = Measure("stability", True, frozenset({"clean", "family"}), compute,
                  "Do models trained with other seeds explain alike? Mean pairwise SSIM "
                  "within the family.", min_map=WIN)
