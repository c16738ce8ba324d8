"""Vetting an untrusted ONNX file before ONNX Runtime sees it.

Models under evaluation often come from outside the team. Before a session is created:
``onnx.checker`` must accept the graph; external-data references must stay inside the
model's folder (no absolute paths, no ``..``); the weights and constant-shaped
tensors it declares must stay within :mod:`harness.limits`; every operator domain must
be one ONNX Runtime implements or one the file defines itself (a model-local function).
The model's identity hashes every byte it loads, external data included.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, excerpt, first_line
from harness.limits import CONSTANT_BYTES, INPUT_BYTES, WEIGHT_BYTES

# Operator domains ONNX Runtime's CPU and CUDA builds implement.
KNOWN_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc",
                 "com.microsoft.experimental", "ai.onnx.preview.training",
                 "ai.onnx.training", "com.ms.internal.nhwc", "org.pytorch.aten"}



def external_files(proto, path: Path) -> list[Path]:
    """The external-data files the model at ``path`` loads, in a fixed order; refuses a
    location outside the model's folder."""
    folder = path.parent.resolve()
    files = set()
    for tensor in _all_tensors(proto):
        if tensor.data_location != tensor.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        if not location or "\0" in location:
            raise HarnessError(f"{path}: tensor {excerpt(tensor.name)} has an external-data "
                               f"location {excerpt(location)} that names no file; refused")
        target = Path(location)
        if target.is_absolute() or ".." in target.parts:
            raise HarnessError(f"{path}: tensor {tensor.name!r} points its data at "
                               f"{excerpt(location)}, outside the model's folder; refused")
        if folder not in (folder / target).resolve().parents:
            raise HarnessError(f"{path}: tensor {tensor.name!r} points its data at "
                               f"{excerpt(location)}, which resolves outside the model's folder; "
                               "refused")
        files.add(folder / target)
    return sorted(files)


def file_sha256(path: Path, external: list[Path]) -> str:
    """sha256 over every byte a model loads: the ``.onnx`` file, then each external-data
    file with its name (a retrained checkpoint may keep its ``.onnx`` byte for byte)."""
    digest = hashlib.sha256()
    for i, file in enumerate([path, *external]):
        if i:
            digest.update(b"\0" + file.name.encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _all_tensors(proto):
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def constant_tensors(graph) -> dict:
    """The graph's constant tensors by name: its initializers and the tensor values of
    its ``Constant`` nodes (as TensorProtos, not read)."""
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors[node.output[0]] = attr.t
    return tensors


def _itemsize(tensor) -> int:
    """Bytes per element of an ONNX tensor's type (0 for strings and undefined types)."""
    from onnx import helper

    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 0


def check_sizes(proto, path: Path) -> None:
    """Refuse a model whose declared weights, or a constant-shaped ConstantOfShape,
    exceed their limits: a file of a few hundred bytes can declare gigabytes, all
    allocated before a single image runs."""
    weights = sum(_itemsize(t) * math.prod(t.dims) for t in _all_tensors(proto))
    most = WEIGHT_BYTES.value()
    if weights > most:
        raise HarnessError(f"{path}: declares {weights / 2**30:,.2f} GiB of weights, over the "
                           f"limit of {most / 2**30:g} GiB; raise it with {WEIGHT_BYTES.env}")
    shapes = constant_tensors(proto.graph)
    most = CONSTANT_BYTES.value()
    for node in proto.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in shapes:
            continue
        from onnx import numpy_helper

        dims = numpy_helper.to_array(shapes[node.input[0]]).reshape(-1)
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        itemsize = 4 if value is None else _itemsize(value)  # float32 zeros by default
        need = itemsize * math.prod(int(d) for d in dims) if (dims >= 0).all() else 0
        if need > most:
            raise HarnessError(f"{path}: ConstantOfShape {excerpt(node.name or node.output[0])} "
                               f"would fill {need / 2**30:,.2f} GiB, over the limit of "
                               f"{most / 2**30:g} GiB; raise it with {CONSTANT_BYTES.env}")


def check_domains(proto, path: Path) -> None:
    """Refuse operators from domains no ONNX Runtime build implements."""
    local = {f.domain for f in proto.functions}
    graphs = [proto.graph] + [f for f in proto.functions]
    for graph in graphs:
        for node in graph.node:
            if node.domain not in KNOWN_DOMAINS and node.domain not in local:
                raise HarnessError(f"{path}: operator {node.op_type!r} of custom domain "
                                   f"{node.domain!r} is not available in ONNX Runtime; "
                                   "register its custom-op library or export without it")


def check_graph(path: Path) -> None:
    """``onnx.checker`` on the file (by path, so models over 2 GB work too)."""
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError, OSError) as exc:
        raise HarnessError(f"{path}: fails onnx.checker: {first_line(exc)}") from None


def check_input_bytes(path: Path, shape: tuple[int, ...], itemsize: int) -> None:
    """Refuse an input whose one image would need absurd memory."""
    need = itemsize
    for d in shape:
        need *= d
    most = INPUT_BYTES.value()
    if need > most:
        dims = " x ".join(str(d) for d in shape)
        raise HarnessError(f"{path}: one input image of {dims} would take "
                           f"{need / 2**30:,.1f} GiB (limit {most / 2**30:g} GiB, raised with "
                           f"{INPUT_BYTES.env}); refused")
