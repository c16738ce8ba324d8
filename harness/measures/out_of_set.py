"""(b) Reaction to out-of-set samples: salt-and-pepper noise (the authors' test) and
user-supplied out-of-set image sets. Higher is better (graceful degradation)."""

import numpy as np

from harness.maps import normalize, scale
from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    mean_stat,
    plain_stat,
    stat_name,
)
from harness.measures.entropy import salience_entropy
from harness.numerics.similarity import WIN, ssim, wasserstein_1d


def noise_ssim(q_clean: np.ndarray, flat: np.ndarray, q_noisy: np.ndarray) -> np.ndarray:
    """SSIM of each noisy map against its clean map.

    Args:
        q_clean: ``(N, g, g) uint8``; flat: ``(N,) bool`` (those images get NaN).
        q_noisy: ``(L, N, g, g) uint8``, one stack per noise level.

    Returns:
        ``(L, N) float64``.
    """
    return np.stack([np.where(flat, np.nan, ssim(q_clean, q)) for q in q_noisy])


def curve_area(levels, ssim_per_level: np.ndarray) -> np.ndarray:
    """Area under SSIM against noise level, x from 0 (SSIM 1 by definition) to the last
    level, trapezoid rule; ``(L, N)`` -> ``(N,)`` (NaN where any level is NaN)."""
    x = np.concatenate([[0.0], np.asarray(levels, np.float64)])
    y = np.concatenate([np.ones((1, ssim_per_level.shape[1])), ssim_per_level])
    return ((y[1:] + y[:-1]) / 2 * np.diff(x)[:, None]).sum(axis=0)


def set_shift(h_in: np.ndarray, h_out: np.ndarray) -> float:
    """Wasserstein distance between in-set and out-of-set entropy distributions
    (flat maps, NaN, left out)."""
    return wasserstein_1d(h_in[~np.isnan(h_in)], h_out[~np.isnan(h_out)])


def chance(boot, shape, levels) -> np.ndarray:
    """Per image, the area for maps of i.i.d. uniform cells, clean and noisy drawn
    independently."""
    from harness.measures.chance import uniform_maps

    q, flat = normalize(uniform_maps(boot, shape, "clean"))
    noisy = np.stack([normalize(uniform_maps(boot, shape, stat_name("noise", a)))[0]
                      for a in levels])
    return curve_area(levels, noise_ssim(q, flat, noisy))


def compute(inp: MeasureInputs) -> MeasureResult:
    m = inp.maps
    levels = sorted(m.noisy)
    stats, area = [], None
    if levels:
        q_noisy = np.stack([normalize(m.noisy[a].raw)[0] for a in levels])
        per_level = noise_ssim(m.q, m.flat, q_noisy)
        area = curve_area(levels, per_level)
        if inp.boot is not None:
            from harness.measures.chance import chance_stat

            stats.append(chance_stat(inp.boot, ("out_of_set", m.q.shape[1:], tuple(levels)),
                                     lambda part, _: chance(part, m.q.shape[1:], levels)))
        for a, s in zip(levels, per_level, strict=True):
            stats.append(mean_stat(stat_name("ssim", a), s, inp.boot))
            stats.append(mean_stat(stat_name("score", a), m.noisy[a].target_score, inp.boot))
            if inp.labels is not None:
                stats.append(mean_stat(stat_name("accuracy", a),
                                       (m.noisy[a].predicted == inp.labels).astype(float),
                                       inp.boot))
    h_in, _ = salience_entropy(m.q, m.flat, m.s_norm)
    for name in sorted(m.out_of_set):
        raw = m.out_of_set[name]
        q, flat = normalize(raw)
        h_out, _ = salience_entropy(q, flat, scale(raw)[0])
        stats.append(mean_stat(stat_name("entropy", name), h_out, inp.set_boots.get(name)))
        stats.append(plain_stat(stat_name("wasserstein", name), set_shift(h_in, h_out),
                                int((~np.isnan(h_out)).sum())))
    if area is None:
        return MeasureResult("out_of_set", True, (plain_stat("headline", None, 0), *stats))
    return headline_result("out_of_set", True, area, inp.boot, stats)


MEASURE = Measure("out_of_set", True, frozenset({"clean", "noise", "out_of_set"}), compute,
                  "Does the salience degrade gracefully under noise? Area under SSIM vs. "
                  "salt-and-pepper level.", min_map=WIN)
