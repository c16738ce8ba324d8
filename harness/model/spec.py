"""What a model declares about itself: preprocessing and identity, from a zoo manifest
or the ONNX ``metadata_props`` keys of docs/measures.md. Imports neither Numba nor ONNX
Runtime, so reading manifests stays cheap."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, excerpt

LAYOUTS = ("NCHW", "NHWC")
COLORS = ("RGB", "BGR", "L")
OUTPUT_KINDS = ("logits", "probabilities")
# Ops that pass a tensor through unchanged at inference time, when looking for a Softmax.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Dropout"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Declared preprocessing and identity of a model; ``None`` fields are read from
    the ONNX metadata or inferred.

    Attributes:
        input_size: ``(height, width)`` the model consumes.
        mean, std: per channel, in [0, 1] pixel units, in the channel order the model
            consumes (after colour conversion): ``x_model = (x - mean) / std``.
        layout: ``"NCHW"`` or ``"NHWC"``.
        color: ``"RGB"``, ``"BGR"`` or ``"L"`` (grey, one channel).
        classes: class names in output order.
        output: ``"logits"`` or ``"probabilities"``.
        output_name: which graph output holds the class scores, for multi-output models.
        family: models differing only in training seed share a family (measure d).
        name: display name; the file stem by default.
    """

    input_size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None
    color: str | None = None
    classes: tuple[str, ...] | None = None
    output: str | None = None
    output_name: str | None = None
    family: str | None = None
    name: str | None = None


def pick(value, allowed, what: str) -> str:
    """``value`` as spelt in ``allowed`` (case and surrounding space ignored).

    Raises:
        HarnessError: not one of them; ``what`` names the setting.
    """
    if isinstance(value, str):
        found = [a for a in allowed if a.upper() == value.strip().upper()]
        if found:
            return found[0]
    raise HarnessError(f"{what}={excerpt(value)} must be one of {', '.join(allowed)}")


def parse_metadata(props: dict[str, str], path: Path) -> ModelSpec:
    """Read the ``harness.*`` metadata keys (docs/measures.md) into a ModelSpec."""

    def floats(key):
        try:
            return tuple(float(v) for v in props[key].split(","))
        except ValueError:
            raise HarnessError(
                f"{path}: metadata {key}={excerpt(props[key])} is not a comma-separated list of "
                "numbers"
            ) from None

    def choice(key, allowed):
        return pick(props[key], allowed, f"{path}: metadata {key}")

    fields = {}
    if "harness.input_size" in props:
        size = floats("harness.input_size")
        if len(size) != 2 or not all(math.isfinite(v) and v == int(v) and 1 <= v <= 1 << 16
                                     for v in size):
            raise HarnessError(f"{path}: metadata harness.input_size must be 'height,width' in "
                               "whole pixels (1 to 65536)")
        fields["input_size"] = (int(size[0]), int(size[1]))
    if "harness.mean" in props:
        fields["mean"] = floats("harness.mean")
    if "harness.std" in props:
        fields["std"] = floats("harness.std")
    if "harness.layout" in props:
        fields["layout"] = choice("harness.layout", LAYOUTS)
    if "harness.color" in props:
        fields["color"] = choice("harness.color", COLORS)
    if "harness.output" in props:
        fields["output"] = choice("harness.output", OUTPUT_KINDS)
    if "harness.classes" in props:
        fields["classes"] = tuple(c.strip() for c in props["harness.classes"].split(","))
    if "harness.family" in props:
        fields["family"] = props["harness.family"].strip() or None
    return ModelSpec(**fields)


def merge(primary: ModelSpec | None, fallback: ModelSpec) -> ModelSpec:
    """``primary``'s declared fields over ``fallback``'s."""
    if primary is None:
        return fallback
    return dataclasses.replace(
        fallback,
        **{f.name: getattr(primary, f.name) for f in dataclasses.fields(ModelSpec)
           if getattr(primary, f.name) is not None},
    )


def infer_output_kind(graph, output_name: str, single: bool = False) -> str:
    """``probabilities`` when the graph's output ``output_name`` comes from a Softmax
    (or, for a ``single`` output column, a Sigmoid) through reshapes, else ``logits``.
    Declare ``harness.output`` to override."""
    return "logits" if logits_before(graph, output_name, single) is None else "probabilities"


def opset_of(model_proto) -> int:
    """The version of the default ONNX operator set a model imports."""
    return next((o.version for o in model_proto.opset_import if o.domain in ("", "ai.onnx")), 1)


def over_the_batch(graph, output_name: str, rank: int, opset: int) -> str | None:
    """The final Softmax or LogSoftmax that normalises the output ``output_name`` (of
    ``rank`` axes) over the batch axis, by name, or None: through it each image's output
    depends on the other images of its batch (opsets before 13 normalise over every
    axis from ``axis`` on, so ``axis = 0`` takes in the whole batch)."""
    node = _final_node(graph, output_name)
    if node is None or node.op_type not in ("Softmax", "LogSoftmax"):
        return None
    axis = next((a.i for a in node.attribute if a.name == "axis"), -1 if opset >= 13 else 1)
    return (node.name or node.output[0]) if axis % max(rank, 1) == 0 else None


def logits_before(graph, output_name: str, single: bool = False) -> str | None:
    """The tensor a final Softmax (or, for a ``single`` output column, a Sigmoid) turns
    into the output ``output_name`` (through reshapes): the model's logits; None when
    the output is not made so."""
    node = _final_node(graph, output_name)
    if node is not None and (node.op_type == "Softmax"
                             or (single and node.op_type == "Sigmoid")):
        return node.input[0]
    return None


def _final_node(graph, output_name: str):
    """The node that makes ``output_name``, looking through reshapes, casts and
    identities; None where the chain ends at a graph input."""
    producers = {out: node for node in graph.node for out in node.output}
    node = producers.get(output_name)
    while node is not None and node.op_type in _PASS_THROUGH and node.input:
        node = producers.get(node.input[0])
    return node


def per_channel(values, default: float, channels: int, what: str, path) -> np.ndarray:
    """A declared mean or std as one float32 per channel (one value serves all; None:
    ``default``)."""
    if values is None:
        return np.full(channels, default, np.float32)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise HarnessError(f"{path}: {what} has {len(values)} values for {channels} channel(s)")
    return np.asarray(values, np.float32)
