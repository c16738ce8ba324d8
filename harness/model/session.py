"""ONNX Runtime sessions: which providers, how many threads, copies of a model that
expose inner tensors, and runs bounded by a time limit with failures as one line."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from pathlib import Path

from harness.errors import HarnessError, ModelTimeout, excerpt, first_line

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
IOBINDING = "iobinding"  # the I/O path of copies run bound on the model's device
# TF32 convolutions (ONNX Runtime's CUDA default) moved the zoo's headline values by up
# to 0.015 against CPU; in full float32 the difference fell to 0.0009. Scores that
# depend on the card a run lands on would make the gate flaky, so full precision it is.
# cuDNN's exhaustive search (the default) times the convolution algorithms afresh in
# every process and may pick another, rounding differently, in the next: a cluster's
# workers and a rerun would not give the in-process scores. Its heuristic picks the same
# one for the same shapes on the same card.
CUDA_OPTIONS = {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}
# Seconds one model may spend loading, and then on one batch, unless the user says
# otherwise (--model-timeout): a hostile or broken model must not hang a CI job.
DEFAULT_TIMEOUT = 300.0


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


def default_providers() -> list[str]:
    """CUDA (in full float32, :data:`CUDA_OPTIONS`) then CPU when ONNX Runtime has the
    CUDA provider and a GPU is there, else CPU (with the CUDA and cuDNN libraries of the
    ``cuda`` extra preloaded)."""
    import onnxruntime as ort

    if CUDA in ort.get_available_providers() and nvidia_gpu_visible():
        if hasattr(ort, "preload_dlls"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
                ort.preload_dlls()
        return [(CUDA, dict(CUDA_OPTIONS)), CPU]
    return [CPU]


def create_session(path: Path, providers, threads, model_bytes: bytes | None = None):
    """A session for the file at ``path`` (or for ``model_bytes``, an in-memory variant
    of it; ``path`` then only names it in errors). ``providers=None``: see
    :func:`default_providers`."""
    import onnxruntime as ort

    providers = default_providers() if providers is None else providers
    so = _session_options(threads)
    wants_cuda = any(p == CUDA or (isinstance(p, tuple) and p[0] == CUDA) for p in providers)
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


def create_bounded(path: Path, providers, threads, timeout: float | None,
                   model_bytes: bytes | None = None):
    """:func:`create_session` given at most ``timeout`` seconds (ONNX Runtime cannot
    stop a session's optimisation, e.g. the folding of a huge constant product: the
    work is left to finish in a background thread and the model is refused).

    Raises:
        ModelTimeout: the session was not ready in time.
    """
    if not timeout:
        return create_session(path, providers, threads, model_bytes)
    made = {}

    def create():
        try:
            made["session"] = create_session(path, providers, threads, model_bytes)
        except Exception as exc:  # handed to the caller's thread below
            made["error"] = exc

    worker = threading.Thread(target=create, daemon=True, name=f"load {path.name}")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ModelTimeout(f"{path}: ONNX Runtime did not finish loading the model within "
                           f"--model-timeout {timeout:g} s")
    if "error" in made:
        raise made["error"]
    return made["session"]


def with_outputs(path: Path, extra: tuple[str, ...] | None, session, threads,
                 timeout: float | None = None, source: bytes | None = None):
    """A session of an in-memory copy of the model at ``path`` (or of the serialised
    model ``source``) with the inner tensors ``extra`` as additional outputs (None:
    every tensor a node computes whose type the operators fix; the file is not
    touched), on the providers, with their options, that ``session`` got."""
    import onnx

    proto = onnx.load(str(path)) if source is None else onnx.load_from_string(source)
    types = tensor_types(proto)
    if extra is None:
        extra = tuple(dict.fromkeys(o for n in proto.graph.node for o in n.output
                                    if o in types))
    present = {o.name for o in proto.graph.output}
    for name in extra:
        if name not in present:
            proto.graph.output.append(onnx.helper.make_tensor_value_info(
                name, types.get(name) or onnx.TensorProto.FLOAT, None))
    return create_bounded(path, providers_of(session), threads, timeout,
                          proto.SerializeToString())


def inferred_graph(proto):
    """The graph with every tensor's type and shape as ONNX's inference derives them
    from the operators; the file's own ``value_info`` is left out, since it may say
    anything."""
    import onnx

    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    bare.graph.ClearField("value_info")
    return onnx.shape_inference.infer_shapes(bare).graph


def tensor_types(proto) -> dict[str, int]:
    """Every tensor's ONNX element type as the graph's operators make it."""
    inferred = inferred_graph(proto)
    return {v.name: v.type.tensor_type.elem_type for v in
            list(inferred.value_info) + list(inferred.output) + list(inferred.input)
            if v.type.tensor_type.elem_type}


def providers_of(session) -> list[tuple[str, dict]]:
    """The providers ``session`` got, with their options: what a variant of its model
    is opened with, so it runs where and how the model runs."""
    options = session.get_provider_options()
    return [(p, options.get(p, {})) for p in session.get_providers()]


def run_options():
    """Options for one run: failures are reported by us, in one line; no GPU graph is
    captured or replayed (ONNX Runtime's Python layer looks that entry up on every run
    and, when unset, pays for a C++ exception: 0.1 ms, a tenth of a small model's batch
    on a GPU)."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4
    options.add_run_config_entry("gpu_graph_id", "-1")
    return options


class Deadline:
    """ONNX Runtime's terminate flag raised once a run outlasts ``timeout`` seconds, by
    one watching thread for all the runs of a loop rather than a timer thread started
    per run, which on a GPU would cost a noticeable share of a small model's batch.
    :meth:`run` arms it for each run."""

    def __init__(self, timeout: float | None):
        self.options = run_options()
        self.timeout = timeout
        self._due = None
        self._stop = threading.Event()
        if timeout:
            threading.Thread(target=self._watch, daemon=True, name="deadline").start()

    def arm(self):
        """Start the clock of the next run."""
        if self.timeout:
            self._due = time.monotonic() + self.timeout

    def run(self, call, path: Path, rows: int):
        """``call(options)``, one run of ``rows`` rows, stopped at the deadline, with
        ONNX Runtime's run-time failures (a shape the graph cannot take, a failing
        kernel) as one clear line.

        Raises:
            ModelTimeout: the run did not finish in time.
            HarnessError: ONNX Runtime failed.
        """
        self.arm()
        try:
            return call(self.options)
        except Exception as exc:  # ONNX Runtime raises its own untyped errors
            if self.options.terminate:
                raise ModelTimeout(f"{path}: a batch of {rows} did not finish within "
                                   f"--model-timeout {self.timeout:g} s") from None
            raise HarnessError(f"{path}: ONNX Runtime failed running the model: "
                               f"{first_line(exc)}") from None

    def _watch(self):
        while not self._stop.is_set():
            due = self._due
            left = self.timeout if due is None else due - time.monotonic()
            if left <= 0:
                self.options.terminate = True
                return
            self._stop.wait(left)

    def close(self):
        self._stop.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def numeric_output(value, rows: int, name: str, path: Path):
    """A session output as float32 with one row per input row.

    Raises:
        HarnessError: the output holds no numbers, or not one row per image.
    """
    import numpy as np

    value = np.asarray(value)
    if value.dtype.kind not in "biuf":
        raise HarnessError(f"{path}: output {excerpt(name)} holds {value.dtype} values, "
                           "not numbers")
    if value.ndim == 0 or len(value) != rows:
        raise HarnessError(f"{path}: output {excerpt(name)} has shape {value.shape} "
                           f"for a batch of {rows}; it must have one row per image")
    return value.astype(np.float32, copy=False)
