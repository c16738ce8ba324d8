"""The randomised twin of a model, for the sanity measure (docs/measures.md, "sanity";
Adebayo et al. 2018, "Sanity checks for saliency maps"): the same graph with every
floating-point weight tensor (an initializer of two or more dimensions: convolution and
matrix weights) redrawn i.i.d. normal with that tensor's own mean and standard
deviation, seeded by the run seed, the twin's index and the tensor's name. Biases and normalisation
parameters (one dimension) are kept. The twin lives in memory: the file, and its
external data, are only read.
"""

from __future__ import annotations

import math
import zlib

import numpy as np

_STREAM = zlib.crc32(b"randomised-twin")
_FLOATS = {1, 10, 11, 16}  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def weight_order(proto) -> list[str]:
    """The weight tensors a twin redraws, from the output towards the input: ordered by
    the last node that reads each, latest first (the cascading test's order)."""
    weights = {i.name for i in proto.graph.initializer
               if i.data_type in _FLOATS and len(i.dims) >= 2}
    last = {}
    for position, node in enumerate(proto.graph.node):
        for name in node.input:
            if name in weights:
                last[name] = position
    return sorted(last, key=lambda name: -last[name])


def randomise(proto, seed: int, index: int = 0, top: int | None = None) -> int:
    """Redraw the weight tensors of ``proto`` (a ModelProto with its data loaded) in
    place for twin ``index`` (the first twin's draw is the one a single twin had), or
    with ``top`` only the ``top`` tensors nearest the output (:func:`weight_order`, the
    first twin's draws: the cascade); returns how many were redrawn."""
    from onnx import numpy_helper

    chosen = None if top is None else set(weight_order(proto)[:top])
    count = 0
    for init in proto.graph.initializer:
        if init.data_type not in _FLOATS or len(init.dims) < 2:
            continue
        if chosen is not None and init.name not in chosen:
            continue
        weights = numpy_helper.to_array(init)
        values = weights.astype(np.float64)
        which = (_STREAM, zlib.crc32(init.name.encode())) if not index else \
            (_STREAM, index, zlib.crc32(init.name.encode()))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=which))
        drawn = rng.normal(values.mean(), values.std(), weights.shape).astype(weights.dtype)
        init.CopyFrom(numpy_helper.from_array(drawn, init.name))
        count += 1
    return count


def randomised_twin(clf, seed: int, index: int = 0, step: tuple[int, int] | None = None):
    """Twin ``index`` of an :class:`~harness.model.classifier.OnnxClassifier` (the same
    preprocessing and providers, a session of the redrawn graph), or with ``step``
    ``(j, J)`` the cascade's twin: the top ceil(j / J * L) of the model's L weight
    tensors redrawn as the first twin draws them, the rest kept (step J is the first
    twin). None when the model has no weight tensor to redraw. Built once per model,
    seed, index and step; only the session of the twin in use is kept open."""
    import onnx

    key = (seed, index, step)
    twins = clf.__dict__.setdefault("_twins", {})
    for other_key, other in twins.items():  # one twin's session open at a time, not K
        if other_key != key and other is not None:
            other.release()
    if key not in twins:
        # with its external data, read only; an in-memory variant's own graph
        proto = onnx.load(str(clf.path)) if clf.source is None \
            else onnx.load_from_string(clf.source)
        redrawn = randomise(proto, seed, index) if step is None else randomise(
            proto, seed, 0, top=math.ceil(step[0] / step[1] * len(weight_order(proto))))
        twins[key] = clf.with_graph(proto.SerializeToString()) if redrawn else None
        if redrawn:  # the same graph with other weights: incremental occlusion's analysis
            for shared in ("_prefix", "_incremental_plans"):  # holds for it too
                if shared in clf.__dict__:
                    twins[key].__dict__[shared] = clf.__dict__[shared]
    return twins[key]
