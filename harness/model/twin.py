"""The randomised twin of a model, for the sanity measure (docs/measures.md, "sanity";
Adebayo et al. 2018, "Sanity checks for saliency maps"): the same graph with every
floating-point weight tensor (an initializer of two or more dimensions: convolution and
matrix weights) redrawn i.i.d. normal with that tensor's own mean and standard
deviation, seeded by the run seed, the twin's index and the tensor's name. Biases and normalisation
parameters (one dimension) are kept. The twin lives in memory: the file, and its
external data, are only read.
"""

from __future__ import annotations

import zlib

import numpy as np

_STREAM = zlib.crc32(b"randomised-twin")
_FLOATS = {1, 10, 11, 16}  # TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def randomise(proto, seed: int, index: int = 0) -> int:
    """Redraw the weight tensors of ``proto`` (a ModelProto with its data loaded) in
    place for twin ``index`` (the first twin's draw is the one a single twin had);
    returns how many were redrawn."""
    from onnx import numpy_helper

    count = 0
    for init in proto.graph.initializer:
        if init.data_type not in _FLOATS or len(init.dims) < 2:
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


def randomised_twin(clf, seed: int, index: int = 0):
    """Twin ``index`` of an :class:`~harness.model.classifier.OnnxClassifier` (the same
    preprocessing and providers, a session of the redrawn graph), or None when the model
    has no weight tensor to redraw. Built once per model, seed and index; only the
    session of the twin in use is kept open."""
    import onnx

    twins = clf.__dict__.setdefault("_twins", {})
    for key, other in twins.items():  # one twin's session open at a time, not K
        if key != (seed, index) and other is not None:
            other.release()
    if (seed, index) not in twins:
        # with its external data, read only; an in-memory variant's own graph
        proto = onnx.load(str(clf.path)) if clf.source is None \
            else onnx.load_from_string(clf.source)
        twins[(seed, index)] = clf.with_graph(proto.SerializeToString()) \
            if randomise(proto, seed, index) else None
    return twins[(seed, index)]
