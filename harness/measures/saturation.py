"""How many clean images a model scores at the probability clip. Not a measure and
never ranked: a model that outputs probabilities and is certain of an image (p = 1 in
float32) has log-odds +-16.1 on it whatever its margin, so no perturbation can move
its score, its occlusion and RISE maps of that image come out flat, and the measures
rest on fewer images. The count says why."""

import numpy as np

from harness.measures.base import MeasureResult, Stat

NAME = "score"
STATISTIC = "saturated"


def compute(at_clip: np.ndarray) -> MeasureResult:
    """The count of saturated images (``at_clip``: ``(N,) bool``) out of ``n`` = N."""
    at_clip = np.asarray(at_clip, bool)
    return MeasureResult(NAME, False, (Stat(STATISTIC, float(at_clip.sum()), n=len(at_clip)),))
