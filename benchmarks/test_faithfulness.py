"""The faithfulness measures against their forward passes' floor.

Each round times one measure's copies (the model's map and the random maps of its
chance level, scored through :func:`harness.salience.curves.curve`: ordering, copies,
ROAD's imputation, batching, scoring), then raw ``session.run`` of the model on as many
rows in batches of 32 on a prepared buffer. The ratio, measure seconds over raw seconds,
is the median over paired rounds: what the measure costs beyond the passes it must make.

Target: <= 1.15 for every measure on a ResNet-50-sized 224 px network (a detector's
size). Reported: the light 224 px CNN and the built-in zoo's 64 px CNN, where a pass
costs 10 to 300 times less and the same copy-making weighs that much more.
"""

import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import enforce
from benchmarks.test_salience_throughput import raw_passes
from harness import OnnxClassifier
from harness.salience.curves import CURVES, copies, curve
from harness.salience.settings import SalienceConfig
from tests.onnx_models import cnn_model, residual_model

ZOO = Path(__file__).resolve().parents[1] / "model_zoo" / "faces" / "faces-xent-1.onnx"
MODELS = {
    # name: (builder(path, side), images when benchmarking, rounds, target or None)
    "resnet50_224px": (lambda p, side: residual_model(p, side, (64, 128, 256, 512), (3, 4, 6, 3),
                                                      bottleneck=True), 1, 3, 1.15),
    "cnn_224px": (lambda p, side: cnn_model(p, side, (32, 64, 128, 128), strides=(2, 2, 2, 1)),
                  4, 5, None),
    "zoo_cnn_64px": (lambda p, side: ZOO, 16, 5, None),
}
SMOKE_SIDE = 32  # with --benchmark-disable (CI) the 224 px networks run at this size
MEASURES = {"deletion": "deletion", "insertion": "insertion", "road": "road",
            "faithfulness_correlation": "faithcorr"}
BATCH = 32


def measure_vs_raw(model, x, maps, curves, rounds):
    """Forward passes per round, and per round (measure seconds, raw seconds)."""
    hashes = [f"{i:064x}" for i in range(len(x))]
    targets = np.zeros(len(x), np.int64)
    config = SalienceConfig(batch_size=BATCH)
    passes = len(x) * sum(copies(c, maps[0].size) for c in curves)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for c in curves:
            curve(model, x, maps, hashes, 0, config, targets, c)
        t_measure = time.perf_counter() - start
        times.append((t_measure, raw_passes(model.session, model.input_name, BATCH, passes)))
    return passes, np.array(times)


@pytest.mark.parametrize("measure", list(MEASURES))
@pytest.mark.parametrize("name", list(MODELS))
def test_measure_against_its_passes(benchmark, tmp_path, name, measure):
    build, n_images, rounds, target = MODELS[name]
    if benchmark.disabled:  # a smoke test of every path, on too little work to time
        n_images, rounds = 1, 1
    side = SMOKE_SIDE if benchmark.disabled else 224
    model = OnnxClassifier(build(tmp_path / f"{name}.onnx", side), batch_size=BATCH)
    size = model.input_size[0]
    rng = np.random.default_rng(1)
    x = rng.random((n_images, size, size, 3), np.float32)
    maps = rng.standard_normal((n_images, 7, 7))
    curves = [c for c in CURVES if c.split("/")[0] == MEASURES[measure]]
    measure_vs_raw(model, x[:1], maps[:1], curves, 1)  # warm sessions and allocator
    passes, times = measure_vs_raw(model, x, maps, curves, rounds)
    ratio = float(np.median(times[:, 0] / times[:, 1]))
    benchmark.extra_info.update(model=name, measure=measure, passes=passes, ratio=ratio)
    print(f"\n{measure} on {name} ({model.provider}): measure/floor {ratio:.3f} over "
          f"{passes} passes (target {target or 'reported'})")
    benchmark.pedantic(measure_vs_raw, args=(model, x[:1], maps[:1], curves, 1), rounds=1,
                       iterations=1)
    if target is not None:
        enforce(benchmark, ratio, target, f"{measure} on {name}", at_most=True)
