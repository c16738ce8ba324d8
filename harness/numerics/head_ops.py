"""ONNX operators of a classifier head in NumPy, each with its vector-Jacobian product:
what Grad-CAM needs to differentiate the class score with respect to the last feature
map (harness.salience.head).

Every operator is a pair of plain functions over float64 arrays:
``forward(attrs, *inputs) -> output`` and ``backward(attrs, inputs, output, grad,
wanted) -> [gradient per input]`` (None for an input it does not differentiate, such as
a shape, or whose gradient is not ``wanted``: a weight's, for Grad-CAM).
``attrs`` is the node's attributes as a dict. Only what such heads use is here; a node
of any other kind is refused before anything is computed.
"""

from __future__ import annotations

import math

import numpy as np

_ERF = np.frompyfunc(math.erf, 1, 1)


def erf(x: np.ndarray) -> np.ndarray:
    return _ERF(x).astype(np.float64)


def _wants(wanted, k: int) -> bool:
    """Whether the gradient of input ``k`` is wanted (None: all are)."""
    return wanted is None or (k < len(wanted) and wanted[k])


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape`` (undo NumPy broadcasting)."""
    while grad.ndim > len(shape):
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def _axes(attrs, inputs, rank, position=1) -> tuple[int, ...] | None:
    """Axes from the attribute or (opset 13+/18+) the given input, made non-negative."""
    axes = attrs.get("axes")
    if axes is None and len(inputs) > position and inputs[position] is not None:
        axes = [int(a) for a in np.asarray(inputs[position]).reshape(-1)]
    if axes is None:
        return None
    return tuple(sorted(int(a) % rank for a in axes))


# -- shape -----------------------------------------------------------------------------

def _identity(attrs, x, *rest):
    return x


def _identity_back(attrs, inputs, out, g, wanted=None):
    return [g] + [None] * (len(inputs) - 1)


def _reshape_back(attrs, inputs, out, g, wanted=None):
    return [g.reshape(inputs[0].shape)] + [None] * (len(inputs) - 1)


def _flatten(attrs, x):
    axis = attrs.get("axis", 1) % max(x.ndim, 1)
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def _reshape(attrs, x, shape):
    target = [int(d) for d in np.asarray(shape).reshape(-1)]
    if not attrs.get("allowzero", 0):
        target = [x.shape[i] if d == 0 else d for i, d in enumerate(target)]
    return x.reshape(target)


def _squeeze(attrs, x, axes=None):
    found = _axes(attrs, [x, axes], x.ndim)
    return np.squeeze(x, axis=found) if found else np.squeeze(x)


def _unsqueeze(attrs, x, axes=None):
    rank = x.ndim + len(np.asarray(attrs.get("axes", axes)).reshape(-1))
    for axis in _axes(attrs, [x, axes], rank):
        x = np.expand_dims(x, axis)
    return x


def _transpose(attrs, x):
    return np.transpose(x, attrs.get("perm", tuple(reversed(range(x.ndim)))))


def _transpose_back(attrs, inputs, out, g, wanted=None):
    perm = attrs.get("perm", tuple(reversed(range(inputs[0].ndim))))
    return [np.transpose(g, np.argsort(perm))]


# -- pooling and reductions ------------------------------------------------------------

def _global_pool(attrs, x):
    return x.mean(axis=tuple(range(2, x.ndim)), keepdims=True)


def _global_pool_back(attrs, inputs, out, g, wanted=None):
    x = inputs[0]
    count = int(np.prod(x.shape[2:]))
    return [np.broadcast_to(g / count, x.shape)]  # a view: the same at every position


def _mean_axes(attrs, inputs, rank) -> tuple[int, ...]:
    """ReduceMean's axes; none given: every axis, or none with noop_with_empty_axes."""
    found = _axes(attrs, inputs, rank)
    if found is None:
        found = () if attrs.get("noop_with_empty_axes", 0) else tuple(range(rank))
    return found


def _reduce_mean(attrs, x, axes=None):
    return x.mean(axis=_mean_axes(attrs, [x, axes], x.ndim),
                  keepdims=bool(attrs.get("keepdims", 1)))


def _reduce_mean_back(attrs, inputs, out, g, wanted=None):
    x = inputs[0]
    found = _mean_axes(attrs, inputs, x.ndim)
    if not attrs.get("keepdims", 1):
        for axis in found:
            g = np.expand_dims(g, axis)
    count = int(np.prod([x.shape[a] for a in found])) if found else 1
    return [np.broadcast_to(g / count, x.shape)] + [None] * (len(inputs) - 1)


# -- linear ----------------------------------------------------------------------------

def _gemm(attrs, a, b, c=None):
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    out = attrs.get("alpha", 1.0) * (a @ b)
    return out if c is None else out + attrs.get("beta", 1.0) * c


def _gemm_back(attrs, inputs, out, g, wanted=None):
    a, b = inputs[0], inputs[1]
    alpha = attrs.get("alpha", 1.0)
    a_used = a.T if attrs.get("transA", 0) else a
    b_used = b.T if attrs.get("transB", 0) else b
    ga = alpha * g @ b_used.T
    gb = alpha * a_used.T @ g if _wants(wanted, 1) else None
    grads = [ga.T if attrs.get("transA", 0) else ga,
             None if gb is None else gb.T if attrs.get("transB", 0) else gb]
    if len(inputs) > 2 and inputs[2] is not None:
        grads.append(unbroadcast(attrs.get("beta", 1.0) * g, inputs[2].shape))
    return grads


def _matmul(attrs, a, b):
    return np.matmul(a, b)


def _matmul_back(attrs, inputs, out, g, wanted=None):
    a, b = inputs
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g.reshape(np.matmul(a2, b2).shape)
    ga = np.matmul(g2, np.swapaxes(b2, -1, -2)) if _wants(wanted, 0) else None
    gb = np.matmul(np.swapaxes(a2, -1, -2), g2) if _wants(wanted, 1) else None
    return [None if ga is None else unbroadcast(ga, a2.shape).reshape(a.shape),
            None if gb is None else unbroadcast(gb, b2.shape).reshape(b.shape)]


def _conv(attrs, x, w, b=None):
    """A 1 x 1 convolution (or any kernel on a 1 x 1 map with the padding that keeps it
    1 x 1): per position, a linear map of the channels."""
    m = _conv_matrix(attrs, x, w)
    out = np.matmul(m, x.reshape(len(x), x.shape[1], -1)).reshape((len(x), len(m)) + x.shape[2:])
    if b is not None:
        out = out + b.reshape((1, -1) + (1,) * (x.ndim - 2))
    return out


def _conv_matrix(attrs, x, w) -> np.ndarray:
    centre = tuple(k // 2 for k in w.shape[2:])
    return w[(slice(None), slice(None)) + centre]


def _conv_back(attrs, inputs, out, g, wanted=None):
    x, w = inputs[0], inputs[1]
    m = _conv_matrix(attrs, x, w)
    flat_g, flat_x = g.reshape(len(g), g.shape[1], -1), x.reshape(len(x), x.shape[1], -1)
    gx = np.matmul(m.T, flat_g).reshape(x.shape)
    gw = None
    if _wants(wanted, 1):
        gw = np.zeros_like(w)
        centre = tuple(k // 2 for k in w.shape[2:])
        gw[(slice(None), slice(None)) + centre] = np.matmul(
            flat_g, np.swapaxes(flat_x, 1, 2)).sum(axis=0)
    grads = [gx, gw]
    if len(inputs) > 2 and inputs[2] is not None:
        grads.append(g.sum(axis=(0,) + tuple(range(2, g.ndim))))
    return grads


def conv_supported(attrs, x_shape, w_shape) -> str | None:
    """Why this Conv is not one the head can differentiate, or None."""
    if attrs.get("group", 1) != 1:
        return "a grouped convolution"
    kernel = tuple(w_shape[2:])
    if any(s != 1 for s in attrs.get("strides", (1,) * len(kernel))) or \
            any(d != 1 for d in attrs.get("dilations", (1,) * len(kernel))):
        return "a strided or dilated convolution"
    if all(k == 1 for k in kernel):
        return None if not any(attrs.get("pads", ())) else "a padded 1x1 convolution"
    pads = attrs.get("pads", (0,) * 2 * len(kernel))
    keeps_one = all(s == 1 for s in x_shape[2:]) and all(
        k % 2 == 1 and pads[i] == pads[i + len(kernel)] == k // 2 for i, k in enumerate(kernel))
    return None if keeps_one else f"a {'x'.join(map(str, kernel))} convolution on a feature map"


# -- elementwise -----------------------------------------------------------------------

def _binary(fn, grads):
    def forward(attrs, a, b):
        return fn(a, b)

    def backward(attrs, inputs, out, g, wanted=None):
        a, b = inputs
        ga, gb = grads(a, b, out, g)
        return [unbroadcast(ga, np.shape(a)), unbroadcast(gb, np.shape(b))]

    return forward, backward


def _unary(fn, derivative):
    def forward(attrs, x):
        return fn(attrs, x)

    def backward(attrs, inputs, out, g, wanted=None):
        return [g * derivative(attrs, inputs[0], out)]

    return forward, backward


def _clip_bounds(attrs, low=None, high=None) -> tuple[float, float]:
    """Clip's bounds: the inputs (opset 11+), else the attributes, else unbounded."""
    return (attrs.get("min", -np.inf) if low is None else float(low),
            attrs.get("max", np.inf) if high is None else float(high))


def _clip(attrs, x, low=None, high=None):
    return np.clip(x, *_clip_bounds(attrs, low, high))


def _clip_back(attrs, inputs, out, g, wanted=None):
    x = inputs[0]
    low, high = _clip_bounds(attrs, *inputs[1:])
    return [g * ((x > low) & (x < high))] + [None] * (len(inputs) - 1)


def _hard_sigmoid(attrs, x):
    return np.clip(attrs.get("alpha", 0.2) * x + attrs.get("beta", 0.5), 0.0, 1.0)


def _hard_sigmoid_grad(attrs, x, out):
    alpha = attrs.get("alpha", 0.2)
    inner = alpha * x + attrs.get("beta", 0.5)
    return alpha * ((inner > 0) & (inner < 1))


def _gelu(attrs, x):
    if attrs.get("approximate", "none") == "tanh":
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _gelu_grad(attrs, x, out):
    if attrs.get("approximate", "none") == "tanh":
        k = np.sqrt(2 / np.pi)
        t = np.tanh(k * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * k * (1 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1 + erf(x / np.sqrt(2))) + x * np.exp(-0.5 * x ** 2) / np.sqrt(2 * np.pi)


# -- normalisation ---------------------------------------------------------------------

def _batch_norm(attrs, x, scale, bias, mean, var):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    inv = 1.0 / np.sqrt(var + attrs.get("epsilon", 1e-5))
    return (x - mean.reshape(shape)) * (scale * inv).reshape(shape) + bias.reshape(shape)


def _batch_norm_back(attrs, inputs, out, g, wanted=None):
    x, scale, _, _, var = inputs
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return [g * (scale / np.sqrt(var + attrs.get("epsilon", 1e-5))).reshape(shape),
            None, None, None, None]


def _layer_norm_axes(attrs, x) -> tuple[int, ...]:
    return tuple(range(attrs.get("axis", -1) % x.ndim, x.ndim))


def _layer_norm(attrs, x, scale, bias=None):
    axes = _layer_norm_axes(attrs, x)
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mu) / np.sqrt(var + attrs.get("epsilon", 1e-5)) * scale
    return y if bias is None else y + bias


def _layer_norm_back(attrs, inputs, out, g, wanted=None):
    x, scale = inputs[0], inputs[1]
    axes = _layer_norm_axes(attrs, x)
    count = int(np.prod([x.shape[a] for a in axes]))
    mu = x.mean(axis=axes, keepdims=True)
    inv = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=axes, keepdims=True)
                        + attrs.get("epsilon", 1e-5))
    xhat = (x - mu) * inv
    gh = g * scale
    gx = inv / count * (count * gh - gh.sum(axis=axes, keepdims=True)
                        - xhat * (gh * xhat).sum(axis=axes, keepdims=True))
    grads = [gx, unbroadcast(g * xhat, scale.shape)]
    if len(inputs) > 2 and inputs[2] is not None:
        grads.append(unbroadcast(g, inputs[2].shape))
    return grads


def _softmax(attrs, x):
    z = x - x.max(axis=attrs.get("axis", -1), keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=attrs.get("axis", -1), keepdims=True)


def _softmax_back(attrs, inputs, out, g, wanted=None):
    axis = attrs.get("axis", -1)
    return [out * (g - (g * out).sum(axis=axis, keepdims=True))]


def _log_softmax(attrs, x):
    return np.log(_softmax(attrs, x))


def _coerced(fn):
    """Softmax or LogSoftmax as opsets 1 to 12 define them: over the input flattened
    into 2-D at ``axis`` (default 1), i.e. over every axis from ``axis`` on at once."""
    def forward(attrs, x):
        axis = attrs.get("axis", 1) % max(x.ndim, 1)
        rows = int(np.prod(x.shape[:axis]))
        return fn({"axis": -1}, x.reshape(rows, -1)).reshape(x.shape)

    return forward


def _coerced_back(fn):
    def backward(attrs, inputs, out, g, wanted=None):
        x = inputs[0]
        axis = attrs.get("axis", 1) % max(x.ndim, 1)
        rows = int(np.prod(x.shape[:axis]))
        flat = fn({"axis": -1}, [x.reshape(rows, -1)], out.reshape(rows, -1),
                  g.reshape(rows, -1), wanted)
        return [flat[0].reshape(x.shape)]

    return backward


def _log_softmax_back(attrs, inputs, out, g, wanted=None):
    axis = attrs.get("axis", -1)
    return [g - np.exp(out) * g.sum(axis=axis, keepdims=True)]


def _sigmoid(attrs, x):
    return 1.0 / (1.0 + np.exp(-x))


def _float_slice(attrs, x, starts=None, ends=None, axes=None, steps=None):
    return x[_slice_index(attrs, x.ndim, starts, ends, axes, steps)]


def _slice_index(attrs, rank, starts, ends, axes, steps) -> tuple:
    """Slice's index (inputs from opset 10, attributes before)."""
    starts = attrs.get("starts") if starts is None else starts
    ends = attrs.get("ends") if ends is None else ends
    axes = attrs.get("axes") if axes is None else axes
    starts = [int(v) for v in np.asarray(starts).reshape(-1)]
    ends = [int(v) for v in np.asarray(ends).reshape(-1)]
    axes = range(len(starts)) if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
    steps = [1] * len(starts) if steps is None else [int(v) for v in
                                                     np.asarray(steps).reshape(-1)]
    index = [slice(None)] * rank
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[a % rank] = slice(s, e, st)
    return tuple(index)


def _float_slice_back(attrs, inputs, out, g, wanted=None):
    x = inputs[0]
    grad = np.zeros(x.shape, np.float64)
    grad[_slice_index(attrs, x.ndim, *(list(inputs[1:]) + [None] * (5 - len(inputs))))] = g
    return [grad] + [None] * (len(inputs) - 1)


def _pad_widths(attrs, x, pads, axes):
    pads = attrs.get("pads") if pads is None else pads
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    half = len(pads) // 2
    axes = range(x.ndim) if axes is None else [int(a) % x.ndim for a in
                                               np.asarray(axes).reshape(-1)]
    widths = [(0, 0)] * x.ndim
    for k, a in enumerate(axes):
        widths[a] = (pads[k], pads[k + half])
    return widths


def _pad(attrs, x, pads=None, value=None, axes=None):
    """Pad with a constant (the only mode a head is allowed); negative pads crop."""
    fill = attrs.get("value", 0.0) if value is None else float(np.asarray(value).reshape(-1)[0])
    widths = _pad_widths(attrs, x, pads, axes)
    grown = np.pad(x, [(max(b, 0), max(e, 0)) for b, e in widths], constant_values=fill)
    return grown[tuple(slice(max(-b, 0), grown.shape[i] - max(-e, 0))
                       for i, (b, e) in enumerate(widths))]


def _pad_back(attrs, inputs, out, g, wanted=None):
    x = inputs[0]
    widths = _pad_widths(attrs, x, inputs[1] if len(inputs) > 1 else None,
                         inputs[3] if len(inputs) > 3 else None)
    grad = np.zeros(x.shape, np.float64)
    inner = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))
    grad[inner] = g[tuple(slice(max(b, 0), g.shape[i] - max(e, 0))
                          for i, (b, e) in enumerate(widths))]
    return [grad] + [None] * (len(inputs) - 1)


def _pow_back(attrs, inputs, out, g, wanted=None):
    x, p = inputs
    return [g * p * np.power(x, p - 1), None]


OPS = {
    "Identity": (_identity, _identity_back),
    "Dropout": (_identity, _identity_back),
    "Flatten": (_flatten, _reshape_back),
    "Reshape": (_reshape, _reshape_back),
    "Squeeze": (_squeeze, _reshape_back),
    "Unsqueeze": (_unsqueeze, _reshape_back),
    "Transpose": (_transpose, _transpose_back),
    "GlobalAveragePool": (_global_pool, _global_pool_back),
    "AveragePool": (_global_pool, _global_pool_back),  # only over the whole map
    "ReduceMean": (_reduce_mean, _reduce_mean_back),
    "Gemm": (_gemm, _gemm_back),
    "MatMul": (_matmul, _matmul_back),
    "Conv": (_conv, _conv_back),
    "Add": _binary(np.add, lambda a, b, out, g: (g, g)),
    "Sub": _binary(np.subtract, lambda a, b, out, g: (g, -g)),
    "Mul": _binary(np.multiply, lambda a, b, out, g: (g * b, g * a)),
    "Div": _binary(np.divide, lambda a, b, out, g: (g / b, -g * a / b ** 2)),
    "Pow": (lambda attrs, x, p: np.power(x, p), _pow_back),
    "Relu": _unary(lambda attrs, x: np.maximum(x, 0), lambda attrs, x, out: x > 0),
    "LeakyRelu": _unary(lambda attrs, x: np.where(x > 0, x, attrs.get("alpha", 0.01) * x),
                        lambda attrs, x, out: np.where(x > 0, 1.0, attrs.get("alpha", 0.01))),
    "Clip": (_clip, _clip_back),
    "HardSigmoid": _unary(_hard_sigmoid, _hard_sigmoid_grad),
    "HardSwish": _unary(lambda attrs, x: x * np.clip(x / 6 + 0.5, 0, 1),
                        lambda attrs, x, out: np.where(x < -3, 0.0, np.where(
                            x > 3, 1.0, (2 * x + 3) / 6))),
    "Sigmoid": _unary(_sigmoid, lambda attrs, x, out: out * (1 - out)),
    "Tanh": _unary(lambda attrs, x: np.tanh(x), lambda attrs, x, out: 1 - out ** 2),
    "Erf": _unary(lambda attrs, x: erf(x),
                  lambda attrs, x, out: 2 / np.sqrt(np.pi) * np.exp(-x ** 2)),
    "Sqrt": _unary(lambda attrs, x: np.sqrt(x), lambda attrs, x, out: 0.5 / out),
    "Gelu": _unary(_gelu, _gelu_grad),
    # a float-to-float cast (a half-precision head's output cast back to float32): the
    # head is computed in float64 throughout, so it passes values and gradients as they
    # are; a cast to an integer type yields a shape, evaluated by SHAPE_OPS instead
    "Cast": (_identity, _identity_back),
    "BatchNormalization": (_batch_norm, _batch_norm_back),
    "LayerNormalization": (_layer_norm, _layer_norm_back),
    "Softmax": (_softmax, _softmax_back),
    "LogSoftmax": (_log_softmax, _log_softmax_back),
    "Softmax-1": (_coerced(_softmax), _coerced_back(_softmax_back)),
    "LogSoftmax-1": (_coerced(_log_softmax), _coerced_back(_log_softmax_back)),
    "Slice": (_float_slice, _float_slice_back),
    "Pad": (_pad, _pad_back),
}
# operators whose meaning changed with an opset: (op, first opset of today's meaning)
_CHANGED = {"Softmax": 13, "LogSoftmax": 13}


def kernel_for(op_type: str, opset: int) -> str:
    """The ``OPS`` entry that computes ``op_type`` as the model's ``opset`` defines it."""
    if op_type in _CHANGED and opset < _CHANGED[op_type]:
        return f"{op_type}-1"
    return op_type


# -- shape arithmetic (integer tensors: evaluated, never differentiated) ----------------

def _shape(attrs, x):
    return np.array(x.shape[attrs.get("start", 0):attrs.get("end", None)], np.int64)


def _slice(attrs, x, starts, ends, axes=None, steps=None):
    index = [slice(None)] * x.ndim
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    for a, s, e, st in zip(axes, starts, ends, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _cast(attrs, x):
    from onnx import helper

    return x.astype(helper.tensor_dtype_to_np_dtype(attrs["to"]))


SHAPE_OPS = {
    "Shape": _shape,
    "Gather": lambda attrs, x, i: np.take(x, i, axis=attrs.get("axis", 0)),
    "Concat": lambda attrs, *xs: np.concatenate(xs, axis=attrs["axis"]),
    "Slice": _slice,
    "Cast": _cast,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Reshape": _reshape,
    "Identity": _identity,
    "Add": lambda attrs, a, b: a + b,
    "Sub": lambda attrs, a, b: a - b,
    "Mul": lambda attrs, a, b: a * b,
    "Div": lambda attrs, a, b: a // b,
}
