"""CUDA twins of the numeric kernels the perturbation methods run per image: the blur
baseline and the model's preprocessing (``filters._filter_axis1``, ``filters._normalize``)
and the occluded and RISE-masked copies (``occlusion._fill_occluded``,
``rise._fill_masked``), written straight into device buffers from one uploaded copy of
each image.

Each mirrors its CPU kernel's arithmetic: the same taps summed in the same order in
float32, the same bilinear mask in float64 rounded once to float32, the same layouts.
Occluded copies are plain copies, equal to the CPU's bit for bit. Elsewhere a value may
differ from the CPU's in its last float32 bit where the GPU compiler fuses a multiply
and an add into one rounding; gpu_check counts them.

Slot b of step s holds item ``b * queue + s`` (image ``item // per_image``, perturbation
``item % per_image``), as on the host, but the kernel derives it itself: nothing but
scalars crosses to the device per launch, and one launch writes the batches of several
steps. Arrays are flat per image: ``src``/``base`` ``(N, L)`` and ``out``
``(steps, B, L)`` with L = C * H * W.

Importing this module imports ``numba.cuda``; callers do so only when they use it.
"""

from __future__ import annotations

import math

import numpy as np

if not hasattr(np, "row_stack"):
    # numba-cuda 0.30 registers an overload of np.row_stack, which NumPy 2.5 removed
    # (it was vstack's alias); without it no kernel compiles
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402

from harness.numerics.filters import bilinear_source  # noqa: E402

THREADS = 256


@cuda.jit(device=True)
def _offset(p, ch, hw, c, channels_first):
    """Flat position of channel ``ch`` of pixel ``p`` (= y * W + x) of one image."""
    if channels_first:
        return ch * hw + p
    return p * c + ch


_axis_sample = cuda.jit(device=True)(bilinear_source)


@cuda.jit(device=True)
def _mask_value(grids, k, dy, dx, y, x, up_h, up_w):
    y0, y1, wy = _axis_sample(y + dy, grids.shape[1], up_h)
    x0, x1, wx = _axis_sample(x + dx, grids.shape[2], up_w)
    top = grids[k, y0, x0] * (1.0 - wx) + grids[k, y0, x1] * wx
    bottom = grids[k, y1, x0] * (1.0 - wx) + grids[k, y1, x1] * wx
    return top * (1.0 - wy) + bottom * wy


@cuda.jit
def _occluded(src, base, boxes, step0, queue, per_image, total, h, w, c, channels_first, reuse,
              out):
    """``reuse`` > 0: ``out`` holds the copies of the steps ``reuse`` before these, and a
    slot that held the same image then gets only its old box restored and its new box
    occluded (as the CPU kernel patches its slots): a few percent of the image's bytes."""
    b, s = cuda.blockIdx.y, cuda.blockIdx.z
    step = step0 + s
    item = b * queue + step
    if step >= queue or item >= total:
        return
    i, p = item // per_image, item % per_image
    y0, y1, x0, x1 = boxes[p, 0], boxes[p, 1], boxes[p, 2], boxes[p, 3]
    before = item - reuse
    patch = reuse > 0 and step >= reuse and before // per_image == i
    old = before % per_image if patch else p
    v0, v1, u0, u1 = boxes[old, 0], boxes[old, 1], boxes[old, 2], boxes[old, 3]
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for q in range(start, h * w, cuda.gridDim.x * cuda.blockDim.x):
        y = q // w  # one division a pixel, not one an element: they are slow on a GPU
        x = q - y * w
        inside = y0 <= y < y1 and x0 <= x < x1
        if patch and not inside and not (v0 <= y < v1 and u0 <= x < u1):
            continue  # the slot already holds this pixel of this image
        for ch in range(c):
            at = _offset(q, ch, h * w, c, channels_first)
            out[s, b, at] = base[i, at] if inside else src[i, at]


@cuda.jit
def _masked(src, base, grids, shifts, up_h, up_w, step0, queue, per_image, total, h, w, c,
            channels_first, reuse, out):
    b, s = cuda.blockIdx.y, cuda.blockIdx.z
    item = b * queue + step0 + s
    if step0 + s >= queue or item >= total:
        return
    i, k = item // per_image, item % per_image
    dy, dx = shifts[k, 0], shifts[k, 1]
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for q in range(start, h * w, cuda.gridDim.x * cuda.blockDim.x):
        y = q // w
        x = q - y * w
        m = _mask_value(grids, k, dy, dx, y, x, up_h, up_w)
        for ch in range(c):
            at = _offset(q, ch, h * w, c, channels_first)
            out[s, b, at] = src[i, at] * m + base[i, at] * (1.0 - m)


KERNELS = {"occluded": _occluded, "masked": _masked}


@cuda.jit
def _filter(x, idx, w, rows, out):
    """One pass of ``filters.apply_separable`` over (N, H, W, C): along the rows
    (``rows``: out[k, o, x, c] = sum_t w[o, t] * x[k, idx[o, t], x, c]) or along the
    columns (out[k, y, o, c] = sum_t w[o, t] * x[k, y, idx[o, t], c]), taps in order."""
    k = cuda.blockIdx.y
    taps = idx.shape[1]
    width, c = out.shape[2], out.shape[3]
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for e in range(start, out.shape[1] * width * c, cuda.gridDim.x * cuda.blockDim.x):
        y = e // (width * c)
        j = e - y * width * c
        xx = j // c
        ch = j - xx * c
        o = y if rows else xx
        acc = np.float32(0.0)
        for t in range(taps):
            wt = w[o, t]
            if wt != 0.0:
                if rows:
                    acc += wt * x[k, idx[o, t], xx, ch]
                else:
                    acc += wt * x[k, y, idx[o, t], ch]
        out[k, y, xx, ch] = acc


@cuda.jit
def _normalize(x, mix, mean, inv_std, channels_first, out):
    """out[k] = (sum_j mix[k, j] * x[..., j] - mean[k]) * inv_std[k], flat per image in
    out's layout: ``x`` (N, H, W, 3), ``out`` (N, L)."""
    i = cuda.blockIdx.y
    h, w = x.shape[1], x.shape[2]
    c = mix.shape[0]
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    for q in range(start, h * w, cuda.gridDim.x * cuda.blockDim.x):
        y = q // w
        xx = q - y * w
        for k in range(c):
            v = mix[k, 0] * x[i, y, xx, 0] + mix[k, 1] * x[i, y, xx, 1] \
                + mix[k, 2] * x[i, y, xx, 2]
            out[i, _offset(q, k, h * w, c, channels_first)] = (v - mean[k]) * inv_std[k]


def _blocks(work: int, threads: int) -> int:
    return max(1, min(math.ceil(work / threads), 64))


def separable(x, rows: tuple, cols: tuple, threads: int = THREADS, stream=0):
    """``filters.apply_separable`` on the device: ``x`` (N, H, W, C) device array, taps
    ``(idx, w)`` per axis as device arrays; a new (N, h, w, C) device array."""
    n, _, width, c = x.shape
    h_out, w_out = rows[0].shape[0], cols[0].shape[0]
    tall = cuda.device_array((n, h_out, width, c), np.float32, stream=stream)
    _filter[(_blocks(tall.size // n, threads), n), threads, stream](x, *rows, True, tall)
    out = cuda.device_array((n, h_out, w_out, c), np.float32, stream=stream)
    _filter[(_blocks(out.size // n, threads), n), threads, stream](tall, *cols, False, out)
    return out


def normalize(x, mix, mean, inv_std, channels_first: bool, out, threads: int = THREADS,
              stream=0):
    """``filters.to_model_input`` on the device, for images already at the model's size:
    ``x`` (N, H, W, 3) into ``out`` (N, L); the tables as device arrays."""
    n, h, w, _ = x.shape
    _normalize[(_blocks(h * w, threads), n), threads, stream](x, mix, mean, inv_std,
                                                              channels_first, out)


def launch(name: str, tables: tuple, src, base, step0: int, queue: int, per_image: int,
           total: int, shape: tuple[int, int, int], channels_first: bool, out,
           threads: int = THREADS, stream=0, reuse: int = 0):
    """Write the copies of steps ``step0 ..`` into ``out`` (``(steps, B, L)`` device
    array; steps past the last are left alone): kernel ``name`` of :data:`KERNELS` with
    its per-perturbation ``tables`` (device arrays and scalars: occluded ``(boxes,)``,
    masked ``(grids, shifts, up_h, up_w)``). ``shape`` is one image's ``(H, W, C)``.
    ``reuse`` > 0 says ``out`` holds the copies of the steps ``reuse`` earlier, which a
    kernel may patch. Any ``threads`` per block is correct (each thread strides over the
    image). Asynchronous on ``stream``."""
    h, w, c = shape
    # enough blocks per slot to cover an image's pixels once, at most 64: each thread
    # then loops over the rest of its slot
    grid = (_blocks(h * w, threads), out.shape[1], out.shape[0])
    KERNELS[name][grid, threads, stream](src, base, *tables, step0, queue, per_image, total,
                                         h, w, c, channels_first, reuse, out)
