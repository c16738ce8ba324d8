"""(g) Sanity: does the explanation depend on what the model learned? The
model-randomisation test of Adebayo et al. 2018 on the ONNX file itself: the model's
clean maps against those of its randomised twin (:mod:`harness.model.twin`), both
explaining the model's class. Higher is better: near 0 means the maps look the same
whatever the weights, i.e. they show the image, not the model."""

import numpy as np

from harness.measures.base import (
    Measure,
    MeasureInputs,
    MeasureResult,
    headline_result,
    mean_stat,
    plain_stat,
)
from harness.numerics.similarity import WIN, ssim


def dissimilarity(q: np.ndarray, flat: np.ndarray, q_twin: np.ndarray,
                  flat_twin: np.ndarray) -> np.ndarray:
    """Per image 1 - SSIM of the model's and the twin's 8-bit maps; NaN where either
    map is flat."""
    return np.where(flat | flat_twin, np.nan, 1.0 - ssim(q, q_twin))


def compute(inp: MeasureInputs) -> MeasureResult:
    from harness.maps import normalize

    m = inp.maps
    if m.twin is None or not m.twin.raw.size:
        # no twin: the model has no weight tensor to randomise (its maps cannot depend on
        # learned weights, so the test has nothing to test)
        return MeasureResult("sanity", True, (plain_stat("headline", None, 0),
                                              plain_stat("randomised_tensors", 0.0, 0)))
    q_twin, flat_twin = normalize(m.twin.raw)
    values = dissimilarity(m.q, m.flat, q_twin, flat_twin)
    return headline_result("sanity", True, values, inp.boot, (
        mean_stat("twin_flat_fraction", flat_twin.astype(float), inp.boot),
        mean_stat("twin_agreement", (m.twin.predicted == m.clean.predicted).astype(float),
                  inp.boot)))


MEASURE = Measure("sanity", True, frozenset({"clean", "twin"}), compute,
                  "Do the maps depend on what the model learned? 1 - SSIM between the maps "
                  "of the model and of a twin with randomised weights.", min_map=WIN)
