"""Incremental occlusion against the forward passes' floor.

Each round times ``occlusion`` (``incremental="auto"``: the harness decides) on a set of
images at 7 x 7, batch 32, then raw ``session.run`` of the full model on as many rows
(the passes a full recompute must make) in batches of 32 on a prepared buffer. The
ratio, occlusion's passes-equivalent per second over the raw passes per second, is the
median over rounds: above 1 is faster than running the g*g full passes could ever be.

Target: >= 1.5 for a ResNet-50-sized 224 px network. Reported: a network of
MobileNetV3-Large's layout (its first squeeze-excitation, in the fourth block, ends the
local prefix), the light 224 px CNN and the built-in zoo's 64 px CNN; where auto
declines a model, the ratio is the full recompute's.
"""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import enforce
from benchmarks.test_salience_throughput import occlusion_vs_raw
from harness import OnnxClassifier, occlusion
from harness.salience.incremental import USED
from harness.salience.occlusion import incremental_provenance
from harness.salience.settings import SalienceConfig
from tests.onnx_models import cnn_model, mobilenet_v3_large, residual_model

ZOO = Path(__file__).resolve().parents[1] / "model_zoo" / "faces" / "faces-xent-1.onnx"
MODELS = {
    # name: (builder, images when benchmarking, target or None)
    "resnet50_224px": (lambda p: residual_model(p, 224, (64, 128, 256, 512), (3, 4, 6, 3),
                                                bottleneck=True), 2, 1.5),
    "mobilenetv3_large_224px": (lambda p: mobilenet_v3_large(p, 224), 8, None),
    "cnn_224px": (lambda p: cnn_model(p, 224, (32, 64, 128, 128), strides=(2, 2, 2, 1)), 8,
                  None),
    "zoo_cnn_64px": (lambda p: ZOO, 32, None),
}
BATCH = 32


@pytest.mark.parametrize("name", list(MODELS))
def test_incremental_occlusion_against_the_floor(benchmark, tmp_path, name):
    build, n_images, target = MODELS[name]
    model = OnnxClassifier(build(tmp_path / f"{name}.onnx"), batch_size=BATCH)
    size = model.input_size[0]
    n_images = n_images if not benchmark.disabled else 1
    rounds = 1 if benchmark.disabled else 5
    images = np.random.default_rng(1).random((n_images, size, size, 3), np.float32)
    occlusion_vs_raw(model, images, 1, BATCH, "auto")  # sessions, plan, self-check
    passes, times = occlusion_vs_raw(model, images, rounds, BATCH, "auto")
    ratio = float(np.median(times[:, 1] / times[:, 0]))
    record = incremental_provenance(model, SalienceConfig(), (size, size), model.execution)
    assert record["used"] == (USED in model.execution)
    how = (f"incremental from {record['frontier']!r}, predicted {record['predicted_ratio']}x"
           if record["used"] else f"full recompute ({record['reason']})")
    benchmark.extra_info.update(model=name, passes=passes, ratio=ratio, **record)
    print(f"\n{name} on {model.provider}: occlusion/floor {ratio:.3f} ({how}; "
          f"target {target or 'reported'})")
    benchmark.pedantic(occlusion, args=(model, images), kwargs={"batch_size": BATCH},
                       rounds=1, iterations=1)
    if target is not None:
        assert record["used"], f"{name}: auto did not choose incremental: {record['reason']}"
        enforce(benchmark, ratio, target, f"incremental occlusion on {name}")
