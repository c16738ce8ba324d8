"""The head of a CNN classifier, found in its ONNX graph and differentiated exactly:
Grad-CAM needs only the gradient of the class score with respect to the last spatial
feature map A, and everything between A and the score is a small head.

Walking back from the class output (past a final Softmax, LogSoftmax or Sigmoid: the
score is the logit; a binary detector's single logit z scores its classes -z / 2 and
z / 2), every node is kept until each path reaches A: the first 4-D tensor with a
spatial extent above 1 x 1 (or the tensor named by ``layer``). Constants (initializers,
``Constant`` nodes, external data included) are read from the file; integer tensors
the head uses as shapes are computed from A's shape. The head is
then evaluated and differentiated in NumPy (float64, :mod:`harness.numerics.head_ops`)
on (batch, channels) arrays, so the cost stays one ONNX Runtime pass per image. A node
of another kind, a head that reads two feature maps, or one that reaches the model's
input without one is refused in one line.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from onnx import helper, numpy_helper

from harness.errors import NoCamHead
from harness.model.vetting import constant_tensors
from harness.numerics.head_ops import OPS, SHAPE_OPS, conv_supported

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
        channel_axis: A's channel axis (1 for NCHW, 3 for NHWC).
        attributes: each node's attributes, in the order of ``nodes``.
    """

    feature: str
    score: str
    nodes: tuple
    constants: dict
    shapes: frozenset
    channel_axis: int
    attributes: tuple = ()

    def describe(self) -> str:
        """The ops from A to the score, one line."""
        return " -> ".join([f"A = {self.feature!r}"] + [n.op_type for n in self.nodes]
                           + [f"score {self.score!r}"])

    def values(self, a: np.ndarray) -> dict:
        """Every tensor of the head, by name, computed forward from A."""
        values = dict(self.constants)
        values[self.feature] = np.asarray(a)  # float32 A: the ops after it go to float64
        for node, attrs in zip(self.nodes, self.attributes, strict=True):
            args = [values.get(i) if i else None for i in node.input]
            if node.output[0] in self.shapes:
                values[node.output[0]] = SHAPE_OPS[node.op_type](attrs, *args)
            else:
                values[node.output[0]] = OPS[node.op_type][0](attrs, *args)
        return values

    def gradient(self, a: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """dScore[target] / dA for each image, ``a``'s shape, in float64 (a broadcast
        view where the head starts by pooling: the same at every position)."""
        values = self.values(a)
        score = values[self.score]
        grads = {self.score: np.zeros_like(score)}
        if score.shape[1] == 1:  # a binary detector's logit z: the classes' are -+z / 2
            grads[self.score][:, 0] = np.where(np.asarray(targets) == 1, 0.5, -0.5)
        else:
            grads[self.score][np.arange(len(score)), targets] = 1.0
        for node, attrs in zip(reversed(self.nodes), reversed(self.attributes), strict=True):
            g = grads.get(node.output[0])
            if g is None or node.output[0] in self.shapes:
                continue
            inputs = [values.get(i) if i else None for i in node.input]
            wanted = tuple(bool(i) and i not in self.constants and i not in self.shapes
                           for i in node.input)
            backward = OPS[node.op_type][1]
            for name, grad in zip(node.input, backward(attrs, inputs,
                                                       values[node.output[0]], g, wanted),
                                  strict=False):
                if grad is None or not name or name in self.constants or name in self.shapes:
                    continue
                grads[name] = grads[name] + grad if name in grads else grad
        if self.feature not in grads:
            raise NoCamHead(f"the class score does not depend on {self.feature!r}")
        return np.broadcast_to(grads[self.feature], a.shape)


def _attrs(node) -> dict:
    return {x.name: helper.get_attribute_value(x) for x in node.attribute}


def find_head(model_proto, output_name: str, base_dir: str = "", layer: str | None = None
              ) -> Head:
    """The head from the last feature map (or ``layer``) to ``output_name``.

    Raises:
        NoCamHead: one line naming the node or tensor that stops it.
    """
    from onnx import shape_inference

    graph = model_proto.graph
    inferred = shape_inference.infer_shapes(model_proto, strict_mode=False).graph
    info = {v.name: v.type.tensor_type for v in
            list(inferred.value_info) + list(inferred.input) + list(inferred.output)}
    producer = {out: node for node in graph.node for out in node.output}
    constant_protos = constant_tensors(graph)
    inputs = {i.name for i in graph.input} - set(constant_protos)

    def shape(name):
        t = info.get(name)
        if t is None or not t.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)

    def is_feature_map(name) -> bool:
        if layer is not None:
            return name == layer
        s = shape(name)
        # 4-D with channels and a spatial extent: two of its three non-batch axes above 1
        # (a pooled map, (N, C, 1, 1) or (N, 1, 1, C), has one)
        return s is not None and len(s) == 4 and sum(d is None or d > 1 for d in s[1:]) >= 2

    def refuse(why: str):
        raise NoCamHead(f"no head Grad-CAM can differentiate from output {output_name!r}: "
                        f"{why}. Use --method occlusion")

    if layer is not None and layer not in producer:
        refuse(f"the graph has no tensor named {layer!r} (--layer)")
    # the score: the logit before a final softmax
    score = output_name
    node = producer.get(score)
    while node is not None and node.op_type in _FINAL:
        score = node.input[0]
        node = producer.get(score)

    kept, features, shapes, seen, computed = {}, set(), {}, set(), set()
    stack = [(score, False)]
    while stack:
        name, integer = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in constant_protos:
            continue
        t = info.get(name)
        if name != score and t is not None and t.elem_type in _INTEGER:
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
                shapes[id(node)] = node  # its input's shape: A's at run time, else static
                continue
            kept[id(node)] = node
            computed.add(id(node))
            stack.extend((i, True) for i in node.input)
            continue
        node = producer.get(name)
        if node is None:
            refuse(f"nothing computes {name!r}")
        if node.op_type not in OPS:
            refuse(f"node {node.name or node.output[0]!r} is a {node.op_type}, which the "
                   "head differentiation does not support")
        if node.op_type == "Pow" and node.input[1] not in constant_protos:
            refuse(f"node {node.name or node.output[0]!r} raises to a computed power")
        kept[id(node)] = node
        stack.extend((i, False) for i in node.input)
    if not features:
        refuse(f"the class score does not depend on layer {layer!r}" if layer is not None
               else "no 4-D feature map feeds the class score")
    if len(features) > 1:
        refuse(f"the score reads {len(features)} feature maps ({', '.join(sorted(features))})")
    feature = features.pop()
    base = dict(base_dir=base_dir)
    constants = {n: numpy_helper.to_array(constant_protos[n], **base).astype(np.float64)
                 if constant_protos[n].data_type not in _INTEGER
                 else numpy_helper.to_array(constant_protos[n], **base)
                 for n in seen if n in constant_protos}
    in_head = {feature} | {o for n in kept.values() if id(n) not in computed for o in n.output}
    for node in shapes.values():
        if node.input[0] in in_head:
            kept[id(node)] = node  # the shape of A or of a head tensor: read at run time
            computed.add(id(node))
            continue
        s = shape(node.input[0])
        if s is None or None in s:
            refuse(f"the head needs the shape of {node.input[0]!r}, which is not fixed")
        constants[node.output[0]] = SHAPE_OPS["Shape"](_attrs(node), np.empty(s))
    nodes = tuple(n for n in graph.node if id(n) in kept)  # the graph is topologically sorted
    for n in nodes:
        if n.op_type == "Conv":
            why = conv_supported(_attrs(n), shape(n.input[0]) or (), constants[n.input[1]].shape
                                 if n.input[1] in constants else ())
            if why:
                refuse(f"node {n.name or n.output[0]!r} is {why}")
        if n.op_type == "AveragePool":
            s = shape(n.input[0])
            if s is None or tuple(_attrs(n).get("kernel_shape", ())) != s[2:]:
                refuse(f"node {n.name or n.output[0]!r} is an AveragePool that does not cover "
                       "the whole map")
    channel_axis = 3 if _pooled_as_nhwc(nodes, feature, constants) else 1
    integer = frozenset(n.output[0] for n in nodes if id(n) in computed)
    return Head(feature, score, nodes, constants, integer, channel_axis,
                tuple(_attrs(n) for n in nodes))


def _pooled_as_nhwc(nodes, feature, constants) -> bool:
    """Whether A's first consumer averages axes 1 and 2, i.e. A is (N, h, w, C); every
    other op of a head takes axis 1 for channels (the ONNX convention)."""
    first = next((n for n in nodes if feature in n.input), None)
    if first is None or first.op_type != "ReduceMean":
        return False
    axes = _attrs(first).get("axes")
    if axes is None and len(first.input) > 1 and first.input[1] in constants:
        axes = constants[first.input[1]].reshape(-1).tolist()
    return axes is not None and tuple(sorted(int(a) % 4 for a in axes)) == (1, 2)
