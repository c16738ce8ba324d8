"""A finished run folder's tables, read and checked before anything is built on them.

``leaderboard``, ``compare``, ``gate`` and ``report`` read files that a person or a
script may have edited or damaged. A gate that passes on a duplicated row, an infinite
headline or a per-image value of a model the run never scored would be a wrong answer
given with confidence, so every table is checked against what a run writes, and a
folder that fails is refused in one line naming the file and the first problem:

- each column of its schema present, with its type;
- the identity and provenance columns without nulls, at least one row;
- every number finite (a missing value is null, never NaN or infinity);
- one row per key (model, measure, statistic; model, measure, image; a pair);
- each measure with one direction, and a known measure with its own;
- per-image values only of models and measures the scores have.
"""

from __future__ import annotations

import polars as pl

from harness.errors import HarnessError, excerpt
from harness.results.comparisons import FAMILIES, PAIRS
from harness.results.schema import ADDED, PER_IMAGE, SCHEMA
from harness.rundir import RunDir

_KEYS = {RunDir.SCORES: ("model", "measure", "statistic"),
         RunDir.PER_IMAGE: ("model", "measure", "image"),
         RunDir.PAIRS: ("measure", "model_a", "model_b"),
         RunDir.FAMILIES: ("measure", "family_a", "family_b")}
# never empty: a row's key, and the provenance a comparison of runs reads
_REQUIRED = _KEYS | {RunDir.SCORES: _KEYS[RunDir.SCORES] + (
    "status", "seed", "image_set_hash", "salience_config")}
_SCHEMAS = {RunDir.SCORES: SCHEMA, RunDir.PER_IMAGE: PER_IMAGE, RunDir.PAIRS: PAIRS,
            RunDir.FAMILIES: FAMILIES}


def scores(folder: RunDir) -> pl.DataFrame:
    """The run's long scores, checked (module docstring)."""
    frame = _read(folder, RunDir.SCORES)
    if frame.is_empty():
        _refuse(folder, RunDir.SCORES, "it has no rows")
    _check_directions(folder, frame)
    return frame


def per_image(folder: RunDir, of: pl.DataFrame) -> pl.DataFrame:
    """The run's per-image values, checked, and only of what the scores ``of`` hold."""
    frame = _read(folder, RunDir.PER_IMAGE)
    known = set(of.select("model", "measure").unique().iter_rows())
    for model, measure in frame.select("model", "measure").unique(maintain_order=True).rows():
        # a parity run's drift values are measure "parity.ssim" etc., scored as "parity"
        if (model, measure) not in known and (model, measure.partition(".")[0]) not in known:
            _refuse(folder, RunDir.PER_IMAGE, f"it has values of {excerpt(model)} on "
                                              f"{excerpt(measure)}, which the scores do not")
    return frame


def pairs(folder: RunDir, families: bool = False) -> pl.DataFrame:
    """The run's model (or family) pairs, checked."""
    return _read(folder, RunDir.FAMILIES if families else RunDir.PAIRS)


def _read(folder: RunDir, name: str) -> pl.DataFrame:
    frame = folder.table(name)
    schema = _SCHEMAS[name]
    if name == RunDir.SCORES:
        frame = frame.with_columns(pl.lit(None, SCHEMA[c]).alias(c) for c in ADDED
                                   if c not in frame.columns)
    for column, kind in schema.items():
        if column not in frame.columns:
            _refuse(folder, name, f"it has no column {column!r}")
        if not _fits(frame.schema[column], kind):
            _refuse(folder, name, f"column {column!r} holds {frame.schema[column]}, not {kind}")
    frame = frame.with_columns(pl.col(c).cast(k) for c, k in schema.items()
                               if frame.schema[c] != k)
    for column in _REQUIRED[name]:
        if frame[column].null_count():
            _refuse(folder, name, f"column {column!r} has {frame[column].null_count()} empty "
                                  "value(s)")
    for column, kind in schema.items():
        if kind == pl.Float64:
            bad = frame.filter(pl.col(column).is_not_null() & ~pl.col(column).is_finite())
            if len(bad):
                _refuse(folder, name, f"column {column!r} holds {bad[column][0]} (a missing "
                                      "value is empty, never NaN or infinite)")
    counts = frame.group_by(_KEYS[name], maintain_order=True).len().filter(pl.col("len") > 1)
    if len(counts):
        *key, times = counts.row(0)
        shown = ", ".join(excerpt(str(v)) for v in key)
        _refuse(folder, name, f"({shown}) appears {times} times; a run writes it once")
    return frame


def _fits(found, kind) -> bool:
    """Whether a column of type ``found`` holds what ``kind`` holds (an integer of another
    width, or an integer where a float is kept, reads the same; an all-empty column too)."""
    if found == kind or found == pl.Null:
        return True
    if kind == pl.Int64:
        return found.is_integer()
    if kind == pl.Float64:
        return found.is_float() or found.is_integer()
    return False


def _check_directions(folder: RunDir, frame: pl.DataFrame) -> None:
    """One direction per measure, and a known measure's own: a flipped direction would
    turn every verdict around."""
    from harness.measures import MEASURES
    from harness.measures.accuracy import NAME as ACCURACY

    known = {name: m.higher_is_better for name, m in MEASURES.items()} | {ACCURACY: True}
    heads = frame.filter(pl.col("statistic") == "headline")
    for measure, directions in heads.group_by("measure", maintain_order=True).agg(
            pl.col("higher_is_better").unique()).iter_rows():
        if len(directions) != 1 or directions[0] is None:
            _refuse(folder, RunDir.SCORES, f"measure {excerpt(measure)} has no single "
                                           "direction (higher_is_better)")
        if measure in known and directions[0] != known[measure]:
            _refuse(folder, RunDir.SCORES, f"measure {measure!r} says higher_is_better is "
                                           f"{directions[0]}; it is {known[measure]}")


def _refuse(folder: RunDir, name: str, why: str):
    raise HarnessError(f"{folder / name}: {why}: the file is damaged or was edited by hand; "
                       "run the harness again to rebuild it")
