"""Family against family: a claim such as "guided training raises stability" is about
training recipes, not about five particular seeds, so its uncertainty has two sources:
which models the recipe happened to produce, and which images they were scored on.

The two-level bootstrap resamples both: in each of the run's image resamples, each
family's models are drawn with replacement (seeded by the run seed and the family's
name) and the family's value is the mean of the drawn models' means. For stability the
per-image value is already the family's (all its pairs), so only images vary there.

The comparison is studentised like a pair of models (:mod:`harness.stats.studentized`),
with a variance that has both sources: the per-image family difference's variance over
its images, plus each family's variance between its models' means over its number of
models; each resample recomputes both from what it drew.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from harness.stats.bootstrap import Bootstrap, column_means
from harness.stats.studentized import MIN_N, dual, moments, studentize, without_spread

_STREAM = zlib.crc32(b"families")


@dataclasses.dataclass(frozen=True)
class Family:
    """A family's value, its variance between models (``s^2 / k``; 0 for one model) and
    both again in each of the run's resamples, ``(resamples,)`` (NaN where no drawn
    model had a value)."""

    value: float
    spread: float
    draws: np.ndarray
    spread_draws: np.ndarray


def family_draws(values, members: list[int], boot: Bootstrap, name: str) -> Family:
    """A family's value and its two-level bootstrap draws.

    Args:
        values: ``(n, models)`` per-image values (rows follow ``boot.keys``, NaN = none).
        members: the columns of this family's models.
        boot: the run's image resamples.
        name: the family's name (seeds the model draws).
    """
    v = np.asarray(values, np.float64)[:, members]
    per_model = column_means(v)
    scored = per_model[~np.isnan(per_model)]
    value = float(scored.mean()) if len(scored) else np.nan
    spread = float(scored.var(ddof=1) / len(scored)) if len(scored) >= 2 else 0.0
    model_means = boot.means(v)  # (resamples, k)
    rng = np.random.default_rng(np.random.SeedSequence(
        boot.seed, spawn_key=(_STREAM, zlib.crc32(name.encode()))))
    k = len(members)
    drawn = np.take_along_axis(model_means, rng.integers(0, k, (boot.resamples, k)), axis=1)
    present = ~np.isnan(drawn)
    count = present.sum(axis=1)
    filled = np.where(present, drawn, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.where(count > 0, filled.sum(axis=1) / count, np.nan)
        squares = np.where(present, (drawn - draws[:, None]) ** 2, 0.0).sum(axis=1)
        spread_draws = np.where(count >= 2, squares / (count - 1) / count, 0.0)
    return Family(value, spread, draws, np.where(count > 0, spread_draws, np.nan))


def family_test(a: Family, b: Family, difference, boot: Bootstrap
                ) -> tuple[int, float, float, float]:
    """``a`` against ``b``: ``(n, ci_low, ci_high, p_value)`` of ``a.value - b.value``.

    Args:
        difference: ``(n,)`` per image, a's mean over its models minus b's (NaN where
            either has none): the image-level part of the variance.
    """
    m = moments(np.asarray(difference, np.float64).reshape(-1, 1), boot)
    n = int(m.n[0])
    if n < MIN_N:
        return n, np.nan, np.nan, np.nan
    estimate = a.value - b.value
    t = studentize((a.draws - b.draws) - estimate,
                   m.variance_draws[:, 0] + a.spread_draws + b.spread_draws)
    se = np.sqrt(m.variance[0] + a.spread + b.spread)
    low, high, p = dual([estimate], [se], t[:, None]) if se > 0 else \
        without_spread([estimate], n, (~np.isnan(t)).sum())  # nothing varies at all
    return n, float(low[0]), float(high[0]), float(p[0])


def family_means(values, members: list[int]) -> np.ndarray:
    """``(n,)`` per image, the mean over the family's models that have a value there."""
    return column_means(np.asarray(values, np.float64)[:, members].T)

