"""One bootstrap over images per run, shared by every model, measure and interval.

The resamples are drawn once from the run's seed and the *set* of image keys (content
hashes), never from the order the images came in or the model being scored, so every
interval of a run resamples the same images, two models' intervals are paired, and a
rerun, a re-rendered leaderboard and a gate reading the files all see the same resamples.

A resample is kept as counts (how often each image was drawn), so the mean of any
number of per-image columns over all resamples is one matrix product, and a value that
is missing (NaN: a flat map, no mask) simply drops out of both sum and count.

There are 9,999 resamples, not the 1,000 a percentile interval needs: every comparison
is studentised and tested by the interval's dual (:mod:`harness.stats.studentized`),
whose smallest p-value is 2 / (resamples + 1), and Holm's adjustment over the 105 pairs of 15 models
needs p below 0.05 / 105 = 0.00048 to call anything. The resamples are drawn a block of
rows at a time, so the first 1,000 are the ones a 1,000-resample run drew.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

RESAMPLES = 9999
_BLOCK = 100
_PRODUCT_ROWS = 1000  # counts turned into floats this many rows at a time
_STREAM = zlib.crc32(b"bootstrap")


class Bootstrap:
    """The run's resamples of a set of images.

    Args:
        seed: the run's seed.
        keys: one distinct key per image (content hash), in the order the value arrays
            given to :meth:`means` follow.
        resamples: how many resamples.
    """

    def __init__(self, seed: int, keys: Sequence[str], resamples: int = RESAMPLES):
        keys = list(keys)
        if len(set(keys)) != len(keys):
            raise ValueError("image keys must be distinct")
        self.seed, self.keys, self.resamples = int(seed), keys, resamples
        self._counts = None

    @property
    def n(self) -> int:
        return len(self.keys)

    @property
    def counts(self) -> np.ndarray:
        """``(resamples, n) uint8``: how often each image is drawn in each resample (kept
        as bytes: 10 MB for 1,000 images, where floats would take 80)."""
        if self._counts is None:
            self._counts = _counts(self.seed, self.keys, self.resamples)
        return self._counts

    def sums(self, columns: np.ndarray) -> np.ndarray:
        """``counts @ columns`` in float64: each resample's sum of each ``(n, k)`` column."""
        columns = np.asarray(columns, np.float64)
        if columns.shape[0] != self.n:
            raise ValueError(f"{columns.shape[0]} values for {self.n} images")
        out = np.empty((self.resamples, *columns.shape[1:]))
        for start in range(0, self.resamples, _PRODUCT_ROWS):
            block = self.counts[start:start + _PRODUCT_ROWS].astype(np.float64)
            out[start:start + len(block)] = block @ columns
        return out

    def means(self, values) -> np.ndarray:
        """Resampled means of per-image values, NaN excluded.

        Args:
            values: ``(n,)`` or ``(n, k)``, NaN where an image has no value.

        Returns:
            ``(resamples,)`` or ``(resamples, k)``; NaN for a resample that drew no image
            with a value.
        """
        v = np.asarray(values, np.float64)
        flat = v.reshape(len(v), -1)
        present = ~np.isnan(flat)
        sums = self.sums(np.hstack([np.where(present, flat, 0.0), present]))
        total, count = np.split(sums, 2, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        return means.reshape(self.resamples, *v.shape[1:])

    def interval(self, values) -> tuple[float, float] | None:
        """Percentile 95% interval of the mean of ``(n,)`` values (None without one); a
        single model's value takes it, comparisons are studentised."""
        v = np.asarray(values, np.float64)
        if np.isnan(v).all():
            return None
        return percentile_interval(self.means(v))


def column_means(values: np.ndarray) -> np.ndarray:
    """Mean of each column with NaN left out; NaN for a column with no value."""
    present = ~np.isnan(values)
    count = present.sum(axis=0)
    total = np.where(present, values, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of resampled statistics (NaN draws left out)."""
    low, high = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return float(low), float(high)


def _counts(seed: int, keys: list[str], resamples: int) -> np.ndarray:
    """The index matrix ``integers(0, n, (resamples, n))`` over the keys in sorted order,
    turned into counts and put back in the order of ``keys``. Drawn a block of rows at a
    time (the same numbers as one draw), so building it costs little beyond the result."""
    n = len(keys)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM, n)))
    rank = np.argsort(np.argsort(np.asarray(keys, dtype=object), kind="stable"), kind="stable")
    counts = np.zeros((resamples, n), np.uint8)
    for start in range(0, resamples, _BLOCK):
        rows = min(_BLOCK, resamples - start)
        drawn = rng.integers(0, n, (rows, n)) if n else np.zeros((rows, 0), np.int64)
        flat = (drawn + n * np.arange(rows)[:, None]).ravel()
        block = np.bincount(flat, minlength=rows * n).reshape(rows, n)[:, rank]
        # an image drawn 256 times of n is a chance below 1e-500: refuse, never wrap
        if block.size and block.max() > np.iinfo(np.uint8).max:
            raise ValueError("a bootstrap count does not fit in a byte")
        counts[start:start + rows] = block
    return counts
