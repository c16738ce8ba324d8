"""Grad-CAM read out of the ONNX graph, one forward pass per image: the last feature
map A is fetched as an extra output of an in-memory copy of the model (the file is
never changed) and the class score is differentiated with respect to it through the
head, exactly, in NumPy (:mod:`harness.salience.head`)."""

from __future__ import annotations

import numpy as np

from harness.errors import NoCamHead
from harness.numerics.pixels import checked_float
from harness.salience.head import Head, find_head
from harness.salience.head_checks import check_head
from harness.salience.scoring import resolve_targets


def grad_head(model, layer: str | None = None, images: np.ndarray | None = None) -> Head:
    """The differentiable head of an :class:`~harness.model.classifier.OnnxClassifier`
    from ``layer`` (default: the last spatial feature map) to the class score, found
    once per model and layer (a twin, whose weights differ, finds its own), with the
    shapes of a run of the model on the first of ``images`` (default: a grey image).

    Raises:
        NoCamHead: the model has none; the message names the file and what stops it.
    """
    import onnx

    heads = model.__dict__.setdefault("_cam_head", {})
    if layer not in heads:
        proto = onnx.load(str(model.path), load_external_data=False) if model.source is None \
            else onnx.load_from_string(model.source)
        probe = np.full((1, *model.input_size, 3), 0.5, np.float32) if images is None \
            else checked_float(images[:1])
        try:
            heads[layer] = find_head(proto, model.output_name, model.inner_tensors(probe),
                                     model.input_name, model.layout, str(model.path.parent),
                                     layer)
        except NoCamHead as exc:
            raise NoCamHead(f"{model.path}: {exc}") from None
    return heads[layer]


def cam_with_outputs(model, images, target=None, layer: str | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM maps and the model's outputs from one forward pass per image.

    The map is sum_k alpha_k A_k with alpha_k the gradient of the class score (the logit)
    with respect to feature map k, summed over the map's positions (Grad-CAM's spatial
    mean times the number of positions, a positive factor that normalisation removes:
    for global average pooling + one linear layer this is the class activation map
    sum_k w[c, k] A_k exactly). The maps are laid out (height, width) as the image is,
    whatever the feature map's layout.

    The first batch a head sees checks it (:func:`~harness.salience.head_checks.check_head`):
    its forward pass against ONNX Runtime's and its gradient against a finite difference.

    Args:
        model: an :class:`~harness.model.classifier.OnnxClassifier`.
        images: ``(N, H, W, 3) float32 in [0, 1]`` pixel images.
        target: ``None`` (predicted class), an int, or ``(N,)`` ints.
        layer: the 4-D tensor whose maps are weighed (default: the last spatial one).

    Returns:
        ``(maps, outputs)``: ``(N, h, w) float32`` raw maps at the feature-map
        resolution (before the ReLU of normalisation) and ``(N, K) float32`` outputs.

    Raises:
        NoCamHead: the head failed its check (naming the node), or a map is not finite.
    """
    images = checked_float(images)
    head = grad_head(model, layer, images)
    outputs, (a, score) = model.forward(images, extra_outputs=(head.feature, head.score))
    if a.ndim != 4:
        raise NoCamHead(f"{model.path}: the feature map {head.feature!r} is {a.ndim}-D, not "
                        "4-D; use --method occlusion")
    targets = resolve_targets(outputs, target)
    checked = model.__dict__.setdefault("_cam_checked", set())
    if layer not in checked and len(images):
        check_head(model, head, a, score, targets, images)
        checked.add(layer)
    grads = head.gradient(a, targets)  # a is float32, as every forward output
    h, w, c = head.axes
    a, grads = a.transpose(0, c, h, w), grads.transpose(0, c, h, w)
    if grads.strides[2] == grads.strides[3] == 0:  # pooled first: one value per channel
        alpha = grads[:, :, 0, 0] * (grads.shape[2] * grads.shape[3])
    else:
        alpha = grads.sum(axis=(2, 3))
    maps = np.einsum("nk,nkhw->nhw", alpha.astype(np.float32), a)
    bad = ~np.isfinite(maps).reshape(len(maps), -1).all(axis=1)
    if bad.any():
        shown = ", ".join(str(int(i)) for i in np.flatnonzero(bad)[:10])
        raise NoCamHead(f"{model.path}: Grad-CAM maps of images {shown} are not finite "
                        f"(NaN or infinite values in {head.feature!r} or its gradient); "
                        "use --method occlusion")
    return maps.astype(np.float32), outputs


def cam(model, images, target=None, layer: str | None = None) -> np.ndarray:
    """Grad-CAM maps ``(N, h, w) float32`` (one forward pass per image); see
    :func:`cam_with_outputs`."""
    return cam_with_outputs(model, images, target, layer)[0]
