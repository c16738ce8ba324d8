"""Grad-CAM through a MobileNetV3 head (pool -> 1x1 conv -> HardSwish -> dropout ->
linear) against the model's forward passes alone: what differentiating the head in
NumPy, and fetching the feature map it reads, add to the one forward pass per image.

The network is MobileNetV3-Large-shaped at its own 224 px (inverted residual blocks of
1x1 expansions and depthwise 3x3 convolutions, a 960 x 7 x 7 feature map, a 1280-wide
head, 1000 classes) with random weights. Reported as forward time over Grad-CAM time,
the median of paired rounds; target >= 1 / 1.10, i.e. Grad-CAM costs at most 1.10x the
forward passes. A small 64 px network is timed too and reported: its feature map is
large for its compute, so the fetch weighs more there.
"""

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.conftest import enforce
from harness import OnnxClassifier, cam

# (out channels, expansion, stride) of MobileNetV3-Large's blocks
BLOCKS = ((16, 16, 1), (24, 64, 2), (24, 72, 1), (40, 72, 2), (40, 120, 1), (80, 240, 2),
          (80, 200, 1), (112, 480, 1), (160, 672, 2), (160, 960, 1))


def mobilenet_v3(path, size=224, blocks=BLOCKS, last=960, hidden=1280, classes=1000):
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    count = [0]

    def conv(src, cin, cout, k, stride=1, group=1, act="HardSwish"):
        i = count[0]
        count[0] += 1
        w = rng.normal(0, np.sqrt(2 / (k * k * cin / group)), (cout, cin // group, k, k))
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("Conv", [src, f"w{i}"], [f"c{i}"], pads=[k // 2] * 4,
                                      strides=[stride] * 2, group=group))
        if act is None:
            return f"c{i}"
        nodes.append(helper.make_node(act, [f"c{i}"], [f"a{i}"]))
        return f"a{i}"

    x, cin = conv("image", 3, 16, 3, 2), 16
    for out, expand, stride in blocks:
        y = conv(x, cin, expand, 1) if expand != cin else x
        y = conv(y, expand, expand, 3, stride, group=expand)
        y = conv(y, expand, out, 1, act=None)
        x, cin = y, out
    feature = conv(x, cin, last, 1)
    for name, shape in (("hw", (hidden, last, 1, 1)), ("hb", (hidden,)),
                        ("fw", (classes, hidden)), ("fb", (classes,))):
        inits.append(numpy_helper.from_array(
            rng.normal(0, 1 / np.sqrt(shape[1] if len(shape) > 1 else 1), shape)
            .astype(np.float32), name))
    nodes += [helper.make_node("GlobalAveragePool", [feature], ["p"]),
              helper.make_node("Conv", ["p", "hw", "hb"], ["h"]),
              helper.make_node("HardSwish", ["h"], ["hs"]),
              helper.make_node("Dropout", ["hs"], ["d"]),
              helper.make_node("Flatten", ["d"], ["f"]),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "mobilenet_v3",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def ratio_of(clf, x, rounds):
    """Median over paired rounds of forward seconds over Grad-CAM seconds."""
    cam(clf, x[:2])  # open the copy of the model that exposes the feature map
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        clf.forward(x)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        cam(clf, x)
        ratios.append(forward / (time.perf_counter() - start))
    return float(np.median(ratios))


def test_grad_cam_costs_little_more_than_the_forward_passes(benchmark, tmp_path):
    clf = OnnxClassifier(mobilenet_v3(tmp_path / "m.onnx"), batch_size=32)
    n, rounds = (2, 1) if benchmark.disabled else (64, 7)
    x = np.random.default_rng(1).random((n, 224, 224, 3)).astype(np.float32)
    ratio = ratio_of(clf, x, rounds)
    small = OnnxClassifier(mobilenet_v3(tmp_path / "small.onnx", 64, BLOCKS[:4], 64, 128, 2),
                           batch_size=64)
    x_small = np.random.default_rng(2).random((8 if benchmark.disabled else 256, 64, 64, 3))
    small_ratio = ratio_of(small, x_small.astype(np.float32), rounds)
    benchmark.extra_info.update(forward_over_grad_cam=ratio,
                                small_forward_over_grad_cam=small_ratio)
    print(f"\nGrad-CAM through a MobileNetV3 head: {1 / ratio:.3f}x the forward passes at "
          f"224 px, {1 / small_ratio:.3f}x on a small 64 px network")
    benchmark.pedantic(lambda: cam(clf, x[:2]), rounds=1, iterations=1)
    enforce(benchmark, ratio, 1 / 1.10, "forward passes over Grad-CAM")
