"""How sure the pick is: the share of the run's resamples in which a model comes first,
and what the images at hand can detect.

Both work on resampled objective values, ``(resamples, models)``: the same shared
resamples as every interval, so P(best) and the intervals describe the same
uncertainty (which images the models happened to be scored on).
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

POWER = 0.8


def first_share(draws: np.ndarray, higher: bool = True) -> np.ndarray:
    """``(models,)``: the share of resamples in which each model has the best value; a
    tie for first splits the resample between the tied. A resample with no value at all
    counts for nobody, a model without a value in a resample is not first in it.

    Args:
        draws: ``(resamples, models)`` resampled objective values, NaN where none.
        higher: higher is better.
    """
    d = np.asarray(draws, np.float64)
    oriented = np.where(np.isnan(d), -np.inf, d if higher else -d)
    best = oriented.max(axis=1, keepdims=True)
    first = (oriented == best) & np.isfinite(best) & ~np.isnan(d)
    ties = first.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(first, 1.0 / ties, 0.0)
    usable = ties[:, 0] > 0
    return share[usable].mean(axis=0) if usable.any() else np.full(d.shape[1], np.nan)


def detectable(se: float, alpha: float = 0.05, power: float = POWER) -> float:
    """The smallest true difference a two-sided level-``alpha`` test whose estimate has
    standard error ``se`` detects with probability ``power`` (normal approximation):
    ``(z_{1 - alpha/2} + z_power) se``, 2.80 se at the defaults."""
    z = NormalDist()
    return float((z.inv_cdf(1 - alpha / 2) + z.inv_cdf(power)) * se)


def images_needed(se: float, n: int, difference: float, alpha: float = 0.05,
                  power: float = POWER) -> float:
    """About how many images would make ``difference`` detectable with ``power``, the
    standard error shrinking as 1 / sqrt(images): ``n (detectable / difference)^2``;
    inf for a zero difference."""
    if difference == 0 or not np.isfinite(difference):
        return float("inf")
    return float(n * (detectable(se, alpha, power) / abs(difference)) ** 2)
