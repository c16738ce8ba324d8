"""Which tensors of a graph are maps of the image: their two spatial axes followed from
the operator that made them, through the layout operators after it.

Grad-CAM weighs a feature map position by position, so the tensor it weighs must have
the image's height and width as two of its axes, in the image's orientation. A
tensor's shape cannot tell: ``(N, 8, 8, 4)`` may be an NHWC map or an NCHW map
reshaped into NHWC's shape (its positions scrambled). So the axes are followed
through the graph instead, with the shapes the graph really computes (a run, never
the file's ``value_info``, which may say anything):

- the model's input has them where its layout says; a convolution, a pooling or a
  resize makes a map with them at axes 2 and 3 (the ONNX convention);
- elementwise operators keep them; a Transpose moves them; a Reshape, Flatten,
  Squeeze or Unsqueeze keeps an axis only where the memory order leaves it whole (the
  same size and the same stride before and after), so a reshape into another layout's
  shape drops them;
- a Slice, Pad, Concat or Split keeps them only when it leaves the spatial axes
  untouched (a crop, a pad or a flip no longer lines the map up with the image), and so
  do a LayerNormalization and a MatMul over the channels of a channels-last map;
- any other operator drops them.
"""

from __future__ import annotations

import numpy as np

# ops whose 4-D output is an (N, C, H, W) map of their input's positions
_SPATIAL = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool",
            "LpPool", "Resize", "Upsample", "GlobalAveragePool", "GlobalMaxPool",
            "GlobalLpPool"}
# ops computing each output element from the same position of their inputs (a
# normalisation per channel keeps positions too: it follows its input, makes no map)
_ELEMENTWISE = {
    "BatchNormalization", "InstanceNormalization", "LRN",
    "Abs", "Acos", "Acosh", "Add", "And", "Asin", "Asinh", "Atan", "Atanh", "BitShift", "Cast",
    "CastLike", "Ceil", "Celu", "Clip", "Cos", "Cosh", "DequantizeLinear", "Div", "Dropout",
    "Elu", "Equal", "Erf", "Exp", "Floor", "Gelu", "Greater", "GreaterOrEqual", "HardSigmoid",
    "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Less", "LessOrEqual", "Log",
    "Max", "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "Not", "Or", "Pow", "PRelu",
    "QuantizeLinear", "Reciprocal", "Relu", "Round", "Selu", "Shrink", "Sigmoid", "Sign", "Sin",
    "Sinh", "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tan", "Tanh", "ThresholdedRelu",
    "Where", "Xor"}
_RESHAPING = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}

Axes = tuple[int, int]  # (height axis, width axis)


def spatial_axes(graph, shapes: dict, input_name: str, layout: str, constants: dict
                 ) -> dict[str, Axes]:
    """The tensors whose axes include the image's height and width, with those axes.

    Args:
        graph: the ONNX graph (its nodes in topological order, as ONNX requires).
        shapes: every computed tensor's shape, from a run of the graph.
        input_name: the image input; ``layout``: ``"NCHW"`` or ``"NHWC"``.
        constants: the graph's constant tensors as arrays (Slice's axes, Pad's pads).
    """
    found: dict[str, Axes] = {}
    if input_name in shapes:
        found[input_name] = (2, 3) if layout == "NCHW" else (1, 2)
    for node in graph.node:
        out = node.output[0] if node.output else ""
        if not out or out not in shapes:
            continue
        kept = _through(node, found, shapes, constants)
        if kept is not None:
            for name in node.output:
                if name in shapes and len(shapes[name]) == len(shapes[out]):
                    found[name] = kept
    return found


def _through(node, found, shapes, constants) -> Axes | None:
    op, out = node.op_type, node.output[0]
    rank = len(shapes[out])
    if op in _SPATIAL:
        return (2, 3) if rank == 4 else None
    sources = [i for i in node.input if i in found and i in shapes]
    if not sources:
        return None
    source = sources[0]
    h, w = found[source]
    before = shapes[source]
    if op in _ELEMENTWISE:
        same = [s for s in sources if tuple(shapes[s]) == tuple(shapes[out])]
        return found[same[0]] if same else None
    if op == "Transpose":
        perm = _attr(node, "perm", tuple(reversed(range(rank))))
        perm = [int(p) for p in perm]
        return (perm.index(h), perm.index(w)) if h in perm and w in perm else None
    if op in _RESHAPING:
        return _kept_by_reshape(before, shapes[out], h, w)
    if op in ("LayerNormalization", "MatMul") and len(before) != rank:
        return None
    if op == "MatMul" and source != node.input[0]:
        return None
    touched = _touched_axes(node, constants, len(before))
    if touched is None or h in touched or w in touched:
        return None
    return (h, w)


def _touched_axes(node, constants, rank) -> set[int] | None:
    """The axes a Slice, Pad, Concat or Split changes, or None when they cannot be read
    from constants."""
    op = node.op_type
    if op in ("Concat", "Split"):
        return {int(_attr(node, "axis", 0)) % rank}
    if op == "LayerNormalization":  # normalises over every axis from `axis` on
        return set(range(int(_attr(node, "axis", -1)) % rank, rank))
    if op == "MatMul":  # a channels-last linear layer: mixes the last axis only
        return {rank - 1}
    if op == "Slice":
        axes = _attr(node, "axes", None)
        if axes is None and len(node.input) > 3 and node.input[3]:
            axes = constants.get(node.input[3])
        if axes is None:
            starts = _attr(node, "starts", None)
            if starts is None:
                starts = constants.get(node.input[1]) if len(node.input) > 1 else None
            if starts is None:
                return None
            axes = range(len(np.asarray(starts).reshape(-1)))
        return {int(a) % rank for a in np.asarray(list(axes)).reshape(-1)}
    if op == "Pad":
        pads = _attr(node, "pads", None)
        if pads is None and len(node.input) > 1 and node.input[1]:
            pads = constants.get(node.input[1])
        if pads is None or (len(node.input) > 3 and node.input[3]):
            return None  # computed pads, or pads on named axes: not read here
        pads = np.asarray(pads).reshape(-1)
        half = len(pads) // 2
        return {a for a in range(half) if pads[a] != 0 or pads[a + half] != 0}
    return None


def _kept_by_reshape(before, after, h, w) -> Axes | None:
    """Where axes ``h`` and ``w`` of shape ``before`` are in ``after``, if a row-major
    reshape leaves each whole: same size and same stride (the same elements along it)."""
    def strides(shape):
        out, step = [], 1
        for size in reversed(shape):
            out.append(step)
            step *= int(size)
        return list(reversed(out))

    b_strides, a_strides = strides(before), strides(after)
    moved = []
    for axis in (h, w):
        match = [j for j, (size, stride) in enumerate(zip(after, a_strides, strict=True))
                 if size == before[axis] and stride == b_strides[axis]]
        if not match:
            return None
        moved.append(match[-1] if before[axis] == 1 else match[0])
    return (moved[0], moved[1]) if moved[0] != moved[1] else None


def _attr(node, name, default):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default
