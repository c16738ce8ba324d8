"""Where units of work run: in this process (the default) or on a Dask cluster.

An engine takes :class:`harness.execution.plan.Task` objects and yields, as each finishes,
``(task, outcome)`` where the outcome is ``(provider, groups)`` from
:func:`harness.execution.worker.compute` or the :class:`HarnessError` that stopped the unit (a
model that returns NaN or times out fails its units; the run goes on). Results do not
depend on the engine: a unit computes the same bytes wherever it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path

from harness.errors import HarnessError
from harness.model.spec import ModelSpec

ENGINES = ("in-process", "dask")


@dataclasses.dataclass(frozen=True)
class ModelRef:
    """How a worker opens a model: the path must hold the same file on every machine
    (``identity`` is checked, see :func:`harness.execution.plan.model_identity`)."""

    path: Path
    spec: ModelSpec
    identity: str
    batch_size: int
    timeout: float | None


class InProcessEngine:
    """Runs units one after another on the classifiers the run already opened."""

    name = "in-process"

    def __init__(self, classifiers: dict):
        self.classifiers = classifiers  # model name -> OnnxClassifier

    def run(self, refs: dict[str, ModelRef], tasks: Iterable) -> Iterator[tuple]:
        from harness.execution.worker import compute

        for task in tasks:
            clf = self.classifiers[task.unit.model]
            try:
                groups = compute(clf, task)
            except HarnessError as exc:
                yield task, exc
            else:  # after computing: the execution names the I/O path the copies took
                yield task, (clf.execution, groups)

    def close(self) -> None:
        """Nothing to release: the classifiers belong to the caller."""


def make_engine(name: str, classifiers: dict, scheduler: str | None = None,
                workers: int | None = None):
    """The engine called ``name`` (one of :data:`ENGINES`)."""
    if name == "in-process":  # scheduler and workers were refused with it by build_config
        return InProcessEngine(classifiers)
    if name == "dask":
        try:
            from harness.execution.dask_engine import DaskEngine
        except ImportError:
            raise HarnessError("--engine dask needs Dask: pip install 'salience-harness[dask]' "
                               "(in a clone: pip install -e '.[dask]')") from None
        return DaskEngine(scheduler, workers)
    raise HarnessError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
