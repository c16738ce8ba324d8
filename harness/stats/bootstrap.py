"""One bootstrap over images per run, shared by every model, measure and interval.

The resamples are drawn once from the run's seed and the *set* of image keys (content
hashes), never from the order the images came in or the model being scored, so every
interval of a run resamples the same images, two models' intervals are paired, and a
rerun, a re-rendered leaderboard and a gate reading the files all see the same resamples.

A resample is kept as counts (how often each image was drawn), so the mean of any
number of per-image columns over all resamples is one matrix product, and a value that
is missing (NaN: a flat map, no mask) simply drops out of both sum and count.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

RESAMPLES = 1000
_BLOCK = 100
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
        """``(resamples, n) float64``: how often each image is drawn in each resample."""
        if self._counts is None:
            self._counts = _counts(self.seed, self.keys, self.resamples)
        return self._counts

    def means(self, values) -> np.ndarray:
        """Resampled means of per-image values, NaN excluded.

        Args:
            values: ``(n,)`` or ``(n, k)``, NaN where an image has no value.

        Returns:
            ``(resamples,)`` or ``(resamples, k)``; NaN for a resample that drew no image
            with a value.
        """
        v = np.asarray(values, np.float64)
        if v.shape[0] != self.n:
            raise ValueError(f"{v.shape[0]} values for {self.n} images")
        present = ~np.isnan(v)
        total = self.counts @ np.where(present, v, 0.0)
        count = self.counts @ present.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    def interval(self, values) -> tuple[float, float] | None:
        """Percentile 95% interval of the mean of ``(n,)`` values (None without one)."""
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
    counts = np.zeros((resamples, n))
    for start in range(0, resamples, _BLOCK):
        rows = min(_BLOCK, resamples - start)
        drawn = rng.integers(0, n, (rows, n)) if n else np.zeros((rows, 0), np.int64)
        flat = (drawn + n * np.arange(rows)[:, None]).ravel()
        counts[start:start + rows] = np.bincount(flat, minlength=rows * n).reshape(
            rows, n)[:, rank]
    return counts
