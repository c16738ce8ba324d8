"""Tiny ONNX classifiers built with ``onnx.helper``, whose outputs are known by hand.

Shared by the tests and the benchmarks. Every model is saved with IR version 10 so any
ONNX Runtime since 1.20 loads it.
"""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 10
OPSET = 17


def save(graph, path, metadata=None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def linear_model(path, weights, bias=None, layout="NCHW", color="RGB", batch="N",
                 dtype=TensorProto.FLOAT, softmax=False, extra_output=False, post=None,
                 metadata=None):
    """logits = sum over pixels of weights * x + bias, where ``weights`` is given in
    pixel space ``(K, H, W, 3)`` RGB; whatever the layout and colour order, the model
    computes the same function of the pixel image (with mean 0, std 1). ``post`` names
    a unary op applied to the logits (``"Sqrt"`` gives NaN where a logit is negative)."""
    weights = np.asarray(weights, np.float32)
    k, h, w, _ = weights.shape
    bias = np.zeros(k, np.float32) if bias is None else np.asarray(bias, np.float32)
    wm = weights[..., ::-1] if color == "BGR" else weights
    if layout == "NCHW":
        wm = wm.transpose(0, 3, 1, 2)
        shape = [batch, 3, h, w]
    else:
        shape = [batch, h, w, 3]
    matrix = np.ascontiguousarray(wm.reshape(k, -1).T)
    x = helper.make_tensor_value_info("image", dtype, shape)
    nodes, inits = [], [numpy_helper.from_array(matrix, "W"), numpy_helper.from_array(bias, "b")]
    src = "image"
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT))
        src = "image_f"
    nodes += [helper.make_node("Flatten", [src], ["flat"], axis=1),
              helper.make_node("MatMul", ["flat", "W"], ["mm"]),
              helper.make_node("Add", ["mm", "b"], ["z0"])]
    last = "z0"
    if post:
        nodes.append(helper.make_node(post, [last], ["z1"]))
        last = "z1"
    nodes.append(helper.make_node("Softmax" if softmax else "Identity", [last], ["logits"],
                                  **({"axis": 1} if softmax else {})))
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, k])]
    if extra_output:
        nodes.append(helper.make_node("Identity", [src], ["features"]))
        outputs.insert(0, helper.make_tensor_value_info("features", TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "linear", [x], outputs, initializer=inits)
    meta = {"harness.layout": layout, "harness.color": color, **(metadata or {})}
    return save(graph, path, meta)


def cnn_model(path, size=64, widths=(8, 16), classes=2, seed=0, strides=None, metadata=None):
    """A small random CNN: [Conv 3x3 + ReLU] per width, global average pool, Gemm.
    Weights are He-initialised from ``seed``; the output is logits."""
    rng = np.random.default_rng(seed)
    strides = strides or [1] * len(widths)
    nodes, inits = [], []
    src, channels = "image", 3
    for i, (width, stride) in enumerate(zip(widths, strides, strict=True)):
        wgt = rng.normal(0, np.sqrt(2 / (9 * channels)), (width, channels, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(wgt, f"c{i}.w"),
                  numpy_helper.from_array(np.zeros(width, np.float32), f"c{i}.b")]
        nodes += [helper.make_node("Conv", [src, f"c{i}.w", f"c{i}.b"], [f"c{i}"], pads=[1] * 4,
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        src, channels = f"r{i}", width
    return gap_linear_model(path, "cnn", nodes, inits, src, channels, size, classes, rng,
                            metadata)


def gap_linear_model(path, name, nodes, inits, src, channels, size, classes, rng,
                     metadata=None) -> Path:
    """Finish a convolutional body (``nodes`` and ``inits`` reading input ``image``
    (N, 3, size, size), its last feature map ``src`` with ``channels``) with global
    average pooling and one He-initialised linear layer to ``logits``, and save it."""
    fc = rng.normal(0, np.sqrt(1 / channels), (classes, channels)).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc.w"),
              numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b")]
    nodes += [helper.make_node("GlobalAveragePool", [src], ["gap"]),
              helper.make_node("Flatten", ["gap"], ["feat"], axis=1),
              helper.make_node("Gemm", ["feat", "fc.w", "fc.b"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=inits)
    return save(graph, path, metadata)


def cam_model(path, head="gemm", pool="gap", between=(), size=8, channels=4, classes=3,
              seed=0, two_linear=False):
    """A 1x1-convolution feature extractor (so its maps are easy to compute in NumPy)
    with a choice of pooling and linear head, for CAM pattern tests.

    Features: A = Relu(Conv1x1(x; conv_w)), (N, C, size, size). Then the pooling
    (``gap`` GlobalAveragePool, ``reducemean`` ReduceMean(axes=[2, 3]), ``avgpool`` a
    whole-map AveragePool), the nodes in ``between`` (``flatten``,
    ``reshape`` with a shape computed in the graph, ``squeeze``), and the head (``gemm``
    transB=1, ``gemm_t0`` transB=0, ``matmul_add``). Returns (path, conv_w, fc_w (K, C)).
    """
    rng = np.random.default_rng(seed)
    conv_w = rng.normal(size=(channels, 3, 1, 1)).astype(np.float32)
    fc_w = rng.normal(size=(classes, channels)).astype(np.float32)
    inits = [numpy_helper.from_array(conv_w, "conv_w")]
    nodes = [helper.make_node("Conv", ["image", "conv_w"], ["conv"]),
             helper.make_node("Relu", ["conv"], ["feat"])]
    if pool == "gap":
        nodes.append(helper.make_node("GlobalAveragePool", ["feat"], ["pooled"]))
    elif pool == "reducemean":  # opset 17: axes as an attribute (18 moves them to an input)
        nodes.append(helper.make_node("ReduceMean", ["feat"], ["pooled"], axes=[2, 3],
                                      keepdims=1))
    elif pool == "avgpool":
        nodes.append(helper.make_node("AveragePool", ["feat"], ["pooled"],
                                      kernel_shape=[size, size]))
    src = "pooled"
    squeezed = False
    for i, kind in enumerate(between):
        out = f"between{i}"
        if kind == "flatten":
            nodes.append(helper.make_node("Flatten", [src], [out], axis=1))
        elif kind == "squeeze":
            inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), f"sq{i}"))
            nodes.append(helper.make_node("Squeeze", [src, f"sq{i}"], [out]))
        elif kind == "reshape":  # shape = concat(shape(x)[:1], [-1]), computed in the graph
            inits += [numpy_helper.from_array(np.array([0], np.int64), f"i{i}"),
                      numpy_helper.from_array(np.array([-1], np.int64), f"m{i}")]
            nodes += [helper.make_node("Shape", [src], [f"s{i}"]),
                      helper.make_node("Gather", [f"s{i}", f"i{i}"], [f"n{i}"], axis=0),
                      helper.make_node("Concat", [f"n{i}", f"m{i}"], [f"shape{i}"], axis=0),
                      helper.make_node("Reshape", [src, f"shape{i}"], [out])]
        squeezed = True
        src = out
    if not squeezed:
        nodes.append(helper.make_node("Flatten", [src], ["flat"], axis=1))
        src = "flat"
    if two_linear:
        hidden = rng.normal(size=(channels, channels)).astype(np.float32)
        inits.append(numpy_helper.from_array(hidden, "hidden"))
        nodes += [helper.make_node("MatMul", [src, "hidden"], ["h"]),
                  helper.make_node("Relu", ["h"], ["hr"])]
        src = "hr"
    inits.append(numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b"))
    if head == "gemm":
        inits.append(numpy_helper.from_array(fc_w, "fc_w"))
        nodes.append(helper.make_node("Gemm", [src, "fc_w", "fc_b"], ["logits"], transB=1))
    elif head == "gemm_t0":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(fc_w.T), "fc_w"))
        nodes.append(helper.make_node("Gemm", [src, "fc_w", "fc_b"], ["logits"], transB=0))
    elif head == "matmul_add":
        inits.append(numpy_helper.from_array(np.ascontiguousarray(fc_w.T), "fc_w"))
        nodes += [helper.make_node("MatMul", [src, "fc_w"], ["mm"]),
                  helper.make_node("Add", ["mm", "fc_b"], ["logits"])]
    graph = helper.make_graph(
        nodes, "cam",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=inits)
    return save(graph, path), conv_w, fc_w


def slow_model(path, iterations=10**6):
    """A model whose every run loops ``iterations`` times over a 256 x 256 MatMul: it
    does not finish a batch in any reasonable time. Input (1, 3, 8, 8), output (1, 2)."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("MatMul", ["acc_in", "M"], ["acc_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [256, 256])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [256, 256])])
    inits = [numpy_helper.from_array(np.eye(256, dtype=np.float32), "M"),
             numpy_helper.from_array(np.array(iterations, np.int64), "trip"),
             numpy_helper.from_array(np.array(True), "cond"),
             numpy_helper.from_array(np.ones((256, 256), np.float32), "acc0"),
             numpy_helper.from_array(np.array([1, 2], np.int64), "shape")]
    nodes = [helper.make_node("Loop", ["trip", "cond", "acc0"], ["acc"], body=body),
             helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
             helper.make_node("ReduceMean", ["acc"], ["s"], keepdims=0),
             helper.make_node("Add", ["m", "s"], ["t"]),
             helper.make_node("Expand", ["t", "shape"], ["logits"])]
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])], initializer=inits)
    return save(graph, path)


class Net:
    """A small builder of convolutional graphs with He-initialised weights from
    ``seed``, reading ``image`` (N, 3, size, size), or (N, size, size, 3) with
    ``layout="NHWC"`` and a leading Transpose to NCHW as tf2onnx exports it."""

    def __init__(self, size, seed=0, layout="NCHW"):
        self.rng = np.random.default_rng(seed)
        self.size, self.layout = size, layout
        self.nodes, self.inits, self.count = [], [], 0
        self.x, self.channels = "image", 3
        if layout == "NHWC":
            self.x = self.op("Transpose", "image", perm=[0, 3, 1, 2])

    def name(self, stem):
        self.count += 1
        return f"{stem}{self.count}"

    def const(self, value, stem="w"):
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type, *inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def conv(self, src, cin, cout, k=3, stride=1, group=1, pad=None, **attrs):
        w = self.rng.normal(0, np.sqrt(2 / (k * k * cin / group)), (cout, cin // group, k, k))
        b = self.rng.normal(0, 0.1, cout)
        if "auto_pad" not in attrs:
            attrs["pads"] = [k // 2 if pad is None else pad] * 4
        return self.op("Conv", src, self.const(w.astype(np.float32)),
                       self.const(b.astype(np.float32), "b"), kernel_shape=[k, k],
                       strides=[stride, stride], group=group, **attrs)

    def bn(self, src, c):
        vals = [self.rng.uniform(0.5, 1.5, c), self.rng.normal(0, 0.1, c),
                self.rng.normal(0, 0.1, c), self.rng.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization", src,
                       *(self.const(v.astype(np.float32), "bn") for v in vals))

    def head(self, src, channels, classes=3, flatten=False, pooled=False):
        """Global average pooling (or ``flatten``, or none where ``src`` is ``pooled``)
        and a linear layer to ``logits``."""
        pooled = src if flatten or pooled else self.op("GlobalAveragePool", src)
        feat = self.op("Flatten", pooled, axis=1)
        width = channels if not flatten else None
        if flatten:
            width = int(np.prod(self.shape_of(src)))
        fc = self.rng.normal(0, np.sqrt(1 / width), (classes, width)).astype(np.float32)
        self.nodes.append(helper.make_node("Gemm", [feat, self.const(fc), self.const(
            np.zeros(classes, np.float32), "b")], ["logits"], transB=1))
        shape = ["N", 3, self.size, self.size] if self.layout == "NCHW" else \
            ["N", self.size, self.size, 3]
        graph = helper.make_graph(
            self.nodes, "net", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                              shape)],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
            initializer=self.inits)
        return graph

    def shape_of(self, tensor):
        graph = helper.make_graph(self.nodes, "probe", [helper.make_tensor_value_info(
            "image", TensorProto.FLOAT, [1, 3, self.size, self.size] if self.layout == "NCHW"
            else [1, self.size, self.size, 3])], [helper.make_tensor_value_info(
                tensor, TensorProto.FLOAT, None)], initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        inferred = onnx.shape_inference.infer_shapes(model).graph
        value = next(v for v in list(inferred.value_info) + list(inferred.output)
                     if v.name == tensor)
        return [d.dim_value for d in value.type.tensor_type.shape.dim][1:]


def residual_model(path, size=32, widths=(8, 16), blocks=(1, 1), bottleneck=False, seed=0,
                   layout="NCHW", metadata=None):
    """A ResNet: 7x7 stride-2 stem with BatchNorm, ReLU and 3x3 stride-2 max pooling,
    then per stage ``blocks`` residual blocks (basic, or ``bottleneck`` with 4x
    expansion) of ``widths``, the first of each later stage with stride 2 and a 1x1
    projection; global average pooling and a linear head. ``residual_model(p, 224,
    (64, 128, 256, 512), (3, 4, 6, 3), bottleneck=True)`` has ResNet-50's shape."""
    net = Net(size, seed, layout)
    x = net.op("Relu", net.bn(net.conv(net.x, 3, widths[0], 7, 2), widths[0]))
    x = net.op("MaxPool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = widths[0]
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for block in range(count):
            stride = 2 if stage and not block else 1
            cout = width * 4 if bottleneck else width
            if bottleneck:
                y = net.op("Relu", net.bn(net.conv(x, cin, width, 1), width))
                y = net.op("Relu", net.bn(net.conv(y, width, width, 3, stride), width))
                y = net.bn(net.conv(y, width, cout, 1), cout)
            else:
                y = net.op("Relu", net.bn(net.conv(x, cin, width, 3, stride), width))
                y = net.bn(net.conv(y, width, cout, 3), cout)
            skip = x if (stride == 1 and cin == cout) else net.bn(
                net.conv(x, cin, cout, 1, stride), cout)
            x = net.op("Relu", net.op("Add", y, skip))
            cin = cout
    return save(net.head(x, cin), path, metadata)


def vgg_model(path, size=32, widths=(8, 16), seed=0, layout="NCHW"):
    """A VGG: per width two 3x3 convolutions with ReLU and 2x2 max pooling; then the
    feature map flattened into a linear head (no global pooling)."""
    net = Net(size, seed, layout)
    x, cin = net.x, 3
    for width in widths:
        x = net.op("Relu", net.conv(x, cin, width))
        x = net.op("Relu", net.conv(x, width, width))
        x = net.op("MaxPool", x, kernel_shape=[2, 2], strides=[2, 2])
        cin = width
    return save(net.head(x, cin, flatten=True), path)


def mobilenet_model(path, size=32, seed=0, layout="NCHW", tf_padding=False):
    """A MobileNetV3: stride-2 stem with HardSwish; inverted residual blocks (1x1
    expansion, 3x3 depthwise, squeeze-excitation: global pooling, two 1x1 convolutions,
    HardSigmoid, Mul; 1x1 projection), the first without and the later with a residual
    Add; a channel Concat and an integer Resize in between. ``tf_padding``: the stem
    pads with an explicit Pad node and a VALID convolution, the depthwise convolutions
    with auto_pad SAME_UPPER, as tf2onnx exports Keras' 'same'."""
    net = Net(size, seed, layout)
    if tf_padding:
        padded = net.op("Pad", net.x, net.const(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64),
                                                "pads"), mode="constant")
        x = net.op("HardSwish", net.conv(padded, 3, 8, 3, 2, auto_pad="VALID"))
    else:
        x = net.op("HardSwish", net.conv(net.x, 3, 8, 3, 2))
    wide = net.op("Relu", net.conv(x, 8, 8, 1))
    side = net.op("Relu", net.conv(x, 8, 8, 3, 2))
    up = net.op("Resize", side, "", net.const(np.array([1, 1, 2, 2], np.float32), "scales"),
                mode="nearest")
    x = net.op("Concat", wide, up, axis=1)
    cin = 16
    for block, (expand, cout, se) in enumerate(((32, 16, False), (48, 16, True),
                                                (48, 16, True))):
        y = net.op("HardSwish", net.bn(net.conv(x, cin, expand, 1), expand))
        stride = 2 if block == 1 else 1
        depth = dict(auto_pad="SAME_UPPER") if tf_padding else {}
        y = net.op("HardSwish", net.bn(net.conv(y, expand, expand, 3, stride, group=expand,
                                                **depth), expand))
        if se:
            s = net.op("GlobalAveragePool", y)
            s = net.op("Relu", net.conv(s, expand, expand // 4, 1))
            s = net.op("HardSigmoid", net.conv(s, expand // 4, expand, 1))
            y = net.op("Mul", y, s)
        y = net.bn(net.conv(y, expand, cout, 1), cout)
        x = net.op("Add", x, y) if (stride == 1 and cin == cout) else y
        cin = cout
    return save(net.head(net.op("HardSwish", net.conv(x, cin, 64, 1)), 64), path)


# MobileNetV3-Large's blocks: kernel, expansion, out channels, squeeze-excitation,
# activation, stride (Howard et al. 2019, table 1)
MOBILENET_V3_LARGE = (
    (3, 16, 16, False, "Relu", 1), (3, 64, 24, False, "Relu", 2),
    (3, 72, 24, False, "Relu", 1), (5, 72, 40, True, "Relu", 2),
    (5, 120, 40, True, "Relu", 1), (5, 120, 40, True, "Relu", 1),
    (3, 240, 80, False, "HardSwish", 2), (3, 200, 80, False, "HardSwish", 1),
    (3, 184, 80, False, "HardSwish", 1), (3, 184, 80, False, "HardSwish", 1),
    (3, 480, 112, True, "HardSwish", 1), (3, 672, 112, True, "HardSwish", 1),
    (5, 672, 160, True, "HardSwish", 2), (5, 960, 160, True, "HardSwish", 1),
    (5, 960, 160, True, "HardSwish", 1))


def mobilenet_v3_large(path, size=224, classes=1000, seed=0):
    """MobileNetV3-Large's layout with random weights (BatchNorm folded into the
    convolutions, as exported for inference): stem, the 15 inverted residual blocks
    with their squeeze-excitation, the 960-channel 1x1 convolution, global pooling,
    a 1280-wide HardSwish layer and the classifier."""
    net = Net(size, seed)
    x, cin = net.op("HardSwish", net.conv(net.x, 3, 16, 3, 2)), 16
    for k, expand, out, se, act, stride in MOBILENET_V3_LARGE:
        y = net.op(act, net.conv(x, cin, expand, 1)) if expand != cin else x
        y = net.op(act, net.conv(y, expand, expand, k, stride, group=expand))
        if se:
            squeeze = -(-expand // 4 // 8) * 8
            s = net.op("GlobalAveragePool", y)
            s = net.op("Relu", net.conv(s, expand, squeeze, 1))
            y = net.op("Mul", y, net.op("HardSigmoid", net.conv(s, squeeze, expand, 1)))
        y = net.conv(y, expand, out, 1)
        x = net.op("Add", x, y) if stride == 1 and cin == out else y
        cin = out
    x = net.op("HardSwish", net.conv(x, cin, 960, 1))
    x = net.op("HardSwish", net.conv(net.op("GlobalAveragePool", x), 960, 1280, 1))
    return save(net.head(x, 1280, classes, pooled=True), path)
