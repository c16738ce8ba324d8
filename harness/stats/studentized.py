"""Studentised (bootstrap-t) intervals of means, and the equal-tailed tests that are
their exact duals.

Per-image values of the salience measures, and above all the differences between two
models, are skewed. A percentile interval of a skewed mean is too narrow on the long
tail's side at small n, and the sign-flip test assumes symmetric differences; measured
on simulated lognormal differences they miss their nominal rates two to three times
over (docs/measures.md, "Statistics"). The bootstrap-t corrects for skew to second order.

For values with mean ``m`` and standard error ``se = s / sqrt(n)`` (``n`` the values
present), each of the run's resamples gives ``t*_b = (m*_b - m) / se*_b``, its mean's
distance from the sample's in its own standard errors. With ``t*(j)`` the j-th smallest
of the ``B`` resamples' and ``k = ceil(0.025 (B + 1)) - 1``:

- the 95% interval is ``[m - t*(B + 1 - k) se, m - t*(k) se]``;
- the test of "the mean is 0" is ``p = 2 (min(#{t* <= t0}, #{t* >= t0}) + 1) / (B + 1)``,
  capped at 1, with ``t0 = m / se``.

0 lies outside the interval exactly when p < 0.05, so a verdict and its interval can
never disagree. The stated rules for what the formula leaves undefined:

- fewer than :data:`MIN_N` values: no interval and no test (NaN);
- values with no spread (all equal to ``m``): the studentised statistic is undefined, and
  its limit (every resample has ``t* = 0``) would call three equal differences
  decisive. p is 1 when ``m`` is 0, otherwise the sign-flip test's exact ``2^(1 - n)``
  (at least ``2 / (B + 1)``); the interval is ``[m, m]`` once that p is below 0.05
  (n >= 7) and otherwise reaches from ``m`` to 0;
- a resample with no spread (it drew copies of one value): ``t* = 0`` when its mean is
  ``m``, otherwise infinite with the sign of its difference, so a resample with nothing
  to measure its spread counts as more extreme than any observed statistic;
- a resample that drew no image with a value is left out, and ``B`` counts the rest;
- an interval end that would be infinite (at n = 3 about one resample in nine has no
  spread) is no bound: the interval is NaN, while the test stands.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.stats.bootstrap import Bootstrap, column_means

MIN_N = 3
LEVEL = 0.95
# A spread this small against the values' own size is rounding, not spread.
_FLAT = 1e-12
_BLOCK_BYTES = 8 * 2 ** 20  # one (resamples, columns) temporary of bootstrap_t at most


@dataclasses.dataclass(frozen=True)
class Tested:
    """Columns side by side: ``n`` values present, their ``mean``, its studentised 95%
    interval ``low``/``high`` and the dual test's ``p`` of "the mean is 0"."""

    n: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p: np.ndarray


def bootstrap_t(values, boot: Bootstrap) -> Tested:
    """Studentised intervals and dual tests of each column's mean.

    Args:
        values: ``(n, k)`` per-image values (rows follow ``boot.keys``), NaN where an
            image has none.
        boot: the run's resamples of these images.
    """
    v = np.asarray(values, np.float64)
    # Each column is tested on its own; in blocks, the (resamples, columns) temporaries
    # stay small (all 105 pairs x 7 measures of a 15-model run at once took 560 MB).
    block = max(1, _BLOCK_BYTES // (8 * boot.resamples))
    if v.shape[1] > block:
        parts = [bootstrap_t(v[:, at:at + block], boot) for at in range(0, v.shape[1], block)]
        return Tested(*(np.concatenate([getattr(t, f.name) for t in parts])
                        for f in dataclasses.fields(Tested)))
    m = moments(v, boot)
    t = studentize(m.shift, m.variance_draws)
    low, high, p = dual(m.mean, np.sqrt(m.variance), t)
    low, high, p = (np.where(m.flat, x, y) for x, y in zip(
        without_spread(m.mean, m.n, (~np.isnan(t)).sum(axis=0)), (low, high, p),
        strict=True))
    few = m.n < MIN_N
    return Tested(m.n, m.mean, *(np.where(few, np.nan, x) for x in (low, high, p)))


@dataclasses.dataclass(frozen=True)
class Moments:
    """A column's mean and the variance of that mean, observed and in each resample.

    ``n``, ``mean``, ``variance`` (``s^2 / n``) and ``flat`` (no spread) are ``(k,)``;
    ``shift`` (``m*_b - m``) and ``variance_draws`` (``s*_b^2 / n*_b``, 0 for a resample
    with no spread) are ``(B, k)``, NaN for a resample that drew no value.
    """

    n: np.ndarray
    mean: np.ndarray
    variance: np.ndarray
    flat: np.ndarray
    shift: np.ndarray
    variance_draws: np.ndarray


def moments(values, boot: Bootstrap) -> Moments:
    """Each column's mean and its variance, and the same in every resample: three
    matrix products over the resample counts, on values centred at their mean so the
    sums of squares lose nothing to cancellation."""
    v = np.asarray(values, np.float64)
    present = ~np.isnan(v)
    n = present.sum(axis=0)
    mean = column_means(v)
    centred = np.where(present, v - np.nan_to_num(mean), 0.0)
    squares = centred * centred
    with np.errstate(invalid="ignore", divide="ignore"):
        variance = squares.sum(axis=0) / (n - 1) / n
        flat = squares.sum(axis=0) <= _FLAT * np.where(present, v * v, 0.0).sum(axis=0)
        count, first, second = np.split(boot.sums(np.hstack([present, centred, squares])),
                                         3, axis=1)
        shift = first / count
        spread = (second - count * shift * shift) / (count - 1)
        no_spread = (count < 2) | (spread <= _FLAT * second / count)
        draws = np.where(no_spread, 0.0, spread / count)
    empty = count == 0
    return Moments(n, mean, variance, flat, np.where(empty, np.nan, shift),
                   np.where(empty, np.nan, draws))


def studentize(shift: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """``shift / sqrt(variance)`` per resample; a resample with no spread (variance 0)
    gives 0 where it did not move and an infinity with its sign where it did."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(variance > 0, shift / np.sqrt(variance),
                     np.where(shift == 0, 0.0, np.copysign(np.inf, shift)))
    return np.where(np.isnan(shift) | np.isnan(variance), np.nan, t)


def dual(estimate, se, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The equal-tailed 95% interval ``estimate - t* se`` and its dual p-value.

    Args:
        estimate: ``(k,)`` the statistics.
        se: ``(k,)`` their standard errors.
        t: ``(B, k)`` the resamples' studentised statistics, NaN for a resample left out.

    Returns:
        ``(low, high, p)``, each ``(k,)``; an infinite interval end makes the interval
        NaN.
    """
    estimate, se = np.asarray(estimate, np.float64), np.asarray(se, np.float64)
    valid = (~np.isnan(t)).sum(axis=0)
    # rounded first: 0.025 * 10000 is 250.00000000000003 in floating point, one too many
    k = np.ceil(np.round((1 - LEVEL) / 2 * (valid + 1), 9)).astype(np.int64) - 1
    ordered = np.sort(t, axis=0)  # NaN sort last
    usable = k >= 1
    at_low = np.clip(k - 1, 0, max(len(t) - 1, 0))
    at_high = np.clip(valid - k, 0, max(len(t) - 1, 0))
    columns = np.arange(t.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        t_low, t_high = ordered[at_low, columns], ordered[at_high, columns]
        low, high = estimate - t_high * se, estimate - t_low * se
        bounded = usable & np.isfinite(low) & np.isfinite(high)
        t0 = estimate / se
        below, above = (t <= t0).sum(axis=0), (t >= t0).sum(axis=0)
        p = np.minimum(1.0, 2.0 * (np.minimum(below, above) + 1) / (valid + 1))
    p = np.where(valid > 0, p, np.nan)
    return np.where(bounded, low, np.nan), np.where(bounded, high, np.nan), p


def smallest_p(n, resamples: int) -> np.ndarray:
    """The smallest p-value :func:`bootstrap_t` can give every kind of ``n`` differences:
    equal differences stop at the sign-flip test's ``2^(1 - n)``, and differences with
    spread at about ``2 / (resamples + 1)`` plus twice the share of resamples that are
    copies of one image (``n^-n`` each side), which count as more extreme than anything
    observed. Below it a change of some shape, however large, cannot be separable. 1
    where there is no test (fewer than :data:`MIN_N` values)."""
    n = np.asarray(n, np.float64)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        copies = np.where(n >= MIN_N, np.exp(-n * np.log(np.maximum(n, 1.0))), 1.0)
        equal = np.exp2(1.0 - np.maximum(n, 1.0))
    spread = 2.0 / (resamples + 1) + 2.0 * copies
    return np.where(n >= MIN_N, np.minimum(1.0, np.maximum(equal, spread)), 1.0)


def without_spread(mean, n, valid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(low, high, p)`` of differences with no spread at all, ``n`` of them equal to
    ``mean`` (``valid``: the resamples counted): the sign-flip test's exact p for n equal
    signs, at least ``2 / (valid + 1)`` (1 for a zero difference), and an interval that
    reaches from ``mean`` to 0 until that p is below 0.05, so the two stay duals."""
    mean = np.asarray(mean, np.float64)
    with np.errstate(over="ignore"):
        signs = np.maximum(np.exp2(1.0 - np.asarray(n, np.float64)),
                           2.0 / (np.asarray(valid, np.float64) + 1))
    p = np.where(mean == 0, 1.0, signs)
    reach = np.where(p < 1 - LEVEL, mean, 0.0)
    return np.minimum(mean, reach), np.maximum(mean, reach), p
