"""From a model's raw outputs to the scalar the salience maps explain (docs/measures.md)."""

import numpy as np

# The scalars a map can explain; SalienceConfig and the CLI offer these.
SCORES = ("log_odds", "logit", "probability")

_CLIP = 1e-7


def saturated(probability: np.ndarray, output_kind: str) -> np.ndarray:
    """``(N,) bool``: where a class ``probability`` of a model with ``output_kind``
    outputs lies beyond the clip [1e-7, 1 - 1e-7], so that its log-odds read +-16.1
    whatever the model's margin: the score cannot move, nor tell two models apart.
    A model that gives logits never saturates."""
    p = np.asarray(probability, np.float64)
    if output_kind != "probabilities":
        return np.zeros(p.shape, bool)
    return (p < _CLIP) | (p > 1 - _CLIP)


def resolve_targets(outputs: np.ndarray, target, num_classes: int | None = None) -> np.ndarray:
    """The class each image is explained for.

    Args:
        outputs: ``(N, K)`` clean outputs.
        target: ``None`` for the class predicted on the clean image (as in the paper),
            an int for one class for all images, or an ``(N,)`` int array.
        num_classes: K, when ``outputs`` has no columns (the caller skipped the clean pass).

    Returns:
        ``(N,) int64``.
    """
    n, k = outputs.shape
    k = num_classes or k
    if target is None:
        return outputs.argmax(axis=1).astype(np.int64)
    t = np.broadcast_to(np.asarray(target, dtype=np.int64), (n,)).copy()
    if t.size and (t.min() < 0 or (k and t.max() >= k)):
        raise ValueError(f"target classes must lie in [0, {k - 1}], got {t.min()}..{t.max()}")
    return t


def class_scores(outputs: np.ndarray, output_kind: str, targets: np.ndarray,
                 score: str = "log_odds") -> np.ndarray:
    """The explained scalar per row, in float64.

    Args:
        outputs: ``(B, K) float32`` logits or probabilities.
        output_kind: ``"logits"`` or ``"probabilities"``.
        targets: ``(B,) int64`` class per row.
        score: ``"log_odds"``: z_c - logsumexp_{j != c} z_j from logits, or
            log p_c - log(1 - p_c) with p clipped to [1e-7, 1 - 1e-7] from probabilities;
            ``"logit"``: z_c (log p_c for a model that outputs probabilities);
            ``"probability"``: softmax(z)_c or p_c.

    Returns:
        ``(B,) float64``.
    """
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    z = np.asarray(outputs, np.float64)
    rows = np.arange(len(z))
    if output_kind == "probabilities":
        p = np.clip(z[rows, targets], _CLIP, 1 - _CLIP)
        if score == "log_odds":
            return np.log(p) - np.log1p(-p)
        return np.log(p) if score == "logit" else z[rows, targets]
    zc = z[rows, targets]
    if score == "logit":
        return zc
    others = z.copy()
    others[rows, targets] = -np.inf
    m = others.max(axis=1)
    lse_others = m + np.log(np.exp(others - m[:, None]).sum(axis=1))
    if score == "log_odds":
        return zc - lse_others
    # softmax_c = 1 / (1 + exp(lse_others - z_c)), stable for saturated models
    return 1.0 / (1.0 + np.exp(lse_others - zc))
