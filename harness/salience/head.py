"""The head of a CNN classifier, found in its ONNX graph and differentiated exactly:
Grad-CAM needs only the gradient of the class score with respect to the last spatial
feature map A, and everything between A and the score is a small head.

Walking back from the class output (past a final Softmax, LogSoftmax or Sigmoid: the
score is the logit; a binary detector's single logit z scores its classes -z / 2 and
z / 2), every node is kept until each path reaches A: the first tensor that is a map
of the image, i.e. whose height and width axes are the image's, followed from the
convolution that made it through the layout operators after it
(:mod:`harness.salience.spatial`), with a spatial extent above 1 x 1 (or the tensor
named by ``layer``). An NHWC map is weighed over its channels as it is; a map whose
height and width were swapped is swapped back; a reshape that scrambles the positions,
a crop or a pad ends the search at the tensor before it, so the map stays aligned with
the image. Every shape comes from a run of the graph, never from the file's
``value_info``. Constants (initializers, ``Constant`` nodes, external data included)
are read from the file; integer tensors the head uses as shapes are computed from A's
shape. The head is then evaluated and differentiated in NumPy (float64,
:mod:`harness.numerics.head_ops`) on (batch, channels) arrays, so the cost stays one
ONNX Runtime pass per image. A node of another kind, a head that reads two feature
maps, or one that reaches the model's input without one is refused in one line.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from onnx import helper, numpy_helper

from harness.errors import NoCamHead, excerpt
from harness.limits import CAM_FEATURE_ELEMENTS
from harness.model.session import inferred_graph
from harness.model.spec import opset_of
from harness.model.vetting import constant_tensors
from harness.numerics.head_ops import OPS, SHAPE_OPS, conv_supported, kernel_for
from harness.salience.spatial import spatial_axes

_FINAL = ("Softmax", "LogSoftmax", "Sigmoid", "Identity", "Dropout")
_INTEGER = {6, 7, 12, 13, 2, 3, 4, 5, 9}  # onnx int and bool element types


@dataclasses.dataclass(frozen=True)
class Head:
    """What Grad-CAM differentiates.

    Attributes:
        feature: the name of A, the last spatial feature map.
        score: the tensor holding the class scores (logits).
        nodes: the head's nodes, A's consumers first (a topological order).
        constants: the head's constant inputs by name.
        shapes: the integer tensors the head computes (shapes), evaluated, never
            differentiated.
        axes: A's (height, width, channel) axes: (2, 3, 1) for NCHW, (1, 2, 3) for NHWC.
        attributes: each node's attributes, in the order of ``nodes``.
        kernels: each node's entry in ``OPS`` (its operator, as its opset defines it).
    """

    feature: str
    score: str
    nodes: tuple
    constants: dict
    shapes: frozenset
    axes: tuple = (2, 3, 1)
    attributes: tuple = ()
    kernels: tuple = ()

    def describe(self) -> str:
        """The ops from A to the score, one line."""
        layout = "" if self.axes == (2, 3, 1) else \
            f" (height, width, channel axes {', '.join(map(str, self.axes))})"
        return " -> ".join([f"A = {self.feature!r}{layout}"] + [n.op_type for n in self.nodes]
                           + [f"score {self.score!r}"])

    def values(self, a: np.ndarray) -> dict:
        """Every tensor of the head, by name, computed forward from A."""
        values = dict(self.constants)
        values[self.feature] = np.asarray(a)  # float32 A: the ops after it go to float64
        for node, attrs, kernel in zip(self.nodes, self.attributes, self.kernels, strict=True):
            args = [values.get(i) if i else None for i in node.input]
            if node.output[0] in self.shapes:
                values[node.output[0]] = SHAPE_OPS[node.op_type](attrs, *args)
            else:
                values[node.output[0]] = OPS[kernel][0](attrs, *args)
        return values

    def gradients(self, a: np.ndarray, targets: np.ndarray, values: dict | None = None
                  ) -> dict:
        """dScore[target] / dT for every tensor T of the head that the score depends on,
        by name, in float64 (``values``: the forward values, when already computed)."""
        values = self.values(a) if values is None else values
        grads = {self.score: score_weights(values[self.score], targets)}
        for node, attrs, kernel in zip(reversed(self.nodes), reversed(self.attributes),
                                       reversed(self.kernels), strict=True):
            g = grads.get(node.output[0])
            if g is None or node.output[0] in self.shapes:
                continue
            inputs = [values.get(i) if i else None for i in node.input]
            wanted = tuple(bool(i) and i not in self.constants and i not in self.shapes
                           for i in node.input)
            backward = OPS[kernel][1]
            for name, grad in zip(node.input, backward(attrs, inputs,
                                                       values[node.output[0]], g, wanted),
                                  strict=False):
                if grad is None or not name or name in self.constants or name in self.shapes:
                    continue
                grads[name] = grads[name] + grad if name in grads else grad
        return grads

    def gradient(self, a: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """dScore[target] / dA for each image, ``a``'s shape, in float64 (a broadcast
        view where the head starts by pooling: the same at every position)."""
        grads = self.gradients(a, targets)
        if self.feature not in grads:
            raise NoCamHead(f"the class score does not depend on {self.feature!r}")
        return np.broadcast_to(grads[self.feature], a.shape)


def score_weights(score: np.ndarray, targets) -> np.ndarray:
    """What each entry of the head's ``(N, K)`` score tensor weighs in the explained
    score, summed over the images: 1 for each image's target class; for a binary
    detector's single logit z, +1/2 (class 1) or -1/2 (class 0), its classes being
    -+z / 2."""
    weights = np.zeros(np.shape(score), np.float64)
    if weights.shape[1] == 1:
        weights[:, 0] = np.where(np.asarray(targets) == 1, 0.5, -0.5)
    else:
        weights[np.arange(len(weights)), targets] = 1.0
    return weights


def _attrs(node) -> dict:
    return {x.name: helper.get_attribute_value(x) for x in node.attribute}


def find_head(model_proto, output_name: str, tensors: dict, input_name: str,
              layout: str = "NCHW", base_dir: str = "", layer: str | None = None) -> Head:
    """The head from the last feature map (or ``layer``) to ``output_name``.

    Args:
        tensors: the graph's computed tensors by name, from a run of it on one image
            (:meth:`~harness.model.classifier.OnnxClassifier.inner_tensors`): their
            shapes and types are the ones that count.
        input_name, layout: the image input and its layout (``"NCHW"`` or ``"NHWC"``).

    Raises:
        NoCamHead: one line naming the node or tensor that stops it.
    """
    graph = model_proto.graph
    shapes = {name: tuple(int(d) for d in np.shape(v)) for name, v in tensors.items()}
    producer = {out: node for node in graph.node for out in node.output}
    constant_protos = constant_tensors(graph)
    inputs = {i.name for i in graph.input} - set(constant_protos)
    base = dict(base_dir=base_dir)
    small = {n: numpy_helper.to_array(t, **base) for n, t in constant_protos.items()
             if t.data_type in _INTEGER}
    located = spatial_axes(graph, shapes, input_name, layout, small)

    def is_feature_map(name) -> bool:
        if layer is not None:
            return name == layer
        s = shapes.get(name)
        if name not in located or s is None or len(s) != 4:
            return False
        h, w = located[name]
        return s[h] * s[w] > 1  # a pooled map, 1 x 1, is not a map of positions

    def is_integer(name) -> bool:
        return name in tensors and np.asarray(tensors[name]).dtype.kind in "iub"

    def refuse(why: str):
        raise NoCamHead(f"no head Grad-CAM can differentiate from output {output_name!r}: "
                        f"{why}. Use --method occlusion")

    def label(n) -> str:
        return excerpt(n.name or n.output[0], 60)

    if layer is not None and layer not in producer:
        refuse(f"the graph has no tensor named {layer!r} (--layer)")
    # the score: the logit before a final softmax
    score = output_name
    node = producer.get(score)
    while node is not None and node.op_type in _FINAL:
        score = node.input[0]
        node = producer.get(score)

    kept, features, shape_nodes, seen, computed = {}, set(), {}, set(), set()
    stack = [(score, False)]
    while stack:
        name, integer = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in constant_protos:
            continue
        if name != score and is_integer(name):
            integer = True  # a shape the head computes: evaluated, never differentiated
        if name in inputs and not integer:
            refuse(f"it reaches the model's input {name!r} without passing a feature map")
        if not integer and name != score and is_feature_map(name):
            features.add(name)
            continue
        if integer:
            node = producer.get(name)
            if node is None or node.op_type not in SHAPE_OPS:
                refuse(f"the shape {name!r} comes from a "
                       f"{node.op_type if node is not None else 'graph input'}")
            if node.op_type == "Shape":
                shape_nodes[id(node)] = node  # its input's shape: A's at run time, else static
                continue
            kept[id(node)] = node
            computed.add(id(node))
            stack.extend((i, True) for i in node.input)
            continue
        node = producer.get(name)
        if node is None:
            refuse(f"nothing computes {name!r}")
        if node.op_type not in OPS:
            refuse(f"node {label(node)} is a {node.op_type}, which the head "
                   "differentiation does not support")
        if node.op_type == "Pow" and node.input[1] not in constant_protos:
            refuse(f"node {label(node)} raises to a computed power")
        kept[id(node)] = node
        stack.extend((i, False) for i in node.input)
    if not features:
        refuse(f"the class score does not depend on layer {layer!r}" if layer is not None
               else "no map of the image's positions (a tensor whose height and width "
                    "follow from a convolution) feeds the class score")
    if len(features) > 1:
        refuse(f"the score reads {len(features)} feature maps ({', '.join(sorted(features))})")
    feature = features.pop()
    axes = _feature_axes(feature, shapes.get(feature), located.get(feature), refuse)
    constants = {n: numpy_helper.to_array(constant_protos[n], **base).astype(np.float64)
                 if constant_protos[n].data_type not in _INTEGER
                 else numpy_helper.to_array(constant_protos[n], **base)
                 for n in seen if n in constant_protos}
    in_head = {feature} | {o for n in kept.values() if id(n) not in computed for o in n.output}
    static = None
    for node in shape_nodes.values():
        if node.input[0] in in_head:
            kept[id(node)] = node  # the shape of A or of a head tensor: read at run time
            computed.add(id(node))
            continue
        static = _static_shapes(model_proto) if static is None else static
        s = static.get(node.input[0])
        if s is None or None in s:
            refuse(f"the head needs the shape of {node.input[0]!r}, which is not fixed")
        constants[node.output[0]] = SHAPE_OPS["Shape"](_attrs(node), np.empty(s))
    nodes = tuple(n for n in graph.node if id(n) in kept)  # the graph is topologically sorted
    opset = opset_of(model_proto)
    for n in nodes:
        attrs = _attrs(n)
        if n.op_type == "Conv":
            why = conv_supported(attrs, shapes.get(n.input[0], ()), constants[n.input[1]].shape
                                 if n.input[1] in constants else ())
            if why:
                refuse(f"node {label(n)} is {why}")
        if n.op_type == "AveragePool":
            s = shapes.get(n.input[0])
            if s is None or tuple(attrs.get("kernel_shape", ())) != s[2:]:
                refuse(f"node {label(n)} is an AveragePool that does not cover the whole map")
        if n.op_type == "Pad" and attrs.get("mode", b"constant") not in (b"constant",
                                                                          "constant"):
            refuse(f"node {label(n)} pads by {attrs['mode']!r}, not with a constant")
    integer = frozenset(n.output[0] for n in nodes if id(n) in computed)
    return Head(feature, score, nodes, constants, integer, axes,
                tuple(_attrs(n) for n in nodes), tuple(kernel_for(n.op_type, opset)
                                                      for n in nodes))


def _feature_axes(feature, shape, located, refuse) -> tuple[int, int, int]:
    """A's (height, width, channel) axes; a tensor named by --layer whose axes do not
    follow from a convolution is read with ONNX's convention, (N, C, H, W)."""
    if shape is None or len(shape) != 4:
        refuse(f"the feature map {feature!r} has shape "
               f"{'unknown' if shape is None else list(shape)}, not (N, C, H, W) or "
               "(N, H, W, C)")
    h, w = located if located is not None else (2, 3)
    if 0 in (h, w):
        refuse(f"the feature map {feature!r} has the image's height or width on its batch "
               "axis")
    elements = math.prod(shape[1:])
    most = CAM_FEATURE_ELEMENTS.value()
    if elements > most:
        refuse(f"the feature map {feature!r} has {elements:,} values per image, above "
               f"{CAM_FEATURE_ELEMENTS.env}={most:,}")
    return h, w, ({1, 2, 3} - {h, w}).pop()


def _static_shapes(model_proto) -> dict:
    """Shapes the graph fixes for every input size (batch axis included), as its
    operators infer them: what a head may take as constant."""
    graph = inferred_graph(model_proto)
    return {v.name: tuple(d.dim_value if d.HasField("dim_value") else None
                          for d in v.type.tensor_type.shape.dim)
            for v in list(graph.value_info) + list(graph.input) + list(graph.output)
            if v.type.tensor_type.HasField("shape")}
