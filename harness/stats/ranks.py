"""Ranks that admit ties, from paired verdicts.

Within a measure, ``better[i, j]`` says model i is separably better than model j (paired
test, Holm-adjusted p < 0.05, difference in i's favour). A model's rank is 1 + the
number of models separably better, so models the data cannot tell apart share a rank.
Its rank interval is the 2.5th-97.5th percentile of its rank by value across the
run's bootstrap resamples; its point rank (1 + the models with a better value) breaks
ties in the ordering. None of these ever looks at a model's name.
"""

from __future__ import annotations

import numpy as np


def separable_ranks(better: np.ndarray, scored: np.ndarray) -> np.ndarray:
    """``(M,)`` float ranks, NaN for a model without a value.

    Args:
        better: ``(M, M) bool``, ``better[i, j]``: i separably better than j.
        scored: ``(M,) bool``, which models have a value.
    """
    ranks = 1.0 + (better & scored[:, None]).sum(axis=0)
    return np.where(scored, ranks, np.nan)


def value_ranks(values: np.ndarray, higher: bool) -> np.ndarray:
    """1 + the number of models with a strictly better value, along the last axis; NaN
    for a missing value (it neither ranks nor counts)."""
    v = np.asarray(values, np.float64)
    oriented = v if higher else -v
    missing = np.isnan(oriented)
    filled = np.where(missing, -np.inf, oriented)
    ranks = 1.0 + (filled[..., None, :] > filled[..., :, None]).sum(axis=-1)
    return np.where(missing, np.nan, ranks)


def rank_intervals(draws: np.ndarray, higher: bool) -> tuple[np.ndarray, np.ndarray]:
    """2.5th and 97.5th percentile of each model's rank by value over resamples.

    Args:
        draws: ``(resamples, M)`` resampled values (NaN: no value in that resample).

    Returns:
        Two ``(M,)`` float arrays of whole ranks (the percentiles taken as the nearest
        observed ranks outward), NaN for a model that never has a value.
    """
    ranks = value_ranks(draws, higher)
    low, high = np.full(ranks.shape[1], np.nan), np.full(ranks.shape[1], np.nan)
    for j in range(ranks.shape[1]):
        r = ranks[:, j][~np.isnan(ranks[:, j])]
        if len(r):
            low[j] = np.percentile(r, 2.5, method="lower")
            high[j] = np.percentile(r, 97.5, method="higher")
    return low, high


def pareto(better: list[np.ndarray]) -> np.ndarray:
    """``(M,) bool``: models that no other model dominates, i.e. is separably better than
    on at least one measure and separably worse on none.

    Args:
        better: one ``(M, M) bool`` matrix per measure.
    """
    if not better:
        return np.zeros(0, bool)
    wins = np.any(better, axis=0)  # wins[i, j]: i better than j somewhere
    losses = np.any([b.T for b in better], axis=0)  # losses[i, j]: i worse than j somewhere
    dominates = wins & ~losses
    np.fill_diagonal(dominates, False)
    return ~dominates.any(axis=0)
