"""OnnxClassifier: one ONNX Runtime session per model, with its preprocessing.

Images come in as pixel-space ``(N, H, W, 3) float32 in [0, 1]`` RGB of any size; the
classifier resizes them to its input size, converts the colour order, normalises with
its own mean/std and lays them out (NCHW or NHWC) before the forward pass. Preprocessing
is read, in order of precedence, from a :class:`ModelSpec`, the ONNX ``metadata_props``
keys of docs/measures.md, and the input's declared shape.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path

import numpy as np

from harness.errors import HarnessError, NonFiniteOutput, excerpt
from harness.model.session import (
    Deadline,
    create_bounded,
    numeric_output,
    providers_of,
    with_outputs,
)
from harness.model.spec import (
    ModelSpec,
    infer_output_kind,
    merge,
    opset_of,
    over_the_batch,
    parse_metadata,
    per_channel,
)
from harness.model.vetting import (
    check_domains,
    check_graph,
    check_input_bytes,
    check_sizes,
    external_files,
    file_sha256,
)
from harness.numerics.filters import resize, to_model_input
from harness.numerics.pixels import to_float

_INPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                 "tensor(double)": np.float64}


class OnnxClassifier:
    """An ONNX image classifier with its preprocessing, run in batches.

    Args:
        path: the ``.onnx`` file.
        spec: declared preprocessing; overrides the model's metadata.
        providers: ONNX Runtime execution providers; ``None`` uses CUDA when a session
            really gets it, else CPU.
        threads: intra-op threads (default: all cores).
        batch_size: images per ``session.run`` for a model with a dynamic batch axis.
        timeout: seconds loading the model may take, and then each batch; a batch still
            running then is stopped (ONNX Runtime's terminate flag) and
            :class:`ModelTimeout` raised.

    Raises:
        HarnessError: the file is missing, not ONNX, or its input is not an image.
    """

    source = None  # the serialised graph of an in-memory variant (a twin); None: the file
    # The provider the maps must come from, part of the model's identity (a comparison
    # across providers must not be served maps another provider computed); None:
    # whichever provider the session got, as for any run.
    pinned = None
    # Every image in a run of its own: for a model whose outputs for one image depend on
    # the other images of its batch (dynamic quantisation scales activations per batch),
    # so that its maps are those of a deployment serving one image at a time.
    one_at_a_time = False
    # Perturbed copies are made and run on the GPU where the model runs there
    # (harness.salience.bound); False keeps them on the host path, to compare the two.
    bind_io = True

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
        self.external = external_files(proto, self.path)
        check_sizes(proto, self.path)
        check_domains(proto, self.path)
        check_graph(self.path)
        self.graph = proto.graph
        self._opset = opset_of(proto)
        meta = {p.key: p.value for p in proto.metadata_props}
        self.spec = merge(spec, parse_metadata(meta, self.path))
        self.name = self.spec.name or self.path.stem
        self.batch_size = int(batch_size)
        self.timeout = timeout
        self._threads = threads
        self._session = create_bounded(self.path, providers, threads, timeout)
        self.provider = self._session.get_providers()[0]
        # what a released session is reopened with: the providers, with their options,
        # that the first one got, so a model never changes provider midway
        self._providers = providers_of(self._session)
        self._variants = {}  # extra output names -> session of an in-memory copy
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
        self.mean = per_channel(self.spec.mean, 0.0, self.channels, "mean", self.path)
        self.std = per_channel(self.spec.std, 1.0, self.channels, "std", self.path)
        if np.any(self.std == 0):
            raise HarnessError(f"{self.path}: std contains 0")

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
        # one column: a binary detector's logit (or sigmoid probability) of class 1,
        # read as two classes (see run_prepared)
        self.single_logit = k == 1
        self.num_classes = 2 if self.single_logit else k if isinstance(k, int) else None
        if self.num_classes is not None and self.num_classes < 2:
            raise HarnessError(f"{self.path}: output {chosen.name!r} has {k} class(es); "
                               "the harness needs K >= 2 class scores")
        if self.spec.classes is not None and self.num_classes is not None \
                and len(self.spec.classes) != self.num_classes:
            raise HarnessError(f"{self.path}: {len(self.spec.classes)} class names declared for "
                               f"an output of {self.num_classes} classes")
        self.output_kind = self.spec.output or infer_output_kind(self.graph, chosen.name,
                                                                 self.single_logit)
        batch = over_the_batch(self.graph, chosen.name, len(chosen.shape), self._opset)
        if batch is not None:
            raise HarnessError(f"{self.path}: {excerpt(batch)} normalises the output over the "
                               "batch axis (axis 0): each image's scores would depend on the "
                               "other images of its batch; export it with the softmax over "
                               "the classes")

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in output order (``"0", "1", ...`` when undeclared)."""
        if self.spec.classes is not None:
            return self.spec.classes
        return tuple(str(i) for i in range(self.num_classes or 0))

    @property
    def family(self) -> str | None:
        return self.spec.family

    @property
    def execution(self) -> str:
        """The provider, with ``[iobinding]`` once perturbed copies ran bound on its
        device, ``[incremental]`` once occlusion recomputed only what windows change
        (``incremental-refused``: its self-check refused that): what the results record
        as this model's provider."""
        marks = sorted(p for p in self.__dict__.get("io_paths", ()) if p != "host")
        return f"{self.provider}[{','.join(marks)}]" if marks else self.provider

    @property
    def rows_per_run(self) -> int | None:
        """Rows each ``session.run`` must get (the model's fixed batch axis, or 1 when it
        runs one image at a time); None: any number."""
        return 1 if self.one_at_a_time else self.fixed_batch

    @functools.cached_property
    def sha256(self) -> str:
        """Identity of every byte the model loads (file and external data, or the
        in-memory variant's serialised graph)."""
        if self.source is not None:
            return hashlib.sha256(self.source).hexdigest()
        return file_sha256(self.path, self.external)

    def with_graph(self, data: bytes) -> OnnxClassifier:
        """A copy of this classifier running ``data``, a serialised variant of its model
        (a randomised twin, a quantised build), with the same preprocessing and on the
        providers, with their options, that this one got; the file is only read. The
        variant's input and output are checked as the model's were.

        Raises:
            HarnessError: ONNX Runtime cannot load the variant, or its input or output
                is not what an image classifier takes.
        """
        import onnx

        clone = copy.copy(self)
        # a session's own and the head's caches, and the identity: the variant's, not
        # the model's
        for own in ("_twins", "_bound_buffers", "_cam_head", "_cam_checked", "io_paths",
                    "sha256", "_prefix", "_incremental_plans", "_incremental_sessions",
                    "_incremental_checked"):
            clone.__dict__.pop(own, None)
        clone._session = create_bounded(self.path, self._providers, self._threads,
                                        self.timeout, data)
        clone.source, clone._variants, clone.forward_passes = data, {}, 0
        variant = onnx.load_from_string(data)
        clone.graph = variant.graph
        clone._opset = opset_of(variant)
        clone._read_input()
        clone._read_output()
        return clone

    # -- sessions ------------------------------------------------------------------

    @property
    def session(self):
        """The ONNX Runtime session, opened again on first use after :meth:`release`."""
        if self._session is None:
            self._session = create_bounded(self.path, self._providers, self._threads,
                                           self.timeout, self.source)
        return self._session

    def open_variant(self, data: bytes):
        """A session of ``data``, a serialised graph made from this model's (a part of
        it, say), on the providers, with their options, that this model got."""
        return create_bounded(self.path, self._providers, self._threads, self.timeout, data)

    def release(self) -> None:
        """Close the sessions this model holds (its own, the copies exposing inner
        tensors, the device buffers bound to them) and drop its randomised twins: a run
        of many models holds one model's at a time, so its memory and threads do not
        grow with the number of models. Whatever runs next opens them again."""
        self._session = None
        self._variants = {}
        self.__dict__.pop("_bound_buffers", None)
        self.__dict__.pop("_incremental_sessions", None)
        # the twins go with their graphs (a serialised copy of the model each): drawn from
        # the seed, they are built the same again if anything asks for them
        for twin in self.__dict__.pop("_twins", {}).values():
            if twin is not None:
                twin.release()

    # -- running -------------------------------------------------------------------

    def preprocess(self, images: np.ndarray) -> np.ndarray:
        """Pixel-space ``(N, H, W, 3) float32 in [0, 1]`` (or uint8) RGB -> the model's
        input tensor, resized, colour-converted, normalised and laid out, still float32
        (:meth:`run_prepared` casts to a float16 or float64 input)."""
        x = to_float(images)
        return to_model_input(resize(x, self.input_size), self.color, self.mean, self.std,
                              self.layout == "NCHW")

    def needs_resize(self, image_size: tuple[int, int]) -> bool:
        """Whether pixel images of ``(height, width)`` must be resized for this model.
        When not, preprocessing is pointwise per pixel, so blending two preprocessed
        images equals preprocessing their blend (salience kernels use this)."""
        return tuple(image_size) != self.input_size

    def forward(self, images: np.ndarray, prepared: bool = False,
                extra_outputs: tuple[str, ...] = ()):
        """Raw class outputs (logits or probabilities, see ``output_kind``) for pixel-space
        ``(N, H, W, 3)`` images, preprocessed and run in batches of ``batch_size``
        (``prepared=True``: the images are already the output of :meth:`preprocess`).

        ``extra_outputs`` names inner tensors to return too (see :meth:`run_prepared`).

        Returns:
            ``(N, K) float32``; with ``extra_outputs``, ``(outputs, [arrays])``.

        Raises:
            NonFiniteOutput: some rows came out NaN or infinite (``rows`` index ``images``).
        """
        step = self.batch_size
        chunks, extras = [], [[] for _ in extra_outputs]
        for start in range(0, len(images), step):
            part = images[start:start + step]
            try:
                result = self.run_prepared(part if prepared else self.preprocess(part),
                                           extra_outputs)
            except NonFiniteOutput as exc:
                raise exc.remapped(np.arange(start, start + len(part))) from None
            out, arrays = result if extra_outputs else (result, [])
            chunks.append(out)
            for kept, array in zip(extras, arrays, strict=True):
                kept.append(array)
        outputs = np.concatenate(chunks) if chunks else np.zeros((0, self.num_classes or 2),
                                                                  np.float32)
        if not extra_outputs:
            return outputs
        return outputs, [np.concatenate(e) if e else np.zeros((0,), np.float32) for e in extras]

    def run_prepared(self, batch: np.ndarray, extra: tuple[str, ...] = ()):
        """Run already-preprocessed model input ``(B, ...)`` -> ``(B, K) float32``; one
        forward pass counted per row. A model with a fixed batch axis gets its rows in
        chunks of that size, the last one padded (one at a time: see
        :attr:`rows_per_run`).

        ``extra`` names inner tensors to return too, from an in-memory copy of the model
        that exposes them as outputs: the result is then ``(outputs, [arrays])``.
        """
        rows = len(batch)
        step = self.rows_per_run or rows
        session = self._variant(extra) if extra else self.session
        names = [self.output_name, *extra]
        chunks = [[] for _ in names]
        # one watch over the chunks: a model run in many small chunks (a fixed batch
        # axis, one image at a time) would otherwise start a timer thread per chunk
        with Deadline(self.timeout) as deadline:
            for start in range(0, rows, step):
                part = batch[start:start + step]
                if len(part) < step:
                    part = np.concatenate([part, np.repeat(part[-1:], step - len(part),
                                                           axis=0)])
                feed = {self.input_name: part.astype(self.input_dtype, copy=False)}
                values = deadline.run(lambda options, feed=feed: session.run(names, feed,
                                                                             options),
                                      self.path, len(part))
                for name, chunk, value in zip(names, chunks, values, strict=True):
                    chunk.append(numeric_output(value, len(part), name, self.path))
        # one chunk (a dynamic batch axis) needs no copy: a feature map can be large
        arrays = [(c[0] if len(c) == 1 else np.concatenate(c))[:rows] for c in chunks]
        out = arrays[0].reshape(rows, -1)
        if self.single_logit:
            out = two_classes(out, self.output_kind)
        self.forward_passes += rows
        if out.shape[1] < 2:
            raise HarnessError(f"{self.path}: output {self.output_name!r} has {out.shape[1]} "
                               "class score(s); the harness needs K >= 2")
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise NonFiniteOutput(self.name, np.flatnonzero(bad))
        return (out, arrays[1:]) if extra else out

    def _variant(self, extra: tuple[str, ...]):
        """The session exposing ``extra`` (built once per set of names)."""
        key = tuple(extra)
        if key not in self._variants:
            self._variants[key] = with_outputs(self.path, key, self.session, self._threads,
                                                 self.timeout, self.source)
        return self._variants[key]

    def inner_tensors(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every tensor the graph's nodes compute (those whose type its operators fix)
        for a few pixel ``images``, from a temporary copy of the model exposing them
        all: the shapes the graph really computes, whatever the file declares, and the
        values a check of another computation compares against. Not a counted pass.
        """
        session = with_outputs(self.path, None, self.session, self._threads, self.timeout,
                               self.source)
        x = self.preprocess(images)
        if self.fixed_batch and len(x) != self.fixed_batch:
            x = np.repeat(x[:1], self.fixed_batch, axis=0)
        feed = {self.input_name: x.astype(self.input_dtype, copy=False)}
        wanted = [o.name for o in session.get_outputs()]
        with Deadline(self.timeout) as deadline:
            values = deadline.run(lambda options: session.run(wanted, feed, options),
                                  self.path, len(images))
        found = {name: np.asarray(v) for name, v in zip(wanted, values, strict=True)}
        found[self.input_name] = feed[self.input_name]
        return found

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


def two_classes(column: np.ndarray, kind: str) -> np.ndarray:
    """A binary detector's one output column as two classes: probability p becomes
    (1 - p, p); logit z becomes (-z / 2, z / 2), whose softmax is (1 - sigmoid(z),
    sigmoid(z)) and whose class logits are +-z up to the factor 1/2."""
    if column.shape[1] != 1:
        return column
    if kind == "probabilities":
        return np.concatenate([1.0 - column, column], axis=1).astype(np.float32)
    return np.concatenate([-column / 2, column / 2], axis=1).astype(np.float32)
