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
