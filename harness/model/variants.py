"""Deployment variants of a model, built in memory with ONNX Runtime's own tools: what a
model becomes when it is shipped in half precision or in 8-bit integers.

A builder takes the model (a ``ModelProto`` with its weights loaded) and a calibration
source and returns the variant's ``ModelProto``; the input and output stay float32, so
the variant takes the same tensors as the model and its scores are read the same way.

- ``fp16``: every float tensor and operator in half precision
  (``onnxruntime.transformers.float16``, inputs and outputs kept float32).
- ``int8-dynamic``: weights of convolutions and matrix products in 8 bits, activations
  quantised on the fly per batch (``quantize_dynamic``).
- ``int8-static``: weights and activations in 8 bits (QDQ format), the activations'
  ranges calibrated (min-max) on the run's own images (``quantize_static``).

ONNX Runtime's quantisers read and write files: they work in a private temporary folder,
removed as soon as the variant is read back into memory. Nothing is written beside the
model, and the model's file is only read.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

# At most this many images calibrate int8-static: min-max ranges settle within a few
# batches, and every calibration batch keeps all of the model's activations.
CALIBRATION_IMAGES = 128
CALIBRATION_BATCH = 16

# A calibration source: () -> the model's input tensors, batch by batch.
Calibration = Callable[[], Iterable[np.ndarray]]


def fp16(proto, calibration: Calibration):
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(proto, keep_io_types=True)


def int8_dynamic(proto, calibration: Calibration):
    from onnxruntime.quantization import quantize_dynamic

    return _through_files(lambda out: quantize_dynamic(_without_shapes(proto), out))


def int8_static(proto, calibration: Calibration):
    from onnxruntime.quantization import CalibrationDataReader, quantize_static

    name = proto.graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration())

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {name: batch}

    return _through_files(lambda out: quantize_static(_without_shapes(proto), out, Reader()))


BUILDERS: dict[str, Callable] = {"fp16": fp16, "int8-dynamic": int8_dynamic,
                                 "int8-static": int8_static}


def build(builder: Callable, proto, calibration: Calibration) -> bytes:
    """The serialised variant that ``builder`` makes of ``proto`` (left untouched), with
    the model's metadata (its ``harness.*`` preprocessing keys) carried over, so that a
    variant saved with ``--save-variants`` runs as the model does.

    Raises:
        Exception: whatever the builder raises (an operator the quantiser cannot take):
            the caller lists the variant as failed with it.
    """
    import copy

    with _quiet_root_logger():
        variant = builder(copy.deepcopy(proto), calibration)
    topological_order(variant.graph)
    present = {p.key for p in variant.metadata_props}
    for prop in proto.metadata_props:
        if prop.key not in present:
            variant.metadata_props.add(key=prop.key, value=prop.value)
    return variant.SerializeToString()


def topological_order(graph) -> None:
    """Put ``graph``'s nodes in an order where each comes after the nodes it reads from
    (the float16 converter appends its input casts at the end: ONNX Runtime sorts them
    itself, but ``onnx.checker``, and so the harness's own vetting of a saved variant,
    refuses such a graph). Nodes already in order keep it."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle, or an input from nowhere: the checker will name it
            ordered += pending
            break
        for node in ready:
            available.update(node.output)
        ordered += ready
        taken = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in taken]
    # copies: clearing the repeated field below would invalidate the messages it held
    nodes = [type(n).FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(nodes)


def _without_shapes(proto):
    """The model without its recorded intermediate shapes: ONNX Runtime's quantisers
    infer them afresh and refuse a model whose recorded ones disagree with theirs (as
    some exporters' do for constant tensors)."""
    del proto.graph.value_info[:]
    return proto


def _through_files(quantise: Callable):
    """Run a quantiser that writes its output to a path, in a private temporary folder,
    and return the model it wrote (loaded into memory; the folder is removed)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="harness-variant-") as folder:
        out = Path(folder) / "variant.onnx"
        quantise(out)
        return onnx.load(str(out))


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantisers advise pre-processing on the root logger, which would
    print ``WARNING:root:...`` lines into the user's terminal for every variant."""
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(before)
