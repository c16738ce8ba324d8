"""Ranks that admit ties, from paired verdicts.

Within a measure, ``better[i, j]`` says model i is separably better than model j (paired
test, Holm-adjusted p < 0.05, difference in i's favour). A model's rank is 1 + the
number of models separably better, so models the data cannot tell apart share a rank.
Its rank set is [1 + the models separably better, M - the models separably worse]
(Mogstad, Romano, Shaikh and Wilhelm, "Inference for Ranks", 2024): the pairwise tests
of a measure are simultaneous (Holm controls the chance of any false verdict among
them), so with 95% confidence every model's true rank lies in its set at once, and the
printed rank, the set's lower end, lies in it by construction. Its point rank (1 + the
models with a better value) breaks ties in the ordering. None of these ever looks at a
model's name.
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


def rank_sets(better: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each model's rank set ``[1 + separably better, M - separably worse]``, M the
    models with a value; NaN for a model without one.

    Args:
        better: ``(M, M) bool``, ``better[i, j]``: i separably better than j, from
            simultaneous tests (Holm over the measure's pairs).
        scored: ``(M,) bool``, which models have a value.
    """
    both = better & scored[:, None] & scored[None, :]
    low = 1.0 + both.sum(axis=0)
    high = float(scored.sum()) - both.sum(axis=1)
    return np.where(scored, low, np.nan), np.where(scored, high, np.nan)


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
