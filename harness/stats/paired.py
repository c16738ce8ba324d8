"""Paired comparisons of per-image values: models scored on the same images are judged
on their per-image differences, which is far more sensitive than comparing two separate
intervals when the models agree on which images are hard.

For each comparison: the mean difference over the images both sides have, and by
default (:data:`BOOTSTRAP_T`) its studentised bootstrap 95% interval over the run's
shared resamples with the equal-tailed test that is its exact dual
(:mod:`harness.stats.studentized`): valid for the skewed differences these measures
give. :data:`SIGN_FLIP` keeps the earlier pair, a percentile interval and a two-sided
sign-flip permutation test (under "no difference" each image's difference is as likely
to have either sign, so the observed ``|mean|`` is ranked among ``flips`` seeded random
sign patterns, p = (b + 1) / (flips + 1)), which is exact only for symmetric
differences. Holm's step-down adjustment then controls the chance of any false verdict
within a family of comparisons.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np

from harness.stats import studentized
from harness.stats.bootstrap import Bootstrap, column_means

BOOTSTRAP_T, SIGN_FLIP = "bootstrap-t", "sign-flip"
TESTS = (BOOTSTRAP_T, SIGN_FLIP)
FLIPS = 10_000
_STREAM = zlib.crc32(b"sign-flips")
_CHUNK = 1000  # sign patterns drawn at a time, so memory stays at 1000 x n
# A pattern's |sum| counts as "at least as extreme" within rounding of the observed one
# (the all-plus pattern is the observed difference itself), relative to sum |d|.
_TIE = 1e-9


@dataclasses.dataclass(frozen=True)
class Paired:
    """Comparisons side by side, one entry per column of the differences given.

    ``n``: images with a difference; ``diff``: their mean; ``ci_low``/``ci_high``: its
    95% interval; ``p_value``: the test of "no difference". With the default test the
    interval and p are NaN below 3 images, and the interval where it has no finite end.
    """

    n: np.ndarray
    diff: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray


def paired(diffs, boot: Bootstrap, test: str = BOOTSTRAP_T, flips: int = FLIPS) -> Paired:
    """Test every column of per-image differences.

    Args:
        diffs: ``(n, k)`` differences a - b per image (rows follow ``boot.keys``), NaN
            where either side has no value.
        boot: the run's resamples of these images (also seeds the sign flips).
        test: :data:`BOOTSTRAP_T` or :data:`SIGN_FLIP`.
        flips: random sign patterns for the sign-flip test.
    """
    d = np.asarray(diffs, np.float64)
    if d.ndim == 1:
        d = d[:, None]
    if test == BOOTSTRAP_T:
        t = studentized.bootstrap_t(d, boot)
        return Paired(t.n, t.mean, t.low, t.high, t.p)
    if test != SIGN_FLIP:
        raise ValueError(f"unknown test {test!r}: one of {', '.join(TESTS)}")
    present = ~np.isnan(d)
    n = present.sum(axis=0)
    low, high = np.full(d.shape[1], np.nan), np.full(d.shape[1], np.nan)
    if (n > 0).any():
        low[n > 0], high[n > 0] = np.nanpercentile(boot.means(d[:, n > 0]), [2.5, 97.5], axis=0)
    p = sign_flip_p(np.where(present, d, 0.0), boot.seed, flips)
    return Paired(n, column_means(d), low, high, np.where(n > 0, p, np.nan))


def sign_flip_p(zeroed: np.ndarray, seed: int, flips: int = FLIPS) -> np.ndarray:
    """Two-sided sign-flip p-values of the mean of each column.

    Args:
        zeroed: ``(rows, k)`` differences with 0 where missing (a flipped 0 stays 0, so
            the missing rows drop out of every pattern's mean).
        seed: the run's seed; the patterns depend on it and the number of rows only.
    """
    rows = zeroed.shape[0]
    # sums, not means: the common 1/n cancels
    threshold = np.abs(zeroed.sum(axis=0)) - _TIE * np.abs(zeroed).sum(axis=0)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM, rows)))
    extreme = np.zeros(zeroed.shape[1], np.int64)
    for start in range(0, flips, _CHUNK):
        signs = rng.integers(0, 2, (min(_CHUNK, flips - start), rows)) * 2.0 - 1.0
        extreme += (np.abs(signs @ zeroed) >= threshold).sum(axis=0)
    return (extreme + 1) / (flips + 1)


def smallest_p(n, test: str = BOOTSTRAP_T, resamples: int | None = None,
               flips: int = FLIPS) -> np.ndarray:
    """The smallest p-value ``test`` can give ``n`` differences (with any spread). Below
    it no difference of any size is significant: a test on too few images cannot
    reject.

    For the sign-flip test only the observed signs and their negation are as extreme as
    themselves, 2 of the 2^n patterns (and never below 1 / (flips + 1)); for the
    bootstrap-t see :func:`harness.stats.studentized.smallest_p`.
    """
    if test == BOOTSTRAP_T:
        from harness.stats.bootstrap import RESAMPLES

        return studentized.smallest_p(n, RESAMPLES if resamples is None else resamples)
    n = np.asarray(n, np.float64)
    return np.maximum(np.exp2(1.0 - np.maximum(n, 1.0)), 1.0 / (flips + 1))


def holm(p) -> np.ndarray:
    """Holm's step-down adjustment; NaN entries are not tests and stay NaN.

    The i-th smallest of m p-values becomes ``max over j <= i of (m - j + 1) p_(j)``,
    capped at 1.
    """
    p = np.asarray(p, np.float64)
    out = np.full(p.shape, np.nan)
    tests = np.flatnonzero(~np.isnan(p))
    if not len(tests):
        return out
    order = tests[np.argsort(p[tests], kind="stable")]
    m = len(order)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(stepped, 1.0)
    return out
