"""The long-format results of SPEC section 4: one row per (model, measure, statistic),
with an explicit Polars schema and the run's provenance on every row."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

SCHEMA = {
    "model": pl.String,
    "family": pl.String,
    "measure": pl.String,
    "statistic": pl.String,
    "value": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n": pl.Int64,
    "higher_is_better": pl.Boolean,
    # provenance
    "harness_version": pl.String,
    "onnxruntime_version": pl.String,
    "numba_version": pl.String,
    "provider": pl.String,
    "model_sha256": pl.String,
    "image_set_hash": pl.String,
    "salience_config": pl.String,
    "seed": pl.Int64,
    "forward_passes": pl.Int64,
    "status": pl.String,
}


def versions() -> dict[str, str]:
    import numba
    import onnxruntime

    from harness import __version__

    return {"harness_version": __version__, "onnxruntime_version": onnxruntime.__version__,
            "numba_version": numba.__version__}


def to_frame(records: list[dict]) -> pl.DataFrame:
    """Records (dicts with the keys of :data:`SCHEMA`) -> the typed long frame."""
    return pl.DataFrame(records, schema=SCHEMA) if records else pl.DataFrame(schema=SCHEMA)


SCORES_FILE = "scores.parquet"
EXAMPLES_FILE = "examples.npz"


def write_run(out: Path, scores: pl.DataFrame, run_info: dict,
              examples: dict | None = None) -> pl.DataFrame:
    """Write a finished run: scores.parquet, examples.npz (maps of a few images for the
    report), the leaderboard (.parquet, .csv, .md) and run.json, each atomically; the
    leaderboard files last, so a run that dies midway leaves none behind. Returns the
    leaderboard."""
    from harness.io import atomic_path
    from harness.leaderboard import build, directions, render

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / SCORES_FILE) as tmp:
        scores.write_parquet(tmp)
    if examples:
        import numpy as np

        with atomic_path(out / EXAMPLES_FILE) as tmp:
            np.savez_compressed(tmp, **examples)
    board = build(scores)
    with atomic_path(out / "run.json") as tmp:
        tmp.write_text(json.dumps(run_info, indent=2, sort_keys=True, default=str) + "\n")
    with atomic_path(out / "leaderboard.parquet") as tmp:
        board.write_parquet(tmp)
    with atomic_path(out / "leaderboard.csv") as tmp:
        tmp.write_text(render(board, directions(scores), "csv"))
    with atomic_path(out / "leaderboard.md") as tmp:
        tmp.write_text(render(board, directions(scores), "md"))
    return board


def read_scores(run_dir) -> pl.DataFrame:
    """The scores of a finished run folder."""
    from harness.errors import HarnessError, first_line

    path = Path(run_dir) / SCORES_FILE
    if not path.is_file():
        raise HarnessError(f"{run_dir}: no {SCORES_FILE} here; is it the output folder of "
                           "a finished `harness run`?")
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for a damaged file
        raise HarnessError(f"{path}: cannot read ({first_line(exc)})") from None
