"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci and Kasneci, ICML 2022):
remove a fraction of the pixels, most relevant first (MoRF) or least relevant first
(LeRF), and fill them by noisy linear imputation, which leaves no trace of where the
removed pixels were (a blur or grey fill does, and a model can read it). A faithful map
loses the score fast MoRF and slowly LeRF: the value is the mean over the fractions of
score(LeRF) - score(MoRF). Higher is better."""

import numpy as np

from harness.measures.base import Measure, MeasureInputs, MeasureResult, headline_result, mean_stat
from harness.measures.chance import beyond_chance


def gap(scores) -> np.ndarray:
    """``(n, 2F)`` scores, F fractions MoRF then the same F LeRF -> ``(n,)`` mean over the
    fractions of LeRF - MoRF."""
    s = np.asarray(scores, np.float64)
    f = s.shape[1] // 2
    return (s[:, f:] - s[:, :f]).mean(axis=1)


def compute(inp: MeasureInputs) -> MeasureResult:
    own = inp.maps.curves["road"].raw[:, 0, :]
    f = own.shape[1] // 2
    chance = gap(inp.maps.curves["road/chance"].raw[:, 0, :])
    details = (mean_stat("chance", chance, inp.boot),
               beyond_chance(gap(own), chance, True, inp.boot),
               mean_stat("score@morf", own[:, :f].mean(axis=1), inp.boot),
               mean_stat("score@lerf", own[:, f:].mean(axis=1), inp.boot))
    return headline_result("road", True, gap(own), inp.boot, details)


MEASURE = Measure("road", True, frozenset({"clean", "curve:road", "curve:road/chance"}),
                  compute,
                  "Does removing the pixels the map ranks first hurt more than removing "
                  "those it ranks last, with the gaps filled so no shape of the hole "
                  "remains? Mean over 10-90% removed of score(LeRF) - score(MoRF).")
