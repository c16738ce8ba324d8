"""The Dask engine: units go to a ``distributed`` cluster, one task per unit.

Without a scheduler address a local cluster of single-threaded worker processes is
started on 127.0.0.1 (see :func:`local_cluster`: one worker per GPU with dask-cuda);
with one (``tcp://host:8786``) the run joins that cluster, which
may be a ``LocalCUDACluster`` (one worker per GPU) or span machines. Each worker opens a
model's ONNX Runtime session the first time one of its units needs it and keeps it for
the rest of the run. A worker that dies is replaced and its units rerun elsewhere (the
scheduler's ``allowed-failures``); the driver alone writes the cache.
"""

from __future__ import annotations

import os

from distributed import Client, LocalCluster, as_completed
from distributed.diagnostics.plugin import WorkerPlugin

from harness.errors import HarnessError, first_line

PLUGIN = "harness-sessions"


class _Sessions(WorkerPlugin):
    """Per worker: model identity -> its open :class:`OnnxClassifier`."""

    def setup(self, worker):
        self.models = {}

    def get(self, ref):
        from harness.execution.plan import model_identity
        from harness.model.classifier import OnnxClassifier

        if ref.identity not in self.models:
            clf = OnnxClassifier(ref.path, ref.spec, batch_size=ref.batch_size,
                                 timeout=ref.timeout, threads=_threads())
            if model_identity(clf) != ref.identity:
                raise HarnessError(f"{ref.path} on this worker is not the file the run "
                                   "was started with; every worker must see the same models")
            self.models[ref.identity] = clf
        return self.models[ref.identity]


def _threads() -> int:
    """ONNX Runtime threads of a worker: its share of the machine's cores."""
    return int(os.environ.get("HARNESS_WORKER_THREADS", "0")) or os.cpu_count() or 1


def _run_unit(ref, task):
    from distributed import get_worker

    from harness.execution.worker import compute

    try:
        clf = get_worker().plugins[PLUGIN].get(ref)
        groups = compute(clf, task)
        return clf.execution, groups
    except HarnessError as exc:
        # returned, not raised: a model's failure is a result, not a reason to retry
        return exc


def local_cluster(workers: int | None):
    """A cluster on 127.0.0.1 of single-threaded worker processes: with dask-cuda
    installed, an NVIDIA GPU visible and ONNX Runtime's CUDA provider, a
    ``LocalCUDACluster`` (one worker per GPU, the
    first ``workers`` GPUs when given); otherwise a ``LocalCluster`` of ``workers``
    workers (default: one per core). Each worker's ONNX Runtime and Numba get its share
    of the cores, so the workers do not fight over them."""
    import onnxruntime

    from harness.model.session import nvidia_gpu_visible

    cuda = None
    # a worker per GPU only pays when ONNX Runtime can use the GPUs; a CPU build there
    # is better served by a worker per core
    if nvidia_gpu_visible() and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        try:
            from dask_cuda import LocalCUDACluster as cuda
        except ImportError:
            pass
    cores = os.cpu_count() or 1
    kwargs = {"threads_per_worker": 1, "host": "127.0.0.1", "dashboard_address": None}
    if cuda is not None:
        n = workers or len(cuda_devices())
        return cuda(n_workers=workers, env=_worker_env(max(1, cores // max(n, 1))), **kwargs)
    n = workers or cores
    return LocalCluster(n_workers=n, processes=True, env=_worker_env(max(1, cores // n)),
                        **kwargs)


def cuda_devices() -> list[str]:
    """The GPUs a LocalCUDACluster would use: CUDA_VISIBLE_DEVICES, else every one
    ``nvidia-smi -L`` lists."""
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return visible.split(",")
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ["0"]
    return [line for line in listing.splitlines() if line.startswith("GPU ")] or ["0"]


def _worker_env(threads: int) -> dict[str, str]:
    return {"HARNESS_WORKER_THREADS": str(threads), "NUMBA_NUM_THREADS": str(threads),
            "OMP_WAIT_POLICY": "PASSIVE"}


class DaskEngine:
    """Runs units on a Dask cluster.

    Args:
        scheduler: address of a running scheduler, or None for a local cluster.
        workers: local cluster size (default: one per core); with a scheduler, the
            workers are whatever joined it.
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        self.cluster = None
        if workers is not None and workers < 1:
            raise HarnessError(f"--workers must be >= 1, got {workers}")
        try:
            if scheduler:
                if workers is not None:
                    raise HarnessError("--workers sets the size of a local cluster; with "
                                       "--scheduler the cluster's own workers are used")
                self.client = Client(scheduler, timeout="20s")
            else:
                self.cluster = local_cluster(workers)
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            self.close()
            raise HarnessError(f"cannot reach the Dask scheduler {scheduler or '(local)'} "
                               f"({first_line(exc)})") from None
        self.client.register_plugin(_Sessions(), name=PLUGIN)

    @property
    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def run(self, refs, tasks):
        """Submit units and yield them as they finish. Each task carries its shard's
        pixels, so a unit whose worker dies can be rerun anywhere; only a window of
        units is in flight at a time, which bounds what the scheduler holds."""
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        tasks = iter(tasks)
        window = 4 * max(self.workers, 1)
        futures = {}
        running = as_completed()

        def submit_next() -> None:
            task = next(tasks, None)
            if task is not None:
                future = self.client.submit(_run_unit, refs[task.unit.model], task,
                                            key=f"unit-{task.unit.id}", pure=False)
                futures[future] = task
                running.add(future)

        for _ in range(window):
            submit_next()
        for future in running:
            task = futures.pop(future)
            submit_next()
            try:
                outcome = future.result()
            except (KilledWorker, FutureCancelledError) as exc:
                outcome = HarnessError(f"unit {task.unit.id} kept killing the workers that "
                                       f"ran it ({first_line(exc)})")
            except ImportError as exc:
                raise HarnessError(f"a Dask worker cannot run the harness ({first_line(exc)}); "
                                   "install the same harness on every worker") from None
            yield task, outcome

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
