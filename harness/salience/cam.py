"""Class activation maps read out of the ONNX graph: the paper's Grad-CAM, one forward
pass per image.

For a head of global average pooling followed by one linear layer, Grad-CAM equals the
class activation map sum_k w[c, k] * A_k (up to a positive factor that min-max
normalisation removes), where A are the feature maps entering the pooling and w the
linear layer's weights. Both are in the file: we find the pattern, expose A as an extra
output of an in-memory copy of the model (the file is never changed), and combine.

Recognised heads, walking back from the class output:
``[Softmax | Identity]* <- (Gemm | Add(MatMul, bias) | MatMul)`` with weights that are initializers
(or Constant nodes), ``<- [Flatten | Reshape | Squeeze | Transpose | Identity | Dropout]*``
``<- (GlobalAveragePool | ReduceMean over both spatial axes | AveragePool covering the
whole map)`` fed by a 4-D tensor (NCHW, or NHWC for a ReduceMean over axes 1, 2).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import numpy_helper

from harness.errors import NoCamHead
from harness.numerics.pixels import checked_float
from harness.salience.scoring import resolve_targets

_FINAL = {"Softmax", "LogSoftmax"}
_PASS = {"Flatten", "Reshape", "Squeeze", "Transpose", "Identity", "Dropout"}


@dataclasses.dataclass(frozen=True)
class CamHead:
    """Where the class activation map comes from.

    Attributes:
        feature: name of the 4-D tensor entering the pooling.
        weights: ``(K, C) float32``, class x channel.
        channels_last: the feature tensor is (N, h, w, C) rather than (N, C, h, w).
        kernel: for an AveragePool head, its kernel (checked against the map's size).
    """

    feature: str
    weights: np.ndarray
    channels_last: bool = False
    kernel: tuple[int, ...] | None = None


class _Constants:
    """The graph's constant tensors (initializers and Constant nodes) by name, converted
    to arrays only when read: the head needs one weight matrix, not a whole ResNet.
    External data is read from ``base_dir``, the model's folder, whatever the working
    directory."""

    def __init__(self, graph, base_dir: str = ""):
        self._base_dir = base_dir
        self._tensors = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self._tensors[node.output[0]] = attr.t

    def __contains__(self, name) -> bool:
        return name in self._tensors

    def __getitem__(self, name) -> np.ndarray:
        return numpy_helper.to_array(self._tensors[name], base_dir=self._base_dir)


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            if a.type == a.INTS:
                return tuple(a.ints)
            if a.type == a.INT:
                return a.i
            if a.type == a.FLOAT:
                return a.f
    return default


def find_cam_head(graph, output_name: str, base_dir: str = "") -> CamHead:
    """Find the GAP + linear head that produces ``output_name`` (weights kept as
    external data are read from ``base_dir``, the model's folder).

    Raises:
        NoCamHead: naming what was found instead.
    """
    producer = {out: node for node in graph.node for out in node.output}
    consts = _Constants(graph, base_dir)
    seen = []

    def refuse(why):
        chain = " <- ".join(seen) or "nothing"
        raise NoCamHead(f"no global-average-pool + linear head for CAM: walking back from "
                        f"output {output_name!r} found {chain}; {why}. Use --method occlusion")

    def step(name):
        node = producer.get(name)
        seen.append(node.op_type if node is not None else f"graph input {name!r}")
        return node

    node = step(output_name)
    while node is not None and node.op_type in _FINAL | {"Identity", "Dropout"}:
        node = step(node.input[0])
    if node is None:
        refuse("the output is not computed by a linear layer")
    alpha = 1.0
    if node.op_type == "Gemm":
        if _attr(node, "transA", 0):
            refuse("a Gemm with transA is not a classifier head")
        if node.input[1] not in consts:
            refuse("the Gemm's weights are not constants")
        b = consts[node.input[1]].astype(np.float32)
        weights = b if _attr(node, "transB", 0) else b.T  # (K, C)
        alpha = float(_attr(node, "alpha", 1.0))
        src = node.input[0]
    else:
        if node.op_type == "Add":
            matmul = [producer.get(i) for i in node.input]
            matmul = [m for m in matmul if m is not None and m.op_type == "MatMul"]
            if len(matmul) != 1:
                refuse("the Add is not a MatMul plus a bias")
            node = matmul[0]
            seen.append("MatMul")
        if node.op_type != "MatMul":
            refuse(f"expected Gemm or MatMul, found {node.op_type}")
        if node.input[1] not in consts:
            refuse("the MatMul's weights are not constants")
        weights = consts[node.input[1]].astype(np.float32).T
        src = node.input[0]
    if weights.ndim != 2:
        refuse("the linear layer's weights are not a matrix")
    node = step(src)
    while node is not None and node.op_type in _PASS:
        node = step(node.input[0])
    if node is None:
        refuse("the linear layer is not fed by a pooling over feature maps")
    channels_last, kernel = False, None
    if node.op_type == "GlobalAveragePool":
        pass
    elif node.op_type == "ReduceMean":
        axes = _attr(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1] in consts:
            axes = tuple(int(a) for a in consts[node.input[1]].reshape(-1))
        axes = tuple(sorted(a % 4 for a in axes)) if axes else ()
        if axes == (1, 2):
            channels_last = True
        elif axes != (2, 3):
            refuse(f"the ReduceMean averages axes {axes}, not both spatial axes")
    elif node.op_type == "AveragePool":
        kernel = _attr(node, "kernel_shape")
    else:
        refuse("the linear layer is not fed by a global average pool")
    return CamHead(node.input[0], alpha * weights, channels_last, kernel)


def cam_head(model) -> CamHead:
    """The CAM head of an :class:`~harness.model.classifier.OnnxClassifier`.

    Raises:
        NoCamHead: the model has none; the message names the file and what it has.
    """
    try:
        return find_cam_head(model.graph, model.output_name, str(model.path.parent))
    except NoCamHead as exc:
        raise NoCamHead(f"{model.path}: {exc}") from None


def cam_with_outputs(model, images, target=None) -> tuple[np.ndarray, np.ndarray]:
    """CAM maps and the model's outputs from one forward pass per image.

    Args:
        model: an :class:`~harness.model.classifier.OnnxClassifier`.
        images: ``(N, H, W, 3) float32 in [0, 1]`` pixel images.
        target: ``None`` (predicted class), an int, or ``(N,)`` ints.

    Returns:
        ``(maps, outputs)``: ``(N, h, w) float32`` raw maps at the feature-map
        resolution (before the ReLU of normalisation) and ``(N, K) float32`` outputs.
    """
    head = cam_head(model)
    outputs, (a,) = model.forward(checked_float(images), extra_outputs=(head.feature,))
    a = a.astype(np.float32)
    if a.ndim != 4:
        raise NoCamHead(f"{model.path}: the pooled tensor {head.feature!r} is {a.ndim}-D, "
                        "not a 4-D feature map; use --method occlusion")
    if head.channels_last:
        a = a.transpose(0, 3, 1, 2)
    if head.kernel is not None and tuple(head.kernel) != a.shape[2:]:
        raise NoCamHead(f"{model.path}: the AveragePool kernel {head.kernel} does not cover "
                        f"the {a.shape[2]}x{a.shape[3]} feature map; use --method occlusion")
    if head.weights.shape[1] != a.shape[1]:
        raise NoCamHead(f"{model.path}: the linear layer takes {head.weights.shape[1]} inputs "
                        f"but the feature map has {a.shape[1]} channels")
    targets = resolve_targets(outputs, target)
    maps = np.einsum("nk,nkhw->nhw", head.weights[targets], a)
    return maps.astype(np.float32), outputs


def cam(model, images, target=None) -> np.ndarray:
    """Class activation maps ``(N, h, w) float32`` (one forward pass per image); see
    :func:`cam_with_outputs`."""
    return cam_with_outputs(model, images, target)[0]
