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


def zero_fraction(q: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """Share of each 8-bit map's cells at 0, NaN for flat maps. On occlusion maps the
    histogram entropy is set almost entirely by it (most cells of a focused map are
    0 after the ReLU), so it says what a low entropy is made of."""
    return np.where(flat, np.nan, (q.reshape(len(q), -1) == 0).mean(axis=1))


def chance(boot, shape) -> np.ndarray:
    """Per image, the entropy of a map of i.i.d. uniform cells."""
    from harness.maps import normalize, scale
    from harness.measures.chance import uniform_maps

    raw = uniform_maps(boot, shape, "clean")
    q, flat = normalize(raw)
    return salience_entropy(q, flat, scale(raw)[0])[0]


def compute(inp: MeasureInputs) -> MeasureResult:
    m = inp.maps
    h_hat, spatial = salience_entropy(m.q, m.flat, m.s_norm)
    reference = ()
    if inp.boot is not None:
        from harness.measures.chance import chance_stat

        reference = (chance_stat(inp.boot, ("entropy", m.q.shape[1:]),
                                 lambda part, _: chance(part, m.q.shape[1:])),)
    return headline_result("entropy", False, h_hat, inp.boot, (*reference,
        mean_stat("spatial_entropy", spatial, inp.boot),
        mean_stat("zero_fraction", zero_fraction(m.q, m.flat), inp.boot),
        mean_stat("flat_fraction", m.flat.astype(float), inp.boot),
        plain_stat("flat_maps", float(m.flat.sum()), len(m.flat)),
    ))


MEASURE = Measure("entropy", False, frozenset({"clean"}), compute,
                  "How focused is the salience? Normalised entropy of the 8-bit map's values.")
