"""(a) Salience entropy: how focused the explanations are. Lower is better."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    mean_stat,
    plain_stat,
)
from harness.numerics.similarity import entropy, spatial_entropy


def salience_entropy(q: np.ndarray, flat: np.ndarray, s_norm: np.ndarray):
    """Per-map normalised entropy, the paper's histogram definition and the spatial one.

    Args:
        q: ``(N, g, g) uint8`` 8-bit maps.
        flat: ``(N,) bool``; flat maps carry no explanation and get NaN, not 0.
        s_norm: ``(N, g, g)`` min-max normalised maps.

    Returns:
        ``(h_hat, spatial)``: two ``(N,) float64`` arrays, NaN for flat maps.
    """
    h_hat = np.where(flat, np.nan, entropy(q))
    spatial = np.where(flat, np.nan, spatial_entropy(s_norm))
    return h_hat, spatial


def compute(inp: MeasureInputs) -> MeasureResult:
    m = inp.maps
    h_hat, spatial = salience_entropy(m.q, m.flat, m.s_norm)
    return headline_result("entropy", False, h_hat, inp.boot, (
        mean_stat("spatial_entropy", spatial, inp.boot),
        mean_stat("flat_fraction", m.flat.astype(float), inp.boot),
        plain_stat("flat_maps", float(m.flat.sum()), len(m.flat)),
    ))


MEASURE = Measure("entropy", False, frozenset({"clean"}), compute,
                  "How focused is the salience? Normalised entropy of the 8-bit map's values.")
