"""The GPU path of the perturbation methods (harness.numerics.cuda_kernels kernels, batches
bound in place with ONNX Runtime's I/O binding), checked on a machine without a GPU:
Numba's CUDA simulator runs the kernels, and the CPU provider binds the simulator's
arrays as host memory. Run by tests/test_bound.py with NUMBA_ENABLE_CUDASIM=1 (the
simulator must be chosen before Numba is imported); benchmarks/gpu_check.py runs
:func:`fill_both` on a real GPU.
"""

import os

import numpy as np
import pytest

from harness import OnnxClassifier, occlusion, rise
from harness.errors import ModelTimeout, NonFiniteOutput
from harness.salience.occlusion import _fill_occluded, window_boxes
from harness.salience.rise import _fill_masked, rise_masks
from tests.onnx_models import linear_model, slow_model

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                                reason="needs NUMBA_ENABLE_CUDASIM=1 (run by test_bound.py)")


def fill_both(kernel: str, channels_first: bool, n=3, size=(9, 7), per_image=5, slots=4,
              step=1, seed=0):
    """One step's batch written by the CPU kernel and by its CUDA twin, from the same
    random images, baselines and perturbations: ``(cpu, gpu)`` arrays ``(slots, L)``."""
    from numba import cuda

    from harness.numerics import cuda_kernels

    rng = np.random.default_rng(seed)
    h, w = size
    shape = (n, 3, h, w) if channels_first else (n, h, w, 3)
    src = rng.normal(size=shape).astype(np.float32)
    base = rng.normal(size=shape).astype(np.float32)
    total = n * per_image
    queue = -(-total // slots)
    items = np.arange(slots) * queue + step
    items = items[items < total]
    item_img, item_pert = items // per_image, items % per_image
    cpu = np.zeros((len(items),) + shape[1:], np.float32)
    none = np.full(len(items), -1, np.int64)
    if kernel == "occluded":
        boxes = window_boxes(h, w, 3, 1)[rng.integers(0, 9, per_image)]
        tables = (boxes,)
        _fill_occluded(src, base, item_img, item_pert, none, none, boxes, cpu, channels_first)
    else:
        bank = rise_masks((h, w), per_image, cell=3, seed=seed)
        tables = (bank.grids, bank.shifts, *bank.up_size)
        _fill_masked(src, base, item_img, bank.grids[item_pert], bank.shifts[item_pert],
                     *bank.up_size, cpu, channels_first)
    out = cuda.to_device(np.zeros((1, len(items), cpu[0].size), np.float32))
    device_tables = tuple(cuda.to_device(t) if isinstance(t, np.ndarray) else t
                          for t in tables)
    cuda_kernels.launch(kernel, device_tables, cuda.to_device(src.reshape(n, -1)),
                     cuda.to_device(base.reshape(n, -1)), step, queue, per_image, total,
                     (h, w, 3), channels_first, out, threads=8)
    cuda.synchronize()
    return cpu.reshape(len(items), -1), out.copy_to_host()[0]


def prepare_both(channels_first: bool, color: str = "RGB", n=2, size=(9, 7), seed=0):
    """The blur baseline of random images, preprocessed for a model, by the CPU kernels
    and by their CUDA twins: ``(cpu, gpu)`` arrays ``(N, L)``."""
    from numba import cuda

    from harness.numerics import cuda_kernels
    from harness.numerics.filters import (
        gaussian_blur,
        gaussian_taps,
        normalize_tables,
        to_model_input,
    )

    rng = np.random.default_rng(seed)
    h, w = size
    x = rng.random((n, h, w, 3), np.float32)
    c = 1 if color == "L" else 3
    mean, std = rng.random(c).astype(np.float32), (0.5 + rng.random(c)).astype(np.float32)
    sigmas = (h / 6, w / 4)
    cpu = to_model_input(gaussian_blur(x, sigmas), color, mean, std, channels_first)
    taps = [tuple(cuda.to_device(t) for t in gaussian_taps(size, s))
            for size, s in zip((h, w), sigmas, strict=True)]
    blurred = cuda_kernels.separable(cuda.to_device(x), taps[0], taps[1], threads=8)
    out = cuda.device_array((n, cpu[0].size), np.float32)
    tables = [cuda.to_device(t) for t in normalize_tables(color, mean, std)]
    cuda_kernels.normalize(blurred, *tables, channels_first, out, threads=8)
    cuda.synchronize()
    return cpu.reshape(n, -1), out.copy_to_host()


@pytest.mark.parametrize("channels_first,color", [(True, "RGB"), (False, "BGR"), (True, "L")])
def test_device_baseline_and_preprocessing_match_the_cpu(channels_first, color):
    cpu, gpu = prepare_both(channels_first, color)
    np.testing.assert_array_equal(gpu, cpu)


@pytest.mark.parametrize("kernel", ["occluded", "masked"])
@pytest.mark.parametrize("channels_first", [True, False])
def test_cuda_kernels_write_what_the_cpu_kernels_write(kernel, channels_first):
    for step in (0, 3):  # the last step leaves slots empty
        cpu, gpu = fill_both(kernel, channels_first, step=step)
        np.testing.assert_array_equal(gpu, cpu)


@pytest.fixture(scope="module")
def weights():
    return np.random.default_rng(3).normal(size=(3, 8, 8, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).random((3, 8, 8, 3), np.float32)


@pytest.mark.parametrize("layout,batch,baseline,group_bytes", [
    ("NCHW", "N", "blur", 1 << 28), ("NHWC", "N", "mean", 1), ("NCHW", 4, 0.25, 2 * 4 * 192 * 4)])
def test_bound_path_gives_the_host_paths_maps(tmp_path, monkeypatch, weights, images, layout,
                                              batch, baseline, group_bytes):
    # groups of 8, 1 and 2 batches: one group, and the kernels filling one group while
    # the model runs the other
    monkeypatch.setattr("harness.salience.bound._GROUP_BYTES", group_bytes)
    clf = OnnxClassifier(linear_model(tmp_path / "m.onnx", weights, layout=layout, batch=batch),
                         batch_size=5)

    def maps():
        return [occlusion(clf, images, grid=4, window=2, baseline=baseline),
                rise(clf, images, n_masks=9, grid=4, baseline=baseline),
                occlusion(clf, images, grid=4, target=1, clean=np.ones((3, 3), np.float32))]

    bound = maps()
    assert clf.execution == "CPUExecutionProvider[iobinding]"
    depth = next(iter(clf._bound_buffers.values())).depth
    assert depth == {1 << 28: 8, 1: 1, 2 * 4 * 192 * 4: 2}[group_bytes]
    passes = clf.forward_passes
    clf.bind_io = False
    host = maps()
    assert clf.forward_passes == 2 * passes  # the same passes counted either way
    for a, b in zip(bound, host, strict=True):
        np.testing.assert_array_equal(a, b)


def test_images_that_need_resizing_keep_the_host_path(tmp_path, weights, images):
    clf = OnnxClassifier(linear_model(tmp_path / "m.onnx", weights))
    occlusion(clf, np.repeat(np.repeat(images, 2, 1), 2, 2), grid=4)
    assert clf.io_paths == {"host"} and clf.execution == "CPUExecutionProvider"


def test_non_finite_scores_name_their_images(tmp_path):
    w = np.full((2, 8, 8, 3), 1.0 / (8 * 8 * 3), np.float32)
    clf = OnnxClassifier(linear_model(tmp_path / "nan.onnx", w, bias=[-0.3, -0.3], post="Sqrt"))
    x = np.full((3, 8, 8, 3), 0.6, np.float32)
    x[1] = 0.302  # clean is fine; occluding any cell with black pushes the mean below 0.3
    with pytest.raises(NonFiniteOutput) as err:
        occlusion(clf, x, grid=2, baseline=0.0)
    assert err.value.rows.tolist() == [1] and "iobinding" in clf.io_paths


def test_a_bound_batch_past_the_timeout_is_stopped(tmp_path):
    clf = OnnxClassifier(slow_model(tmp_path / "slow.onnx"), timeout=1)
    x = np.zeros((1, 8, 8, 3), np.float32)
    with pytest.raises(ModelTimeout, match="did not finish within --model-timeout 1 s"):
        occlusion(clf, x, grid=2, clean=np.zeros((1, 2), np.float32))
