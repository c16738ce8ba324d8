"""Faithfulness correlation (Bhatt, Weller and Moura, IJCAI 2020): hide random subsets of
the cells and correlate, over the subsets, the map's sum over each subset with the score
drop it causes. A map whose values say how much each cell matters correlates highly.
Higher is better."""

import numpy as np

from harness.measures.base import Measure, MeasureInputs, MeasureResult, headline_result, mean_stat
from harness.measures.chance import beyond_chance


def pearson(a, b) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b`` (``(n, S)``);
    NaN where either row is constant (no correlation is defined)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=1) / np.where(den > 0, den, 1.0), np.nan)


def correlations(rows) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 3, S + 1)``: the copies' scores (copy 0 hides nothing), each subset's sum of
    the model's map and of a random map -> the model's and the random map's correlation
    per image."""
    r = np.asarray(rows, np.float64)
    drops = r[:, 0, :1] - r[:, 0, 1:]
    return pearson(r[:, 1, 1:], drops), pearson(r[:, 2, 1:], drops)


def compute(inp: MeasureInputs) -> MeasureResult:
    own, chance = correlations(inp.maps.curves["faithcorr"].raw)
    return headline_result("faithfulness_correlation", True, own, inp.boot,
                           (mean_stat("chance", chance, inp.boot),
                            beyond_chance(own, chance, True, inp.boot)))


MEASURE = Measure("faithfulness_correlation", True, frozenset({"clean", "curve:faithcorr"}),
                  compute,
                  "Does the map's sum over a random set of cells say how much hiding them "
                  "costs? Pearson correlation over 32 random subsets of a quarter of the "
                  "cells.")
