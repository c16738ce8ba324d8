"""Test accuracy on the clean in-set images. Not a salience measure and never ranked:
it is shown beside them because the comparison is only fair between models of equal
accuracy, and its paired test says whether they are.

Per-image values are 0 or 1, so two models are compared by the sign-flip test, which on
differences of -1, 0 and 1 is McNemar's exact test: the studentised bootstrap has no
finite interval for a share with few failures, and calls a handful of one-sided
discordant images decisive."""

import numpy as np

from harness.measures.base import MeasureResult, headline_result
from harness.stats.paired import SIGN_FLIP

NAME = "accuracy"
TEST = SIGN_FLIP  # whatever the run's test: McNemar's exact test on 0/1 values


def compute(predicted: np.ndarray, labels: np.ndarray | None, boot) -> MeasureResult | None:
    """Share of correctly classified images, with its interval; None without labels.

    Args:
        predicted: ``(N,)`` the model's class per clean image.
        labels: ``(N,)`` true classes in the model's class order, or None.
        boot: the run's resamples of the images.
    """
    if labels is None:
        return None
    return headline_result(NAME, True, (predicted == labels).astype(np.float64), boot)
