"""Perturbed copies made and run where the model runs. The images go to the GPU once
per call; the blur baseline and the model's preprocessing are computed there; CUDA
kernels write groups of batches into preallocated device buffers while the model runs
the previous group, each batch run in place through ONNX Runtime's I/O binding; only
its (batch, classes) output comes back, into a small host array bound once. Nothing is
allocated per batch.

Used for models on the CUDA provider when Numba reaches the GPU, whose input is float32
at the images' own size (a copy that needed resizing would need it per copy, which only
the host path does) and whose output is a float32 (N, classes) tensor. Every other model
keeps the host path. Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) a
CPU-provider model takes this path too, with the simulator's arrays bound as host
memory: how the path is tested without a GPU.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from harness.errors import NonFiniteOutput
from harness.model.session import CPU, CUDA, Deadline
from harness.salience.scoring import class_scores

# device memory for one group of input batches (two groups are held)
_GROUP_BYTES = 256 << 20


@functools.cache
def gpu():
    """``numba.cuda`` when it reaches a GPU (or its simulator), else None."""
    try:
        from numba import cuda

        return cuda if cuda.is_available() else None
    except Exception:  # no numba-cuda, no driver, a driver too old: the host path it is
        return None


def _simulated() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def bound_device(model, resized: bool) -> str | None:
    """The ONNX Runtime device the copies of ``model`` are bound on ("cuda", or "cpu"
    under the simulator), or None for the host path."""
    if not getattr(model, "bind_io", False) or resized:
        return None
    if model.provider == CUDA and not _simulated():
        device = "cuda"
    elif model.provider == CPU and _simulated():
        device = "cpu"
    else:
        return None
    outputs = {o.name: o for o in model.session.get_outputs()}
    out = outputs.get(model.output_name)
    if (model.input_dtype != np.float32 or model.num_classes is None or out is None
            or getattr(model, "single_logit", False)
            or out.type != "tensor(float)" or len(out.shape) != 2):
        return None
    return device if gpu() is not None else None


def _pointer(array) -> int:
    if _simulated():
        return array._ary.ctypes.data  # the simulator keeps device arrays in host memory
    return array.__cuda_array_interface__["data"][0]


class _Buffers:
    """A model's bound buffers for one batch shape, reused across calls: two groups of
    ``depth`` input batches on the device (the kernels fill one group while the model
    reads the other) and one I/O binding per batch, each bound once to its input and to
    a small host array for its (batch, classes) output."""

    def __init__(self, cuda, session, slots: int, length: int, classes: int):
        self.depth = int(max(1, min(8, _GROUP_BYTES // (slots * length * 4))))
        self.slots = slots
        self.inputs = cuda.to_device(np.zeros((2 * self.depth, slots, length), np.float32))
        self.outputs = np.zeros((2 * self.depth, slots, classes), np.float32)
        self.bindings = [session.io_binding() for _ in range(2 * self.depth)]
        self.rows = [None] * (2 * self.depth)  # rows each binding is bound with
        self.pointer, self.stride = _pointer(self.inputs), slots * length * 4
        self.stream = cuda.stream()  # not the default stream: no waiting on the model's

    def binding(self, model, device: str, j: int, rows: int, shape: tuple):
        """Binding ``j``, bound to input batch ``j`` with ``rows`` rows."""
        binding = self.bindings[j]
        if self.rows[j] != rows:
            binding.bind_input(model.input_name, device, 0, np.float32, [rows, *shape],
                               self.pointer + j * self.stride)
            binding.bind_output(model.output_name, "cpu", 0, np.float32,
                                [rows, self.outputs.shape[2]], self.outputs[j].ctypes.data)
            self.rows[j] = rows
        return binding


class DeviceImages:
    """One call's images on the model's device: the pixels uploaded once, the baseline
    and the model's preprocessing computed there (``cuda_kernels``), then the clean pass
    and the perturbed copies run bound (see the module docstring).

    Args:
        images: ``(N, H, W, 3) float32`` pixel images at the model's input size.
        blur: ``(sigma_y, sigma_x)`` of a blur baseline computed on the device, or None
            with ``baselines`` given.
        baselines: pixel-space baselines computed by the caller (constant, mean).
        batch: copies per forward pass (a fixed batch axis wins).
    """

    def __init__(self, model, device: str, images: np.ndarray, blur, baselines, batch: int):
        from harness.numerics import cuda_kernels as kernels
        from harness.numerics.filters import gaussian_taps, normalize_tables

        self.cuda, self.kernels = gpu(), kernels
        self.model, self.device = model, device
        # the simulator runs each GPU thread as a Python thread: a few keep it quick
        self.threads = 4 if _simulated() else kernels.THREADS
        cuda = self.cuda
        n, h, w, _ = images.shape
        self.n = n
        self.channels_first = model.layout == "NCHW"
        c = model.channels
        self.shape = (c, h, w) if self.channels_first else (h, w, c)
        self.hwc = (h, w, c)
        self.length = c * h * w
        self.slots = model.rows_per_run or batch
        self.stream = self._buffers().stream
        pixels = cuda.to_device(np.ascontiguousarray(images, np.float32))
        if blur is not None:
            taps = [tuple(cuda.to_device(t) for t in gaussian_taps(size, float(sigma)))
                    for size, sigma in zip((h, w), blur, strict=True)]
            base = kernels.separable(pixels, taps[0], taps[1], self.threads, self.stream)
        else:
            base = cuda.to_device(np.ascontiguousarray(baselines, np.float32))
        tables = [cuda.to_device(t) for t in normalize_tables(model.color, model.mean,
                                                               model.std)]
        self.src = cuda.device_array((n, self.length), np.float32)
        self.base = cuda.device_array((n, self.length), np.float32)
        for px, out in ((pixels, self.src), (base, self.base)):
            kernels.normalize(px, *tables, self.channels_first, out, self.threads, self.stream)
        self.stream.synchronize()

    def _buffers(self) -> _Buffers:
        key = (id(self.model.session), self.slots, self.length)
        cache = self.model.__dict__.setdefault("_bound_buffers", {})
        if key not in cache:
            if len(cache) > 1:  # a model and its twin; more would hold the GPU's memory
                cache.pop(next(iter(cache)))
            cache[key] = _Buffers(self.cuda, self.model.session, self.slots, self.length,
                                  self.model.num_classes)
        return cache[key]

    def clean(self) -> np.ndarray:
        """The model's ``(N, K) float32`` outputs on the images, run in place: each batch
        is copied into a bound input (device to device) and run."""
        model, buf = self.model, self._buffers()
        out = np.empty((self.n, model.num_classes), np.float32)
        with Deadline(model.timeout) as deadline:
            for start in range(0, self.n, buf.slots):
                k = min(buf.slots, self.n - start)
                buf.inputs[0, :k].copy_to_device(self.src[start:start + k])
                self.cuda.synchronize()  # the model's stream does not wait for the copy
                binding = buf.binding(model, self.device, 0, model.rows_per_run or k, self.shape)
                _run(model, binding, deadline, k)
                out[start:start + k] = buf.outputs[0, :k]
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(model.name, np.flatnonzero(bad))
        return out

    def scores(self, kernel: str, tables: tuple, per_image: int, targets: np.ndarray,
               score: str) -> np.ndarray:
        """Scores ``(N * per_image,) float64`` of every perturbed copy: ``cuda_kernels``
        kernel ``kernel`` with its per-perturbation ``tables`` (host arrays are
        uploaded once) writes the next group of batches while the model runs this one,
        each batch bound in place."""
        model, cuda, buf = self.model, self.cuda, self._buffers()
        total = self.n * per_image
        slots, depth = buf.slots, buf.depth
        queue = -(-total // slots)
        d_tables = tuple(cuda.to_device(np.ascontiguousarray(t)) if isinstance(t, np.ndarray)
                         else t for t in tables)

        def fill(group):
            half = (group % 2) * depth
            # from the third group on, each batch buffer holds this call's copies of the
            # steps two groups back, which a kernel may patch rather than rewrite
            self.kernels.launch(kernel, d_tables, self.src, self.base, group * depth, queue,
                                per_image, total, self.hwc, self.channels_first,
                                buf.inputs[half:half + depth], self.threads, buf.stream,
                                2 * depth if group >= 2 else 0)

        scores = np.empty(total, np.float64)
        groups = -(-queue // depth)
        held = np.empty((depth, slots, model.num_classes), np.float32)
        fill(0)
        with Deadline(model.timeout) as deadline:
            for group in range(groups):
                buf.stream.synchronize()  # this group's copies are written
                if group + 1 < groups:
                    fill(group + 1)  # written on the GPU while the model runs this group
                first = group * depth
                steps = min(depth, queue - first)
                for d in range(steps):
                    k = min(slots, (total - first - d + queue - 1) // queue)
                    j = (group % 2) * depth + d
                    _run(model, buf.binding(model, self.device, j, model.rows_per_run or k,
                                            self.shape), deadline, k)
                    held[d] = buf.outputs[j]
                _score_steps(model, held[:steps], first, queue, total, per_image, targets,
                             score, scores)
        return scores


def _run(model, binding, deadline, k: int) -> None:
    """One bound run of ``k`` real rows, stopped at the deadline."""
    deadline.run(lambda options: model.session.run_with_iobinding(binding, options),
                 model.path, k)
    model.forward_passes += k


def _score_steps(model, held, first, queue, total, per_image, targets, score, scores):
    """Score the outputs of steps ``first ..`` (``held``: (steps, slots, classes)), whose
    slot b of step s is item b * queue + s."""
    steps, slots = held.shape[:2]
    items = np.arange(slots)[None, :] * queue + (first + np.arange(steps))[:, None]
    valid = items < total
    items, outputs = items[valid], held[valid]
    bad = ~np.isfinite(outputs).all(axis=1)
    if bad.any():
        raise NonFiniteOutput(model.name, np.unique(items[bad] // per_image))
    scores[items] = class_scores(outputs, model.output_kind, targets[items // per_image], score)
