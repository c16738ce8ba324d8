"""What a run folder remembers while the run is under way, so ``harness run --resume``
can finish it after a kill (even ``kill -9``).

``plan.json`` holds the run's settings and the identity of its inputs, written before
any work starts; ``units.log`` gets one line per finished unit, appended and flushed to
disk once the unit's maps are safely in the cache. A line cut short by a kill is
ignored: that unit is simply redone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from harness.errors import HarnessError, first_line

PLAN_FILE = "plan.json"
UNITS_FILE = "units.log"


def write_plan(out: Path, settings: dict, inputs: dict) -> None:
    """Start a run folder: its settings (JSON-ready) and its inputs' identity; a
    previous run's journal there is dropped, since its units belong to other inputs."""
    from harness.io import atomic_path

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / PLAN_FILE) as tmp:
        tmp.write_text(json.dumps({"settings": settings, "inputs": inputs}, indent=2,
                                  sort_keys=True, default=str) + "\n")
    (out / UNITS_FILE).unlink(missing_ok=True)


def read_plan(run_dir: Path) -> dict:
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        raise HarnessError(f"{run_dir}: nothing to resume (no {PLAN_FILE}; is it the --out "
                           "folder of a `harness run`?)")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path}: cannot read ({first_line(exc)})") from None


def check_inputs(run_dir: Path, plan: dict, inputs: dict) -> None:
    """Refuse to resume when the images or models changed since the run started: the
    finished units would describe other inputs."""
    before = plan.get("inputs", {})
    for what in ("image_set_hash", "models"):
        if before.get(what) != inputs.get(what):
            raise HarnessError(f"{run_dir}: the {what.replace('_', ' ')} changed since this "
                               "run started; start a new run instead of resuming")


class Journal:
    """Appends finished units to ``units.log``."""

    def __init__(self, out: Path):
        self.path = Path(out) / UNITS_FILE

    def finished(self) -> set[str]:
        """Ids of the units recorded as finished (a torn last line is skipped)."""
        if not self.path.is_file():
            return set()
        lines = self.path.read_bytes().split(b"\n")
        return {line.decode("utf-8", "replace") for line in lines[:-1] if line}

    def record(self, unit) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(unit.id + "\n")
            fh.flush()
            os.fsync(fh.fileno())
