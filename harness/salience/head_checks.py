"""Grad-CAM checks its head against the model before any map is used.

The head is a re-implementation of part of the graph (:mod:`harness.salience.head`):
an operator whose meaning the harness reads differently from ONNX Runtime, or a
derivative that does not exist where the head is evaluated, would give maps that look
like any other. So, on the first batch a head explains:

1. its forward pass from ONNX Runtime's feature map must give ONNX Runtime's class
   scores, to ``FORWARD_TOLERANCE`` of their scale (``HALF_TOLERANCE`` when the head
   computes in half precision); else the model is refused, naming the first node
   whose output parts from ONNX Runtime's (found by a run exposing every tensor);
2. its gradient must agree with a central difference of that forward pass along a
   seeded random direction (two more head passes, float64, on the batch's first
   ``GRADIENT_IMAGES`` images), to
   ``GRADIENT_TOLERANCE`` of the directional derivative's scale; else refused, naming
   the node where the gradient stops being finite when that is the cause.
"""

from __future__ import annotations

import numpy as np

from harness.errors import NoCamHead, excerpt
from harness.salience.head import score_weights

FORWARD_TOLERANCE = 1e-3
HALF_TOLERANCE = 3e-2
GRADIENT_TOLERANCE = 1e-4
STEP = 1e-6  # the central difference's step, relative to A's largest magnitude
GRADIENT_IMAGES = 8  # images of the first batch whose gradient is checked
_HALF_TYPES = {10, 16}  # float16, bfloat16


def check_head(model, head, a: np.ndarray, score: np.ndarray, targets: np.ndarray,
               images: np.ndarray) -> None:
    """Refuse ``head`` unless it reproduces ONNX Runtime's ``score`` from ``a`` (the
    feature map of ``images``) and its gradient is a derivative of that.

    Raises:
        NoCamHead: one line naming the model, the node and the size of the disagreement.
    """
    a64 = np.asarray(a, np.float64)
    values = head.values(a64)
    ours = np.asarray(values[head.score], np.float64).reshape(len(a), -1)
    theirs = np.asarray(score, np.float64).reshape(len(a), -1)
    tolerance = HALF_TOLERANCE if _half_precision(head) else FORWARD_TOLERANCE
    scale = max(float(np.abs(theirs).max(initial=0.0)), 1.0)
    error = float(np.abs(ours - theirs).max(initial=0.0)) if ours.shape == theirs.shape \
        else np.inf
    if not error <= tolerance * scale:
        node = _first_parting_node(model, head, images[:1], tolerance)
        raise NoCamHead(f"{model.path}: Grad-CAM's head does not reproduce the model: its "
                        f"class scores differ from ONNX Runtime's by {error:.3g} (scale "
                        f"{scale:.3g}); they part at {node}. Use --method occlusion, or "
                        "--layer to weigh a tensor after that node")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        grads = head.gradients(a64, targets, values)  # non-finite values are the finding
    gradient = grads.get(head.feature)
    if gradient is None:
        raise NoCamHead(f"{model.path}: the class score does not depend on {head.feature!r}")
    gradient = np.broadcast_to(gradient, a64.shape)
    if not np.isfinite(gradient).all():
        raise NoCamHead(f"{model.path}: Grad-CAM's gradient is not finite "
                        f"({_first_non_finite(head, grads)}): the head has no derivative "
                        "where the model is evaluated. Use --method occlusion")
    # the first few images are enough to meet every operator of the head
    a64, gradient, targets = a64[:GRADIENT_IMAGES], gradient[:GRADIENT_IMAGES], \
        np.asarray(targets)[:GRADIENT_IMAGES]
    direction = np.random.default_rng(np.random.SeedSequence(0)).uniform(-1, 1, a64.shape)
    step = STEP * max(float(np.abs(a64).max(initial=0.0)), 1e-12)
    weights = score_weights(ours[:GRADIENT_IMAGES], targets)

    def explained(a_moved) -> float:
        return float((head.values(a_moved)[head.score].reshape(weights.shape)
                      * weights).sum())

    up, down = explained(a64 + step * direction), explained(a64 - step * direction)
    numeric = (up - down) / (2 * step)
    analytic = float((gradient * direction).sum())
    spread = float(np.abs(gradient * direction).sum())
    if not abs(numeric - analytic) <= GRADIENT_TOLERANCE * max(spread, 1e-12):
        raise NoCamHead(f"{model.path}: Grad-CAM's gradient disagrees with a finite "
                        f"difference of its head ({analytic:.6g} against {numeric:.6g} along "
                        "a random direction): the head is not differentiable where the "
                        "model is evaluated. Use --method occlusion")


def _half_precision(head) -> bool:
    return any(n.op_type == "Cast" and a.get("to") in _HALF_TYPES
               for n, a in zip(head.nodes, head.attributes, strict=True))


def _first_parting_node(model, head, image: np.ndarray, tolerance: float) -> str:
    """The first node of the head whose output, computed by the head from ONNX
    Runtime's feature map, differs from ONNX Runtime's own (on one image)."""
    tensors = model.inner_tensors(image)
    if head.feature not in tensors:
        return f"the score {head.score!r}"
    ours = head.values(np.asarray(tensors[head.feature], np.float64))
    for node in head.nodes:
        name = node.output[0]
        if name in head.shapes or name not in tensors:
            continue
        theirs = np.asarray(tensors[name], np.float64)
        mine = np.asarray(ours[name], np.float64)
        scale = max(float(np.abs(theirs).max(initial=0.0)), 1e-6)
        if mine.shape != theirs.shape or not np.abs(mine - theirs).max(initial=0.0) <= \
                tolerance * scale:
            return f"node {excerpt(node.name or name, 60)} ({node.op_type})"
    return f"the score {head.score!r}"


def _first_non_finite(head, grads: dict) -> str:
    """Where the backward pass first made a non-finite gradient (from the score)."""
    for node in reversed(head.nodes):
        for name in node.input:
            g = grads.get(name)
            if g is not None and not np.isfinite(g).all():
                return f"from node {excerpt(node.name or node.output[0], 60)} ({node.op_type})"
    return f"at {head.feature!r}"
