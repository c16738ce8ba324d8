"""Deletion (Petsiuk, Das and Saenko, BMVC 2018): hide the map's cells from the most
relevant down, one step at a time, and take the area under the explained class's score
curve. A map that puts the evidence first makes the score fall at once: lower is better.

The copies are made by :mod:`harness.salience.curves`; here only their scores are read.
"""

import functools

import numpy as np

from harness.measures.base import Measure, MeasureInputs, MeasureResult, headline_result, mean_stat
from harness.measures.chance import beyond_chance


def auc(scores) -> np.ndarray:
    """Area under each row's curve of K + 1 scores taken at 0, 1/K, ..., 1 of the cells
    (trapezoid rule, so the x axis runs over [0, 1]): ``(n, K + 1)`` -> ``(n,)``."""
    s = np.asarray(scores, np.float64)
    k = s.shape[1] - 1
    return (s.sum(axis=1) - (s[:, 0] + s[:, -1]) / 2.0) / k


def curve_result(name: str, higher: bool, inp: MeasureInputs) -> MeasureResult:
    """Deletion's or insertion's rows: the area under the model map's curve, then the
    random maps' (``chance``), the gap between them and the curve's two ends."""
    own = inp.maps.curves[name].raw[:, 0, :]
    chance = auc(inp.maps.curves[f"{name}/chance"].raw[:, 0, :])
    details = (mean_stat("chance", chance, inp.boot),
               beyond_chance(auc(own), chance, higher, inp.boot),
               mean_stat("score@start", own[:, 0], inp.boot),
               mean_stat("score@end", own[:, -1], inp.boot))
    return headline_result(name, higher, auc(own), inp.boot, details)


def curve_measure(name: str, higher: bool, question: str) -> Measure:
    """Deletion's or insertion's declaration: it reads the clean maps and the curve's
    copies for the model's map and for the random maps."""
    return Measure(name, higher, frozenset({"clean", f"curve:{name}", f"curve:{name}/chance"}),
                   functools.partial(curve_result, name, higher), question)


MEASURE = curve_measure("deletion", False,
                        "Does hiding the cells the map ranks first make the score fall "
                        "fastest? Area under the score curve as cells are replaced by the "
                        "baseline, most relevant first.")
