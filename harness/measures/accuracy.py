"""Test accuracy on the clean in-set images. Not a salience measure and never ranked:
it is shown beside them because the comparison is only fair between models of equal
accuracy, and its paired test says whether they are."""

import numpy as np

from harness.measures.base import MeasureResult, headline_result

NAME = "accuracy"


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
