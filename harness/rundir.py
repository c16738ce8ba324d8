"""The run folder: every file a ``harness run`` writes, read back by ``--resume``,
``leaderboard``, ``compare``, ``gate`` and ``report``.

While the run is under way, ``plan.json`` holds its settings and the identity of its
inputs (written before any work starts) and ``units.log`` gets one line per finished
unit, appended and flushed to disk once the unit's maps are safely in the cache; a line
cut short by a kill is ignored (that unit is simply redone). A finished run adds
``scores.parquet``, ``per_image.parquet``, ``pairs.parquet``, ``families.parquet``,
``examples.npz``, ``run.json`` and the leaderboard files, each written atomically
(temporary file, then rename), the leaderboard last, so a run that dies midway leaves
none behind.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from harness.errors import HarnessError, first_line
from harness.io import atomic_path, own_folder


class RunDir:
    """One run folder."""

    PLAN = "plan.json"
    UNITS = "units.log"
    SCORES = "scores.parquet"
    PER_IMAGE = "per_image.parquet"
    PAIRS = "pairs.parquet"
    FAMILIES = "families.parquet"
    EXAMPLES = "examples.npz"
    INFO = "run.json"
    LEADERBOARD = "leaderboard"  # .parquet, .csv and .md
    PARITY = "parity.parquet"  # a parity run's comparison, and as Markdown:
    PARITY_TEXT = "parity.md"
    REPORT = "report.html"

    def __init__(self, path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- while the run is under way ------------------------------------------------

    @contextlib.contextmanager
    def owned(self):
        """Hold the folder for one job: the harness's (:func:`harness.io.own_folder`:
        a folder of the user's is refused) and locked, so that a second job into it
        stops with one line instead of mixing its files with this one's. The lock goes
        with the process, so a killed run leaves none behind; a folder this job made and
        left empty (it failed before writing anything) is removed again."""
        made = not self.path.exists()
        marker = own_folder(self.path, "run folder")
        try:
            with open(marker, "rb") as handle:
                if not _lock(handle):
                    raise HarnessError(f"{self.path}: another harness job is writing to "
                                       "this folder; wait for it to finish or name another "
                                       "--out")
                yield self
        except BaseException:
            if made and [p.name for p in self.path.iterdir()] == [marker.name]:
                marker.unlink()
                self.path.rmdir()
            raise

    def clear_results(self) -> None:
        """Remove a previous run's results, so a new run that fails or is killed leaves
        no leaderboard of other inputs behind to be gated."""
        for name in (self.SCORES, self.PER_IMAGE, self.PAIRS, self.FAMILIES, self.EXAMPLES,
                     self.INFO, self.REPORT, self.PARITY, self.PARITY_TEXT,
                     *(f"{self.LEADERBOARD}.{suffix}" for suffix in ("parquet", "csv", "md"))):
            (self / name).unlink(missing_ok=True)

    def start(self, settings: dict, inputs: dict) -> None:
        """Write the plan: the settings (JSON-ready) and the inputs' identity; a previous
        run's journal here is dropped, since its units belong to other inputs."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_json(self / self.PLAN, {"settings": settings, "inputs": inputs})
        (self / self.UNITS).unlink(missing_ok=True)

    def plan(self) -> dict:
        """The plan of the run started here."""
        path = self / self.PLAN
        if not path.is_file():
            raise HarnessError(f"{self.path}: nothing to resume (no {self.PLAN}; is it the "
                               "--out folder of a `harness run`?)")
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HarnessError(f"{path}: cannot read ({first_line(exc)})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("settings"), dict) \
                or not isinstance(doc.get("inputs"), dict):
            raise HarnessError(f"{path}: not the plan of a harness run (it needs its "
                               "'settings' and 'inputs'); start a new run")
        return doc

    def check_inputs(self, inputs: dict) -> None:
        """Refuse to resume when the images or models changed since the run started: the
        finished units would describe other inputs."""
        before = self.plan().get("inputs", {})
        for what in ("image_set_hash", "models"):
            if before.get(what) != inputs.get(what):
                raise HarnessError(f"{self.path}: the {what.replace('_', ' ')} changed since "
                                   "this run started; start a new run instead of resuming")

    def finished(self) -> set[str]:
        """Ids of the units recorded as finished (a torn last line is skipped)."""
        path = self / self.UNITS
        if not path.is_file():
            return set()
        lines = path.read_bytes().split(b"\n")
        return {line.decode("utf-8", "replace") for line in lines[:-1] if line}

    def record(self, unit) -> None:
        """Journal a finished unit (anything with an ``id``)."""
        with open(self / self.UNITS, "a", encoding="utf-8") as fh:
            fh.write(unit.id + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    # -- a finished run ------------------------------------------------------------

    def write_results(self, tables: dict, info: dict, examples: dict | None, board,
                      rendered: dict[str, str]) -> None:
        """Write a finished run: ``tables`` (file name -> Polars frame: the scores, the
        per-image values, the pairs), the example maps (if any), run.json, then the
        leaderboard (``board`` as parquet, and ``rendered``: suffix -> text)."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name, frame in tables.items():
            with atomic_path(self / name) as tmp:
                frame.write_parquet(tmp)
        if examples:
            import numpy as np

            with atomic_path(self / self.EXAMPLES) as tmp:
                np.savez_compressed(tmp, **examples)
        _write_json(self / self.INFO, info)
        with atomic_path(self / f"{self.LEADERBOARD}.parquet") as tmp:
            board.write_parquet(tmp)
        for suffix, text in rendered.items():
            with atomic_path(self / f"{self.LEADERBOARD}.{suffix}") as tmp:
                tmp.write_text(text)

    def table(self, name: str):
        """One of the Parquet files of a finished run, as a Polars frame."""
        import polars as pl

        path = self / name
        if not path.is_file():
            if name != self.SCORES and (self / self.SCORES).is_file():
                raise HarnessError(f"{self.path}: no {name}; the run was made by an older "
                                   "harness: run it again")
            raise HarnessError(f"{self.path}: no {name} here; is it the output folder of a "
                               "finished `harness run`?")
        try:
            return pl.read_parquet(path)
        except Exception as exc:  # polars raises several error types for a damaged file
            raise HarnessError(f"{path}: cannot read ({first_line(exc)})") from None

    def info(self) -> dict:
        """run.json of a finished run ({} when absent).

        Raises:
            HarnessError: it is not a JSON object (damaged, or edited by hand).
        """
        path = self / self.INFO
        if not path.is_file():
            return {}
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise HarnessError(f"{path}: not the run.json of a harness run "
                               f"({first_line(exc, 80)})") from None
        if not isinstance(doc, dict):
            raise HarnessError(f"{path}: not the run.json of a harness run (not a JSON "
                               "object)")
        return doc


def _lock(handle) -> bool:
    """An exclusive, non-blocking lock on an open file; False when another holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_json(path: Path, doc: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
