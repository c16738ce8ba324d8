"""Grad-CAM through a MobileNetV3-style head (pool -> 1x1 conv -> HardSwish -> dropout
-> linear) against the model's forward passes alone: what differentiating the head in
NumPy adds to the one forward pass per image. Reported as forward time over Grad-CAM
time (the median of paired rounds); target >= 1 / 1.10, i.e. Grad-CAM costs at most
1.10x the forward passes."""

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from benchmarks.conftest import enforce
from harness import OnnxClassifier, cam

SIZE, WIDTHS, HIDDEN, CLASSES = 64, (16, 32, 64), 128, 2


def mobilenet_v3_like(path):
    rng = np.random.default_rng(0)
    nodes, inits, src, cin = [], [], "image", 3
    for i, (width, stride) in enumerate(zip(WIDTHS, (1, 2, 2), strict=True)):
        w = rng.normal(0, np.sqrt(2 / (9 * cin)), (width, cin, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [src, f"w{i}"], [f"c{i}"], pads=[1] * 4,
                                   strides=[stride] * 2),
                  helper.make_node("HardSwish", [f"c{i}"], [f"a{i}"])]
        src, cin = f"a{i}", width
    for name, shape in (("hw", (HIDDEN, cin, 1, 1)), ("hb", (HIDDEN,)),
                        ("fw", (CLASSES, HIDDEN)), ("fb", (CLASSES,))):
        inits.append(numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name))
    nodes += [helper.make_node("GlobalAveragePool", [src], ["p"]),
              helper.make_node("Conv", ["p", "hw", "hb"], ["h"]),
              helper.make_node("HardSwish", ["h"], ["hs"]),
              helper.make_node("Dropout", ["hs"], ["d"]),
              helper.make_node("Flatten", ["d"], ["f"]),
              helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "mobilenet_v3_like",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_grad_cam_costs_little_more_than_the_forward_passes(benchmark, tmp_path):
    clf = OnnxClassifier(mobilenet_v3_like(tmp_path / "m.onnx"), batch_size=64)
    n = 8 if benchmark.disabled else 256
    rounds = 1 if benchmark.disabled else 9
    x = np.random.default_rng(1).random((n, SIZE, SIZE, 3)).astype(np.float32)
    cam(clf, x[:2])  # open the copy of the model that exposes the feature map
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        clf.forward(x)
        forward = time.perf_counter() - start
        start = time.perf_counter()
        cam(clf, x)
        ratios.append(forward / (time.perf_counter() - start))
    ratio = float(np.median(ratios))
    benchmark.extra_info["forward_over_grad_cam"] = ratio
    print(f"\nGrad-CAM through a MobileNetV3-style head: {1 / ratio:.3f}x the forward passes")
    benchmark.pedantic(lambda: cam(clf, x[:8]), rounds=1, iterations=1)
    enforce(benchmark, ratio, 1 / 1.10, "forward passes over Grad-CAM")
