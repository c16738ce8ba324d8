"""The local prefix of a classifier's graph, for incremental occlusion.

A tensor is *local* when each of its positions is computed from a bounded window of the
input's positions, the same window wherever the position lies (convolutions, pooling
windows, pointwise operators, padding, integer upsampling, channel concatenation,
layout transposes): computed on a crop of the input it equals, away from the crop's
edges, the crop of the full tensor. The walk from the input stops at the first operator
that is not local (a global pooling, Flatten or Reshape, a matrix product, a
squeeze-excitation product whose scale is global): the *frontier* is the last tensor
before it through which everything passes (a *cut*: one tensor carries all the
input's influence onward). Cuts up to the frontier are where incremental occlusion can
split the prefix into segments (:mod:`harness.salience.incremental`).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np

from harness.numerics.receptive import AxisMap

POINTWISE = frozenset((
    "Abs", "Add", "BatchNormalization", "Cast", "Ceil", "Celu", "Clip", "DequantizeLinear",
    "Div", "Dropout", "Elu", "Erf", "Exp", "Floor", "Gelu", "HardSigmoid", "HardSwish",
    "Identity", "LeakyRelu", "Log", "Max", "Mean", "Min", "Mish", "Mul", "Neg", "Pow",
    "PRelu", "QuantizeLinear", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign",
    "Softplus", "Softsign", "Sqrt", "Sub", "Sum", "Tanh", "ThresholdedRelu", "LRN"))
WINDOWS = frozenset(("Conv", "MaxPool", "AveragePool", "LpPool"))
# interpolation reaches at most this many input positions beyond its own (cubic: 2)
RESIZE_HALO = 2
_SHAPING = frozenset(("Pad", "Resize", "Upsample", "Transpose", "Concat"))
_FLOAT = 1  # TensorProto.FLOAT: segments pass float32 tensors between them
_TRANSLATION_INVARIANT = ("half_pixel", "asymmetric", "pytorch_half_pixel")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Where a local tensor's spatial axes are and how it relates to the input.

    Attributes:
        axes: ``(h_axis, w_axis, c_axis)`` in its 4-D shape (batch first).
        size: ``(H, W)`` at the model's input size.
        factor: input positions per tensor position, per axis.
        shape: its full 4-D shape with batch 1.
    """

    axes: tuple[int, int, int]
    size: tuple[int, int]
    factor: tuple[Fraction, Fraction]
    shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class LocalNode:
    """A local operator of the prefix: its position in the graph, its input-dependent
    inputs and its output, with the spatial map per axis."""

    index: int
    inputs: tuple[str, ...]
    output: str
    maps: tuple[AxisMap, AxisMap]
    macs: int  # multiply-adds per image at full size


@dataclasses.dataclass(frozen=True)
class Prefix:
    """The analysis of one model at one input size.

    Attributes:
        input: the graph input's name.
        nodes: the local operators from the input to the frontier, in graph order.
        geometry: every local tensor's :class:`Geometry` (the input's included).
        cuts: the cut tensors from the input to the frontier, in order (the input first).
        total_macs: multiply-adds of one full forward pass.
        stop: why the prefix ends where it does (the first operator that is not local).
        auto_pads: node index -> the explicit pads of an ``auto_pad`` window at this
            input size, which segments on crops must keep.
    """

    input: str
    nodes: tuple[LocalNode, ...]
    geometry: dict[str, Geometry]
    cuts: tuple[str, ...]
    total_macs: int
    stop: str
    auto_pads: dict[int, list[int]]

    @property
    def frontier(self) -> str:
        return self.cuts[-1]

    def node_range(self, start: str, stop: str) -> list[LocalNode]:
        """The local nodes computing ``stop`` from cut ``start``."""
        after = -1 if start == self.input else self.producer(start)
        until = self.producer(stop)
        return [n for n in self.nodes if after < n.index <= until]

    def producer(self, tensor: str) -> int:
        return next(n.index for n in self.nodes if n.output == tensor)


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _shapes(proto, size, channels_first) -> tuple[dict[str, tuple], dict[str, int]]:
    """Every tensor's shape for one image at ``size`` (unknown dimensions as None) and
    element type, as ONNX's inference derives them."""
    import onnx

    from harness.model.session import inferred_graph

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    fixed = [1, dims[1].dim_value or 3, *size] if channels_first else \
        [1, *size, dims[3].dim_value or 3]
    for dim, value in zip(dims, fixed, strict=True):
        dim.Clear()
        dim.dim_value = value
    graph = inferred_graph(model)
    shapes, types = {}, {}
    for v in list(graph.value_info) + list(graph.output) + list(graph.input):
        types[v.name] = v.type.tensor_type.elem_type
        if v.type.tensor_type.HasField("shape"):
            shapes[v.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                   for d in v.type.tensor_type.shape.dim)
    for init in proto.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes, types


def _macs(node, shapes) -> int:
    """Multiply-adds of a convolution or matrix product (the work that dominates)."""
    out = shapes.get(node.output[0]) if node.output else None
    if out is None or None in out:
        return 0
    if node.op_type == "Conv":
        weight = shapes.get(node.input[1])
        if weight is None or None in weight:
            return 0
        return int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
    if node.op_type in ("Gemm", "MatMul"):
        a = shapes.get(node.input[0])
        if a is None or None in a:
            return 0
        return int(np.prod(out, dtype=np.int64)) * int(a[-1] if node.op_type == "MatMul" or
                                                     not _attrs(node).get("transA") else a[-2])
    return 0


def _constant_array(name, proto, constants) -> np.ndarray | None:
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    return constants.get(name)


def analyse(proto, input_size: tuple[int, int], layout: str) -> Prefix:
    """The local prefix of ``proto`` (a ModelProto) for inputs of ``input_size`` in
    ``layout`` (NCHW or NHWC)."""
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    source = next(i.name for i in graph.input if i.name not in inits)
    channels_first = layout == "NCHW"
    shapes, types = _shapes(proto, input_size, channels_first)
    total = sum(_macs(n, shapes) for n in graph.node)
    depends = {source}
    constants = {}
    for node in graph.node:
        if any(i in depends for i in node.input):
            depends.update(node.output)
        elif node.op_type == "Constant" and node.output:
            constants[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"]) \
                if "value" in _attrs(node) else None
    last_use = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    for out in graph.output:
        last_use[out.name] = len(graph.node)

    geometry = {source: Geometry((2, 3, 1) if channels_first else (1, 2, 3), input_size,
                                 (Fraction(1), Fraction(1)), shapes[source])}
    cuts, nodes, auto_pads = [source], [], {}
    live = {source}
    stop = "the graph ends"
    for index, node in enumerate(graph.node):
        if not any(i in depends for i in node.input):
            continue
        try:
            local = _local(node, index, geometry, depends, shapes, proto, constants)
        except _NotLocal as exc:
            stop = f"{node.op_type} {node.name or node.output[0]!r}: {exc}"
            break
        nodes.append(local[0])
        geometry[node.output[0]] = local[1]
        if local[2] is not None:
            auto_pads[index] = local[2]
        live.update(o for o in node.output if o in depends and last_use.get(o, -1) > index)
        live = {t for t in live if last_use.get(t, -1) > index}
        if live == {node.output[0]} and types.get(node.output[0]) == _FLOAT:
            cuts.append(node.output[0])
    return Prefix(source, tuple(nodes), geometry, tuple(cuts), total, stop, auto_pads)


class _NotLocal(Exception):
    """Why an operator ends the local prefix."""


def _local(node, index, geometry, depends, shapes, proto, constants):
    """``(LocalNode, Geometry of its output, explicit pads or None)``.

    Raises:
        _NotLocal: the operator is not local here.
    """
    op, attrs = node.op_type, _attrs(node)
    if op not in POINTWISE | WINDOWS | _SHAPING:
        raise _NotLocal("it is not a local operator (each of its outputs may depend on "
                        "the whole image)")
    spatial = [i for i in node.input if i in depends]
    missing = [i for i in spatial if i not in geometry]
    if missing:
        raise _NotLocal(f"its input {missing[0]!r} is not computed locally "
                        "(it depends on the whole image)")
    extra = [o for o in node.output[1:] if o]
    if extra and op != "Dropout":
        raise _NotLocal(f"its second output {extra[0]!r} is not an image-shaped tensor")
    geo = geometry[spatial[0]]
    out_shape = shapes.get(node.output[0])
    if out_shape is None or len(out_shape) != 4 or None in out_shape:
        raise _NotLocal("its output's shape is unknown or not 4-D")
    h, w, c = geo.axes
    macs = _macs(node, shapes)
    explicit = None
    if op in POINTWISE or op == "Concat":
        for other in spatial[1:]:
            g = geometry[other]
            if (g.axes[:2], g.size, g.factor) != (geo.axes[:2], geo.size, geo.factor):
                raise _NotLocal(f"its inputs {spatial[0]!r} and {other!r} differ in layout "
                                "or size")
        if op == "Concat":
            if attrs.get("axis", 1) % 4 != c or len(spatial) != len(node.input):
                raise _NotLocal("it concatenates along another axis than the channels, or "
                                "a constant")
        else:
            _check_constants(node, op, attrs, depends, shapes, geo)
        out = Geometry(geo.axes, geo.size, geo.factor, out_shape)
        return LocalNode(index, tuple(spatial), node.output[0], (AxisMap(), AxisMap()),
                         macs), out, None
    if len(spatial) != 1 or spatial[0] != node.input[0]:
        raise _NotLocal("only its first input may depend on the image")
    if op in WINDOWS:
        if (h, w) != (2, 3):
            raise _NotLocal("it reads a tensor whose spatial axes are not 2 and 3")
        if op == "Conv" and any(n and n in depends for n in node.input[1:]):
            raise _NotLocal("its weights depend on the image")
        kernel = attrs.get("kernel_shape") or list(shapes[node.input[1]][2:])
        strides = attrs.get("strides", [1, 1])
        dilations = attrs.get("dilations", [1, 1])
        pads = attrs.get("pads", [0, 0, 0, 0])
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            pads = _auto_pads(auto, geo.size, kernel, strides, dilations)
            explicit = pads
        elif auto != "NOTSET":
            raise _NotLocal(f"auto_pad {auto} is not supported")
        maps = tuple(AxisMap.window(kernel[i], strides[i], pads[i], dilations[i])
                     for i in range(2))
    elif op == "Pad":
        mode = attrs.get("mode", b"constant")
        if (mode.decode() if isinstance(mode, bytes) else mode) != "constant":
            raise _NotLocal("only constant padding is supported")
        pads = attrs.get("pads")
        if pads is None:
            values = _constant_array(node.input[1], proto, constants) \
                if len(node.input) > 1 else None
            if values is None or (len(node.input) > 3 and node.input[3]):
                raise _NotLocal("its pads are not constants of the graph")
            pads = [int(v) for v in values]
        if len(pads) != 8 or any(pads[a] or pads[a + 4] for a in (0, c)):
            raise _NotLocal("it pads the batch or channel axis")
        maps = (AxisMap.shift(pads[h]), AxisMap.shift(pads[w]))
    elif op in ("Resize", "Upsample"):
        mode = attrs.get("coordinate_transformation_mode", b"half_pixel")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode not in _TRANSLATION_INVARIANT:
            raise _NotLocal(f"coordinate_transformation_mode {mode} depends on the size")
        scales = None
        for name in node.input[1:]:
            values = _constant_array(name, proto, constants) if name else None
            if values is not None and values.dtype.kind == "f" and values.size == 4:
                scales = values
        if scales is None or scales[0] != 1 or scales[c] != 1:
            raise _NotLocal("only constant scales on the spatial axes are supported")
        factors = [float(scales[h]), float(scales[w])]
        if any(f < 1 or f != int(f) for f in factors):
            raise _NotLocal(f"its scales {factors} are not integer upsamplings")
        maps = tuple(AxisMap.upsample(int(f), RESIZE_HALO) for f in factors)
    elif op == "Transpose":
        perm = list(attrs.get("perm", [3, 2, 1, 0]))
        if perm[0] != 0:
            raise _NotLocal("it moves the batch axis")
        out = Geometry((perm.index(h), perm.index(w), perm.index(c)), geo.size, geo.factor,
                       out_shape)
        return LocalNode(index, tuple(spatial), node.output[0], (AxisMap(), AxisMap()),
                         macs), out, None
    factor = tuple(geo.factor[i] * maps[i].factor for i in range(2))
    out = Geometry(geo.axes, (out_shape[h], out_shape[w]), factor, out_shape)
    return LocalNode(index, tuple(spatial), node.output[0], maps, macs), out, explicit


def _check_constants(node, op, attrs, depends, shapes, geo):
    """A constant operand of a pointwise operator must not vary over positions (a
    batch normalisation's or a per-axis quantisation's vectors run along the channels).

    Raises:
        _NotLocal: it does.
    """
    h, w, c = geo.axes
    per_channel = op == "BatchNormalization" or (
        op in ("QuantizeLinear", "DequantizeLinear") and attrs.get("axis", 1) % 4 == c)
    if op == "BatchNormalization" and c != 1:
        raise _NotLocal("it normalises another axis than the channels")
    for name in node.input:
        shape = shapes.get(name) if name and name not in depends else None
        if shape is None or (per_channel and len(shape) <= 1):
            continue
        aligned = (1,) * (4 - len(shape)) + tuple(shape)
        if len(aligned) != 4 or aligned[h] not in (1, None) or aligned[w] not in (1, None):
            raise _NotLocal(f"its operand {name!r} of shape {list(shape)} varies over "
                            "positions")


def _auto_pads(auto, size, kernel, strides, dilations) -> list[int]:
    """``auto_pad``'s padding at ``size`` as explicit ``pads`` (begins, then ends)."""
    if auto == "VALID":
        return [0, 0, 0, 0]
    begins, ends = [], []
    for i in range(2):
        span = dilations[i] * (kernel[i] - 1) + 1
        total = max((-(-size[i] // strides[i]) - 1) * strides[i] + span - size[i], 0)
        begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def with_explicit_pads(proto, prefix: Prefix):
    """A copy of ``proto`` whose ``auto_pad`` windows in the prefix pad explicitly as
    they do at the analysed size: on a crop, ``SAME`` would pad for the crop's size."""
    import onnx
    from onnx import helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for index, pads in prefix.auto_pads.items():
        node = model.graph.node[index]
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute("pads", pads)])
    return model


def extract(proto, start: str, stops: list[str], crops: Geometry | None = None) -> bytes:
    """The serialised subgraph of ``proto`` computing ``stops`` from ``start`` (the
    nodes they need, in graph order, and the initializers those read), with a free
    batch axis, and with ``crops`` (the start's geometry) free spatial axes too, so it
    runs on crops of any size."""
    import onnx
    from onnx import helper

    wanted, nodes = set(stops), []
    for node in reversed(proto.graph.node):
        if wanted.intersection(node.output):
            nodes.append(node)
            wanted.update(i for i in node.input if i and i != start)
    nodes.reverse()
    inits = [i for i in proto.graph.initializer if i.name in wanted]
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(proto.graph.input) + list(proto.graph.value_info) + list(proto.graph.output)}
    dims = ["N", *([None] * (len(crops.shape) - 1))] if crops is not None else None
    if crops is not None:
        dims[crops.axes[0]], dims[crops.axes[1]] = "h", "w"
        dims[crops.axes[2]] = crops.shape[crops.axes[2]]
    graph = helper.make_graph(
        nodes, "segment",
        [helper.make_tensor_value_info(start, types.get(start) or onnx.TensorProto.FLOAT,
                                       dims)],
        [helper.make_tensor_value_info(s, types.get(s) or onnx.TensorProto.FLOAT, None)
         for s in stops],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=list(proto.opset_import))
    model.ir_version = proto.ir_version
    return model.SerializeToString()
