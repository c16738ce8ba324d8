"""The long-format results of docs/measures.md: one row per (model, measure, statistic),
with an explicit Polars schema and the run's provenance on every row."""

from __future__ import annotations

import numpy as np
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
    # the model's share of flat clean maps (no positive evidence for the class explained:
    # left out of every map measure), on every row so a value says what it rests on
    "flat_fraction": pl.Float64,
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


# One row per (model, measure, in-set image) for every headline: what paired tests,
# rank intervals and the gate's regression test read. ``image`` is the image's content
# hash; ``value`` is null where the image gives no value (a flat map, no mask).
PER_IMAGE = {"model": pl.String, "measure": pl.String, "image": pl.String,
             "value": pl.Float64}


# columns a run gained after its first release: a run folder written before them reads
# with the column empty rather than being refused
ADDED = ("flat_fraction",)


def versions() -> dict[str, str]:
    import numba
    import onnxruntime

    from harness import __version__

    return {"harness_version": __version__, "onnxruntime_version": onnxruntime.__version__,
            "numba_version": numba.__version__}


def to_frame(records: list[dict]) -> pl.DataFrame:
    """Records (dicts with the keys of :data:`SCHEMA`) -> the typed long frame."""
    return pl.DataFrame(records, schema=SCHEMA) if records else pl.DataFrame(schema=SCHEMA)


def per_image_frame(columns: list[tuple[str, str, np.ndarray]], keys: list[str]
                    ) -> pl.DataFrame:
    """``(model, measure, (N,) values)`` with NaN for no value -> the typed frame of
    :data:`PER_IMAGE`, images named by ``keys``."""
    if not columns:
        return pl.DataFrame(schema=PER_IMAGE)
    n = len(keys)
    values = np.concatenate([np.asarray(v, np.float64) for _, _, v in columns])
    return pl.DataFrame({
        "model": [m for m, _, _ in columns for _ in range(n)],
        "measure": [s for _, s, _ in columns for _ in range(n)],
        "image": keys * len(columns),
        "value": values}, schema=PER_IMAGE).with_columns(pl.col("value").fill_nan(None))


def per_image_column(per_image: pl.DataFrame, model: str, measure: str, keys) -> np.ndarray:
    """One model's per-image values of one measure over the images ``keys``, NaN where
    it has none."""
    rows = per_image.filter((pl.col("model") == model) & (pl.col("measure") == measure))
    found = dict(zip(rows["image"].to_list(), rows["value"].to_list(), strict=True))
    return np.array([np.nan if found.get(k) is None else found[k] for k in keys], np.float64)
