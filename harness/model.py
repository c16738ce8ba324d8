"""OnnxClassifier: one ONNX Runtime session per model, with its preprocessing.

Images come in as pixel-space ``(N, H, W, 3) float32 in [0, 1]`` RGB of any size; the
classifier resizes them to its input size, converts the colour order, normalises with
its own mean/std and lays them out (NCHW or NHWC) before the forward pass. Preprocessing
is read, in order of precedence, from a :class:`ModelSpec`, the ONNX ``metadata_props``
keys of SPEC section 5, and the input's declared shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import os
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, first_line
from harness.imaging import resize, to_model_input
from harness.model_checks import check_domains, check_external_data, check_graph, check_input_bytes

_LAYOUTS = ("NCHW", "NHWC")
_COLORS = ("RGB", "BGR", "L")
_OUTPUT_KINDS = ("logits", "probabilities")
_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                 "tensor(double)": np.float64}
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


class ModelTimeout(HarnessError):
    """A batch did not finish within the model's time limit."""


class NonFiniteOutput(HarnessError):
    """The model returned NaN or infinity; ``rows`` indexes the offending input rows."""

    def __init__(self, model_name: str, rows: np.ndarray):
        self.model_name = model_name
        self.rows = np.asarray(rows)
        super().__init__(self.describe(self.rows))

    def describe(self, image_indices) -> str:
        shown = ", ".join(str(int(i)) for i in list(image_indices)[:10])
        more = " ..." if len(image_indices) > 10 else ""
        return f"model {self.model_name} returned NaN or infinite scores for images {shown}{more}"


def _parse_metadata(props: dict[str, str], path: Path) -> ModelSpec:
    """Read the ``harness.*`` metadata keys (SPEC section 5) into a ModelSpec."""

    def floats(key):
        try:
            return tuple(float(v) for v in props[key].split(","))
        except ValueError:
            raise HarnessError(
                f"{path}: metadata {key}={props[key]!r} is not a comma-separated list of numbers"
            ) from None

    def choice(key, allowed):
        value = props[key].strip()
        if value.upper() in {a.upper() for a in allowed}:
            return next(a for a in allowed if a.upper() == value.upper())
        raise HarnessError(f"{path}: metadata {key}={value!r} must be one of {', '.join(allowed)}")

    fields = {}
    if "harness.input_size" in props:
        size = floats("harness.input_size")
        if len(size) != 2 or min(size) < 1:
            raise HarnessError(f"{path}: metadata harness.input_size must be 'height,width'")
        fields["input_size"] = (int(size[0]), int(size[1]))
    if "harness.mean" in props:
        fields["mean"] = floats("harness.mean")
    if "harness.std" in props:
        fields["std"] = floats("harness.std")
    if "harness.layout" in props:
        fields["layout"] = choice("harness.layout", _LAYOUTS)
    if "harness.color" in props:
        fields["color"] = choice("harness.color", _COLORS)
    if "harness.output" in props:
        fields["output"] = choice("harness.output", _OUTPUT_KINDS)
    if "harness.classes" in props:
        fields["classes"] = tuple(c.strip() for c in props["harness.classes"].split(","))
    if "harness.family" in props:
        fields["family"] = props["harness.family"].strip() or None
    return ModelSpec(**fields)


def _merge(primary: ModelSpec | None, fallback: ModelSpec) -> ModelSpec:
    if primary is None:
        return fallback
    return dataclasses.replace(
        fallback,
        **{f.name: getattr(primary, f.name) for f in dataclasses.fields(ModelSpec)
           if getattr(primary, f.name) is not None},
    )


def nvidia_gpu_visible() -> bool:
    """Cheap check before asking ONNX Runtime for CUDA, which logs a screen of load
    errors on a machine without a GPU."""
    if os.name == "nt":
        return True
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")


def _session_options(threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count() or 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Numba's workers share these cores: a spinning ONNX Runtime pool would starve them.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 4  # failures are raised as one line each, not logged twice
    return so


def _create_session(path: Path, providers, threads, model_bytes: bytes | None = None):
    """A session for the file at ``path`` (or for ``model_bytes``, an in-memory variant
    of it; ``path`` then only names it in errors)."""
    import onnxruntime as ort

    if providers is None:
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers() and nvidia_gpu_visible():
            if hasattr(ort, "preload_dlls"):
                with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                    ort.preload_dlls()
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    so = _session_options(threads)
    wants_cuda = any(p == "CUDAExecutionProvider" or (isinstance(p, tuple) and p[0] ==
                     "CUDAExecutionProvider") for p in providers)
    try:
        if wants_cuda:
            # A CUDA provider that fails to load falls back to CPU; we report which one
            # the session really got instead of printing ONNX Runtime's load errors.
            ort.set_default_logger_severity(4)
        try:
            return ort.InferenceSession(model_bytes if model_bytes is not None else str(path),
                                        so, providers=providers)
        finally:
            if wants_cuda:
                ort.set_default_logger_severity(2)
    except Exception as exc:  # ONNX Runtime raises its own untyped errors
        raise HarnessError(f"{path}: ONNX Runtime cannot load this model: "
                           f"{first_line(exc)}") from None


class OnnxClassifier:
    """An ONNX image classifier with its preprocessing, run in batches.

    Args:
        path: the ``.onnx`` file.
        spec: declared preprocessing; overrides the model's metadata.
        providers: ONNX Runtime execution providers; ``None`` uses CUDA when a session
            really gets it, else CPU.
        threads: intra-op threads (default: all cores).
        batch_size: images per ``session.run`` for a model with a dynamic batch axis.
        timeout: seconds one batch may take; a batch still running then is stopped
            (ONNX Runtime's terminate flag) and :class:`ModelTimeout` raised.

    Raises:
        HarnessError: the file is missing, not ONNX, or its input is not an image.
    """

    def __init__(self, path, spec: ModelSpec | None = None, providers=None,
                 threads: int | None = None, batch_size: int = 64,
                 timeout: float | None = None):
        import onnx

        self.path = Path(path)
        if not self.path.is_file():
            raise HarnessError(f"{self.path}: no such model file")
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception:
            raise HarnessError(f"{self.path}: not an ONNX model (the file does not parse as "
                               "an ONNX protobuf)") from None
        if not proto.graph.node:
            raise HarnessError(f"{self.path}: not an ONNX model (its graph has no nodes)")
        check_external_data(proto, self.path)
        check_domains(proto, self.path)
        check_graph(self.path)
        self.graph = proto.graph
        meta = {p.key: p.value for p in proto.metadata_props}
        self.spec = _merge(spec, _parse_metadata(meta, self.path))
        self.name = self.spec.name or self.path.stem
        self.batch_size = int(batch_size)
        self.timeout = timeout
        self.session = _create_session(self.path, providers, threads)
        self.provider = self.session.get_providers()[0]
        self._threads = threads
        self._variants = {}  # extra output names -> session of an in-memory copy
        self._cam_head = None
        self._read_input()
        self._read_output()
        self.forward_passes = 0

    # -- introspection -------------------------------------------------------------

    def _read_input(self):
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise HarnessError(f"{self.path}: model has {len(inputs)} inputs ({names}); an "
                               "image classifier takes one")
        inp = inputs[0]
        self.input_name = inp.name
        shape = list(inp.shape)
        if len(shape) != 4:
            raise HarnessError(f"{self.path}: input {inp.name!r} has shape {shape}, not an image "
                               "batch (N, C, H, W) or (N, H, W, C)")
        if inp.type not in _INPUT_DTYPES:
            raise HarnessError(f"{self.path}: input {inp.name!r} has type {inp.type}; "
                               "supported are float32, float16 and float64")
        self.input_dtype = _INPUT_DTYPES[inp.type]

        def fixed(d):
            return d if isinstance(d, int) and d > 0 else None

        layout = self.spec.layout
        if layout is None:
            if fixed(shape[1]) in (1, 3):
                layout = "NCHW"
            elif fixed(shape[3]) in (1, 3):
                layout = "NHWC"
            else:
                raise HarnessError(f"{self.path}: cannot tell the layout of input shape {shape}; "
                                   "declare harness.layout (NCHW or NHWC)")
        self.layout = layout
        c_dim, h_dim, w_dim = (shape[1], shape[2], shape[3]) if layout == "NCHW" else (
            shape[3], shape[1], shape[2])
        channels = fixed(c_dim) or (1 if self.spec.color == "L" else 3)
        if channels not in (1, 3):
            raise HarnessError(f"{self.path}: input {inp.name!r} has {channels} channels in "
                               f"layout {layout}; an image model takes 1 or 3")
        color = self.spec.color or ("L" if channels == 1 else "RGB")
        if (color == "L") != (channels == 1):
            raise HarnessError(f"{self.path}: colour {color} does not match the input's "
                               f"{channels} channel(s)")
        self.color = color
        self.channels = channels
        size = (fixed(h_dim), fixed(w_dim))
        if self.spec.input_size is not None:
            if None not in size and size != tuple(self.spec.input_size):
                raise HarnessError(f"{self.path}: declared input size {self.spec.input_size} "
                                   f"differs from the model's input shape {shape}")
            size = tuple(self.spec.input_size)
        if None in size:
            raise HarnessError(f"{self.path}: the input size is dynamic ({shape}); declare "
                               "harness.input_size, e.g. '224,224'")
        self.input_size = (int(size[0]), int(size[1]))
        check_input_bytes(self.path, (channels, *self.input_size),
                          np.dtype(self.input_dtype).itemsize)
        self.fixed_batch = fixed(shape[0])
        self.mean = self._per_channel(self.spec.mean, 0.0, "mean")
        self.std = self._per_channel(self.spec.std, 1.0, "std")
        if np.any(self.std == 0):
            raise HarnessError(f"{self.path}: std contains 0")

    def _per_channel(self, values, default, what):
        if values is None:
            return np.full(self.channels, default, np.float32)
        if len(values) == 1:
            values = values * self.channels
        if len(values) != self.channels:
            raise HarnessError(f"{self.path}: {what} has {len(values)} values for "
                               f"{self.channels} channel(s)")
        return np.asarray(values, np.float32)

    def _read_output(self):
        outputs = self.session.get_outputs()
        names = [o.name for o in outputs]
        if self.spec.output_name is not None:
            if self.spec.output_name not in names:
                raise HarnessError(f"{self.path}: no output named {self.spec.output_name!r}; "
                                   f"outputs are {', '.join(names)}")
            chosen = outputs[names.index(self.spec.output_name)]
        else:
            ranked = [o for o in outputs if len(o.shape) == 2]
            if not ranked:
                raise HarnessError(f"{self.path}: no output of shape (N, classes); outputs are "
                                   + ", ".join(f"{o.name} {o.shape}" for o in outputs))
            chosen = ranked[0]
        self.output_name = chosen.name
        k = chosen.shape[-1] if chosen.shape else None
        self.num_classes = k if isinstance(k, int) else None
        if self.num_classes is not None and self.num_classes < 2:
            raise HarnessError(f"{self.path}: output {chosen.name!r} has {k} class(es); "
                               "the harness needs K >= 2 class scores")
        self.output_kind = self.spec.output or self._infer_output_kind(chosen.name)

    def _infer_output_kind(self, output_name: str) -> str:
        """``probabilities`` when the output comes from a Softmax (through reshapes), else
        ``logits``. Declare ``harness.output`` to override."""
        producers = {out: node for node in self.graph.node for out in node.output}
        name = output_name
        while name in producers:
            node = producers[name]
            if node.op_type == "Softmax":
                return "probabilities"
            if node.op_type not in _PASS_THROUGH or not node.input:
                break
            name = node.input[0]
        return "logits"

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in output order (``"0", "1", ...`` when undeclared)."""
        if self.spec.classes is not None:
            return self.spec.classes
        return tuple(str(i) for i in range(self.num_classes or 0))

    @property
    def family(self) -> str | None:
        return self.spec.family

    @functools.cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    # -- running -------------------------------------------------------------------

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Pixel-space ``(N, H, W, 3) float32 in [0, 1]`` (or uint8) RGB -> the model's
        input tensor, resized, colour-converted, normalised and laid out, still float32
        (:meth:`run_prepared` casts to a float16 or float64 input)."""
        x = np.asarray(images)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / 255.0
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB images, got shape {x.shape}")
        return to_model_input(resize(x, self.input_size), self.color, self.mean, self.std,
                              self.layout == "NCHW")

    def needs_resize(self, image_size: tuple[int, int]) -> bool:
        """Whether pixel images of ``(height, width)`` must be resized for this model.
        When not, preprocessing is pointwise per pixel, so blending two preprocessed
        images equals preprocessing their blend (salience kernels use this)."""
        return tuple(image_size) != self.input_size

    def forward(self, images: np.ndarray, prepared: bool = False) -> np.ndarray:
        """Raw class outputs (logits or probabilities, see ``output_kind``) for pixel-space
        ``(N, H, W, 3)`` images, preprocessed and run in batches of ``batch_size``
        (``prepared=True``: the images are already the output of :meth:`preprocess`).

        Returns:
            ``(N, K) float32``.

        Raises:
            NonFiniteOutput: some rows came out NaN or infinite (``rows`` index ``images``).
        """
        step = self.batch_size
        chunks = []
        for start in range(0, len(images), step):
            try:
                part = images[start:start + step]
                chunks.append(self.run_prepared(part if prepared else self.preprocess(part)))
            except NonFiniteOutput as exc:
                raise NonFiniteOutput(self.name, exc.rows + start) from None
        if not chunks:
            return np.zeros((0, self.num_classes or 2), np.float32)
        return np.concatenate(chunks)

    def run_prepared(self, batch: np.ndarray, extra: tuple[str, ...] = ()):
        """Run already-preprocessed model input ``(B, ...)`` -> ``(B, K) float32``; one
        forward pass counted per row. A model with a fixed batch axis gets its rows in
        chunks of that size, the last one padded.

        ``extra`` names inner tensors to return too, from an in-memory copy of the model
        that exposes them as outputs: the result is then ``(outputs, [arrays])``.
        """
        rows = len(batch)
        step = self.fixed_batch or rows
        session = self._variant(extra) if extra else self.session
        names = [self.output_name, *extra]
        chunks = [[] for _ in names]
        for start in range(0, rows, step):
            part = batch[start:start + step]
            if len(part) < step:
                part = np.concatenate([part, np.repeat(part[-1:], step - len(part), axis=0)])
            feed = {self.input_name: part.astype(self.input_dtype, copy=False)}
            for chunk, value in zip(chunks, self._run(session, names, feed), strict=True):
                chunk.append(np.asarray(value, np.float32))
        arrays = [np.concatenate(c)[:rows] for c in chunks]
        out = arrays[0].reshape(rows, -1)
        self.forward_passes += rows
        if out.shape[1] < 2:
            raise HarnessError(f"{self.path}: output {self.output_name!r} has {out.shape[1]} "
                               "class score(s); the harness needs K >= 2")
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(self.name, np.flatnonzero(bad))
        return (out, arrays[1:]) if extra else out

    def _run(self, session, names, feed):
        """``session.run`` with the per-batch time limit, and ONNX Runtime's run-time
        failures (a shape the graph cannot take, a failing kernel) as one clear line."""
        import threading

        import onnxruntime as ort

        options = ort.RunOptions()
        options.log_severity_level = 4  # we report failures ourselves, in one line
        timer = None
        if self.timeout:
            timer = threading.Timer(self.timeout, setattr, (options, "terminate", True))
            timer.start()
        try:
            return session.run(names, feed, options)
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            if options.terminate:
                raise ModelTimeout(f"{self.path}: a batch of {len(next(iter(feed.values())))} "
                                   f"did not finish within --model-timeout {self.timeout:g} s"
                                   ) from None
            raise HarnessError(f"{self.path}: ONNX Runtime failed running the model: "
                               f"{first_line(exc)}") from None
        finally:
            if timer is not None:
                timer.cancel()

    def _variant(self, extra: tuple[str, ...]):
        """A session of an in-memory copy of the model with ``extra`` inner tensors as
        additional outputs (built once per set of names; the file is not touched)."""
        key = tuple(extra)
        if key not in self._variants:
            import onnx

            proto = onnx.load(str(self.path))
            inferred = onnx.shape_inference.infer_shapes(proto)
            types = {v.name: v.type.tensor_type.elem_type for v in
                     list(inferred.graph.value_info) + list(inferred.graph.output)}
            present = {o.name for o in proto.graph.output}
            for name in key:
                if name not in present:
                    proto.graph.output.append(onnx.helper.make_tensor_value_info(
                        name, types.get(name) or onnx.TensorProto.FLOAT, None))
            providers = [self.provider] + (["CPUExecutionProvider"]
                                           if self.provider != "CPUExecutionProvider" else [])
            self._variants[key] = _create_session(self.path, providers, self._threads,
                                                  proto.SerializeToString())
        return self._variants[key]

    def cam_head(self):
        """The global-average-pool + linear head CAM reads (found once).

        Raises:
            HarnessError: the model has no such head; the message says what it has.
        """
        if self._cam_head is None:
            from harness.salience.cam import NoCamHead, find_cam_head

            try:
                self._cam_head = find_cam_head(self.graph, self.output_name)
            except NoCamHead as exc:
                raise NoCamHead(f"{self.path}: {exc}") from None
        return self._cam_head

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities ``(N, K) float32`` for pixel-space images."""
        out = self.forward(images)
        if self.output_kind == "probabilities":
            return out
        z = out - out.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def __repr__(self):
        return (f"OnnxClassifier({self.name!r}, input={self.input_size}, layout={self.layout}, "
                f"color={self.color}, output={self.output_kind}, provider={self.provider})")
