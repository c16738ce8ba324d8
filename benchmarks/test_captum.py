"""Our occlusion against Captum's ``Occlusion`` on the same network in PyTorch.

Needs the ``bench`` extra (torch, captum); skipped without it. The network is the
benchmark's small CNN, rebuilt in PyTorch from the ONNX file's own weights. Both sides
explain the log-odds of the predicted class with the same 8 x 8 px windows (7 x 7 grid
on 56 px images, so Captum's uniform windows tile the grid exactly) and the same blurred
baseline. The maps must agree to 1e-4; the speed-up is reported.
"""

import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from onnx import load, numpy_helper  # noqa: E402

from harness import OnnxClassifier, occlusion  # noqa: E402
from harness.salience.batched import make_baseline  # noqa: E402
from tests.onnx_models import cnn_model  # noqa: E402

SIZE, GRID, WIDTHS, STRIDES = 56, 7, (16, 32, 64), (1, 2, 2)


def torch_twin(path):
    """The ONNX CNN of ``cnn_model`` as a torch module with the same weights."""
    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
               for t in load(str(path)).graph.initializer}
    layers, channels = [], 3
    for i, (width, stride) in enumerate(zip(WIDTHS, STRIDES, strict=True)):
        conv = torch.nn.Conv2d(channels, width, 3, stride=stride, padding=1)
        conv.weight.data, conv.bias.data = weights[f"c{i}.w"], weights[f"c{i}.b"]
        layers += [conv, torch.nn.ReLU()]
        channels = width
    fc = torch.nn.Linear(channels, weights["fc.w"].shape[0])
    fc.weight.data, fc.bias.data = weights["fc.w"], weights["fc.b"]
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), fc]
    return torch.nn.Sequential(*layers).eval()


def test_matches_captum_and_speedup(benchmark, tmp_path):
    torch.set_num_threads(2)
    path = cnn_model(tmp_path / "cnn.onnx", SIZE, WIDTHS, strides=STRIDES)
    model = OnnxClassifier(path, batch_size=GRID * GRID)
    net = torch_twin(path)
    n = 2 if benchmark.disabled else 8
    images = np.random.default_rng(3).random((n, SIZE, SIZE, 3), np.float32)
    baseline = make_baseline(images, "blur", GRID)

    def log_odds(x):
        z = net(x)
        return torch.stack([z[:, 0] - z[:, 1], z[:, 1] - z[:, 0]], dim=1)

    x_t = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    b_t = torch.from_numpy(baseline.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        target = net(x_t).argmax(1)
    cell = SIZE // GRID
    explainer = captum_attr.Occlusion(log_odds)

    def captum_maps():
        with torch.no_grad():
            attr = explainer.attribute(x_t, sliding_window_shapes=(3, cell, cell),
                                       strides=(3, cell, cell), baselines=b_t, target=target,
                                       perturbations_per_eval=GRID * GRID)
        return attr[:, 0, cell // 2::cell, cell // 2::cell].numpy()

    start = time.perf_counter()
    theirs = captum_maps()
    t_captum = time.perf_counter() - start
    ours = occlusion(model, images, grid=GRID)
    start = time.perf_counter()
    ours = occlusion(model, images, grid=GRID)
    t_ours = time.perf_counter() - start
    diff = float(np.abs(ours - theirs).max())
    benchmark.extra_info.update(max_abs_diff=diff, captum_s=t_captum, ours_s=t_ours,
                                speedup=t_captum / t_ours)
    print(f"\nCaptum Occlusion {t_captum:.3f} s, harness {t_ours:.3f} s: "
          f"{t_captum / t_ours:.1f}x faster; max |difference| {diff:.2e}")
    assert diff < 1e-4
    benchmark.pedantic(occlusion, args=(model, images), kwargs={"grid": GRID}, rounds=1,
                       iterations=1)
