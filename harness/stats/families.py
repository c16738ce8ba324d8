"""Family against family: a claim such as "guided training raises stability" is about
training recipes, not about five particular seeds, so its uncertainty has two sources:
which models the recipe happened to produce, and which images they were scored on.

The two-level bootstrap resamples both: in each of the run's image resamples, each
family's models are drawn with replacement (seeded by the run seed and the family's
name) and the family's value is the mean of the drawn models' means. For stability the
per-image value is already the family's (all its pairs), so only images vary there.
"""

from __future__ import annotations

import zlib

import numpy as np

from harness.stats.bootstrap import Bootstrap, column_means

_STREAM = zlib.crc32(b"families")


def family_draws(values, members: list[int], boot: Bootstrap, name: str
                 ) -> tuple[float, np.ndarray]:
    """A family's value and its two-level bootstrap draws.

    Args:
        values: ``(n, models)`` per-image values (rows follow ``boot.keys``, NaN = none).
        members: the columns of this family's models.
        boot: the run's image resamples.
        name: the family's name (seeds the model draws).

    Returns:
        ``(value, draws)``: the mean over the family's models of each model's mean, and
        ``(resamples,)`` resampled values (NaN where no drawn model had a value).
    """
    v = np.asarray(values, np.float64)[:, members]
    per_model = column_means(v)
    scored = ~np.isnan(per_model)
    value = float(per_model[scored].mean()) if scored.any() else np.nan
    model_means = boot.means(v)  # (resamples, k)
    rng = np.random.default_rng(np.random.SeedSequence(
        boot.seed, spawn_key=(_STREAM, zlib.crc32(name.encode()))))
    k = len(members)
    drawn = np.take_along_axis(model_means, rng.integers(0, k, (boot.resamples, k)), axis=1)
    present = ~np.isnan(drawn)
    count = present.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.where(count > 0, np.where(present, drawn, 0).sum(axis=1) / count, np.nan)
    return value, draws


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided p-value of "the difference is 0" from its bootstrap draws: twice the
    smaller tail beyond 0, ``(count + 1) / (resamples + 1)``, capped at 1."""
    d = draws[~np.isnan(draws)]
    if not len(d):
        return np.nan
    tail = min((d <= 0).sum(), (d >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (len(d) + 1)))
