"""Occlusion throughput against raw ONNX Runtime forward passes of the same model.

Each round times ``occlusion`` on a set of images, then times ``session.run`` on the
same number of rows in batches of the same size (an already-prepared buffer, so no
harness code at all). Each round's pair sees the same machine state; the reported ratio
(occlusion passes/s over raw passes/s) is the median over rounds. Target >= 0.90.

This measures the full recompute (``incremental="off"``): how close the harness's own
work comes to the forward passes' floor. Recomputing only what windows change goes
below the floor; benchmarks/test_incremental.py measures that.
"""

import time

import numpy as np
import pytest

from benchmarks.conftest import enforce
from harness import OnnxClassifier, occlusion
from tests.onnx_models import cnn_model

MODELS = {
    # name: (input size, conv widths, strides)
    # the shape of the built-in zoo's face detectors
    "small_cnn_64px": (64, (16, 32, 64), (1, 2, 2)),
    "cnn_224px": (224, (32, 64, 128, 128), (2, 2, 2, 1)),
}
BATCH = 64


def raw_passes(session, name, batch, rows):
    """Seconds for ``rows`` forward passes in batches of ``batch`` on a fixed buffer
    (made before the clock starts)."""
    full, rest = divmod(rows, batch)
    shape = [batch] + list(session.get_inputs()[0].shape[1:])
    buffer = np.random.default_rng(0).random(shape, np.float32)
    start = time.perf_counter()
    for _ in range(full):
        session.run(None, {name: buffer})
    if rest:
        session.run(None, {name: buffer[:rest]})
    return time.perf_counter() - start


def occlusion_vs_raw(model, images, rounds, batch=BATCH, incremental="off"):
    """Forward passes per call (passes-equivalent, where incremental), and per round
    (occlusion seconds, raw seconds for as many full passes)."""
    times = []
    for _ in range(rounds):
        model.forward_passes = 0
        start = time.perf_counter()
        occlusion(model, images, batch_size=batch, incremental=incremental)
        t_occ = time.perf_counter() - start
        passes = model.forward_passes
        times.append((t_occ, raw_passes(model.session, model.input_name, batch, passes)))
    return passes, np.array(times)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_occlusion_throughput(benchmark, tmp_path, name):
    size, widths, strides = MODELS[name]
    model = OnnxClassifier(cnn_model(tmp_path / f"{name}.onnx", size, widths, strides=strides),
                           batch_size=BATCH)
    n_images = 2 if benchmark.disabled else (16 if size < 100 else 4)
    rounds = 1 if benchmark.disabled else 11
    images = np.random.default_rng(1).random((n_images, size, size, 3), np.float32)
    occlusion_vs_raw(model, images, 1)  # warm ONNX Runtime's allocator and the caches
    passes, times = occlusion_vs_raw(model, images, rounds)
    ratio = float(np.median(times[:, 1] / times[:, 0]))
    t_occ, t_raw = np.median(times, axis=0)
    benchmark.extra_info.update(model=name, passes=passes, occlusion_passes_per_s=passes / t_occ,
                                raw_passes_per_s=passes / t_raw, ratio=ratio,
                                provider=model.provider)
    print(f"\n{name} on {model.provider}: occlusion {passes / t_occ:.0f} passes/s, raw "
          f"session.run {passes / t_raw:.0f} passes/s, ratio {ratio:.3f} (target >= 0.90)")
    benchmark.pedantic(occlusion, args=(model, images),
                       kwargs={"batch_size": BATCH, "incremental": "off"},
                       rounds=1, iterations=1)
    enforce(benchmark, ratio, 0.90, f"occlusion throughput on {name}")
