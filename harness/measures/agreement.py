"""(f) Agreement with human salience (beyond the paper): how much of the salience falls
inside the region a person marked, relative to that region's area. Higher is better;
1 means no better than uniform."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    plain_stat,
)


def relevance_ratio(s_up: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of salience mass inside each mask divided by the mask's share of the area
    ("relevance mass" of Arras et al. 2022, scaled so uniform salience gives 1).

    Args:
        s_up: ``(N, H, W)`` non-negative maps at image size.
        masks: ``(N, H, W) bool``, each with at least one marked pixel.

    Returns:
        ``(N,) float64``; NaN for a map with no mass.
    """
    s = np.asarray(s_up, np.float64)
    s = s.reshape(len(s), int(np.prod(s.shape[1:])))  # not -1: there may be no map
    mk = np.asarray(masks, bool).reshape(s.shape)
    total = s.sum(axis=1)
    inside = (s * mk).sum(axis=1)
    area = mk.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total / area, np.nan)


def chance(boot, shape, masks: np.ndarray, has_mask: np.ndarray) -> np.ndarray:
    """Per image with a mask, the ratio for a map of i.i.d. uniform cells."""
    from harness.maps import scale, upsample
    from harness.measures.chance import uniform_maps

    random = scale(uniform_maps(boot, shape, "clean"))[0]
    out = np.full(len(has_mask), np.nan)
    out[has_mask] = relevance_ratio(upsample(random[has_mask], masks.shape[1:]),
                                    masks[has_mask])
    return out


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import upsample

    m = inp.maps
    if inp.masks is None or not inp.has_mask.any():
        return MeasureResult("agreement", True, (plain_stat("headline", None, 0),))
    use = inp.has_mask & ~m.flat
    values = np.full(len(use), np.nan)
    if use.any():
        s_up = upsample(m.s_norm[use], inp.masks.shape[1:])
        values[use] = relevance_ratio(s_up, inp.masks[use])
    details = [plain_stat("images_with_mask", float(inp.has_mask.sum()),
                          int(inp.has_mask.sum()))]
    if inp.boot is not None:
        import hashlib

        from harness.measures.chance import chance_stat

        masks = hashlib.sha256(np.packbits(inp.masks & inp.has_mask[:, None, None])).hexdigest()
        details.insert(0, chance_stat(
            inp.boot, ("agreement", m.q.shape[1:], masks),
            lambda part, rows: chance(part, m.q.shape[1:], inp.masks[rows], inp.has_mask[rows])))
    return headline_result("agreement", True, values, inp.boot, details)


MEASURE = Measure("agreement", True, frozenset({"clean", "masks"}), compute,
                  "Does the salience fall where people marked? Salience mass inside the "
                  "human mask over the mask's area share (1 = uniform).")
