"""(d) Stability across independent training runs: do models of one family, differing
only in the training seed, explain alike? Higher is better."""

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
from harness.numerics.similarity import WIN, ssim
from harness.stats.bootstrap import column_means


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


def chance(boot, shape, k: int) -> np.ndarray:
    """Per image, the mean pairwise SSIM of ``k`` independent maps of i.i.d. uniform
    cells (a family whose maps share nothing)."""
    from harness.maps import normalize
    from harness.measures.chance import uniform_maps

    maps = [normalize(uniform_maps(boot, shape, f"family-{j}")) for j in range(k)]
    pairs = pairwise_ssim(np.stack([q for q, _ in maps]), np.stack([f for _, f in maps]))
    return column_means(pairs[np.triu_indices(k, 1)])


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize

    m = inp.maps
    stats, per_image = [], None
    if inp.family is not None:
        me = next(i for i, f in enumerate(inp.family) if f is m)
        names = inp.family_names or [str(i) for i in range(len(inp.family))]
        pairs = pairwise_ssim(np.stack([f.q for f in inp.family]),
                              np.stack([f.flat for f in inp.family]))
        k = len(inp.family)
        upper = pairs[np.triu_indices(k, 1)]  # (pairs, N)
        per_image = column_means(upper)
        if inp.boot is not None:
            from harness.measures.chance import chance_stat

            stats.append(chance_stat(inp.boot, ("stability", m.q.shape[1:], k),
                                     lambda part, _: chance(part, m.q.shape[1:], k)))
        stats.append(mean_stat("vs_rest", column_means(np.delete(pairs[me], me, axis=0)), inp.boot))
        stats.append(plain_stat("family_size", k, k))
        for j in range(k):
            if j != me:
                stats.append(mean_stat(stat_name("ssim_with", names[j]), pairs[me, j], inp.boot))
    if m.second_seed is not None:
        q2, flat2 = normalize(m.second_seed)
        floor = np.where(m.flat | flat2, np.nan, ssim(m.q, q2))
        stats.append(mean_stat("explainer_floor", floor, inp.boot))
    if per_image is None:
        return MeasureResult("stability", True, (plain_stat("headline", None, 0), *stats))
    return headline_result("stability", True, per_image, inp.boot, stats)


MEASURE = Measure("stability", True, frozenset({"clean", "family"}), compute,
                  "Do models trained with other seeds explain alike? Mean pairwise SSIM "
                  "within the family.", min_map=WIN)
