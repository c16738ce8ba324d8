"""Every pair of models, and every pair of families, compared per measure on the images
both were scored on (docs/measures.md, "Statistics"): ``pairs.parquet`` and
``families.parquet``.

Both read only the long scores (directions, families, the seed) and the per-image
values, so they can be recomputed from a run folder and give the same bytes.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import polars as pl

from harness.measures import accuracy
from harness.stats.bootstrap import Bootstrap
from harness.stats.families import family_draws, family_means, family_test
from harness.stats.paired import BOOTSTRAP_T, Paired, holm, paired

PAIRS = {"measure": pl.String, "model_a": pl.String, "model_b": pl.String, "n": pl.Int64,
         "diff": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
         "p_value": pl.Float64, "p_adjusted": pl.Float64}
FAMILIES = {"measure": pl.String, "family_a": pl.String, "family_b": pl.String,
            "n": pl.Int64, "value_a": pl.Float64, "value_b": pl.Float64,
            "diff": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
            "p_value": pl.Float64, "p_adjusted": pl.Float64}
SEPARABLE = 0.05  # an adjusted p-value below this is a verdict


@dataclasses.dataclass(frozen=True)
class Values:
    """A run's per-image headline values as matrices.

    Attributes:
        models: every model of the run, in run order.
        family: model -> family (None: none).
        higher: measure -> higher is better, for the measures with per-image values.
        boot: the run's resamples of the images (rows of every matrix follow its keys).
        columns: measure -> ``(n, models)`` values, NaN where there is none.
        test: the paired test of two models (:data:`harness.stats.paired.TESTS`).
    """

    models: list[str]
    family: dict[str, str | None]
    higher: dict[str, bool]
    boot: Bootstrap
    columns: dict[str, np.ndarray]
    test: str = BOOTSTRAP_T


def values(scores: pl.DataFrame, per_image: pl.DataFrame, test: str = BOOTSTRAP_T) -> Values:
    """Arrange a run's per-image values for comparisons by ``test``."""
    models = scores["model"].unique(maintain_order=True).to_list()
    family = dict(scores.select("model", "family").unique("model", maintain_order=True).rows())
    heads = scores.filter(pl.col("statistic") == "headline")
    present = set(per_image["measure"].to_list())
    higher = {m: h for m, h in heads.select("measure", "higher_is_better")
              .unique("measure", maintain_order=True).rows() if m in present}
    seed = int(scores["seed"][0]) if len(scores) else 0
    keys = per_image["image"].unique(maintain_order=True).to_list()
    index = pl.DataFrame({"image": keys}, schema={"image": pl.String}).with_row_index("row")
    column = {m: j for j, m in enumerate(models)}
    columns = {}
    for measure in higher:
        rows = per_image.filter(pl.col("measure") == measure).join(index, on="image")
        v = np.full((len(keys), len(models)), np.nan)
        cols = np.array([column[m] for m in rows["model"].to_list()], np.int64)
        v[rows["row"].to_numpy(), cols] = rows["value"].fill_null(np.nan).to_numpy()
        columns[measure] = v
    return Values(models, family, higher, Bootstrap(seed, keys), columns, test)


def test_for(measure: str, test: str) -> str:
    """The paired test of ``measure`` in a run whose test is ``test``: accuracy's 0/1
    values always take the sign-flip test (:mod:`harness.measures.accuracy`)."""
    return accuracy.TEST if measure == accuracy.NAME else test


def model_pairs(vals: Values) -> pl.DataFrame:
    """Every pair of scored models per measure (same-family pairs skipped for
    stability, whose value is the family's): the mean difference a - b with its interval
    and p-value by the run's test, Holm-adjusted within the measure."""
    which, diffs = [], []
    for measure, v in vals.columns.items():
        scored = [j for j in range(len(vals.models)) if not np.isnan(v[:, j]).all()]
        for i, j in itertools.combinations(scored, 2):
            a, b = vals.models[i], vals.models[j]
            if measure == "stability" and vals.family[a] == vals.family[b]:
                continue
            which.append((measure, a, b))
            diffs.append(v[:, i] - v[:, j])
    if not which:
        return pl.DataFrame(schema=PAIRS)
    measures = [w[0] for w in which]
    result = paired_by_measure(np.stack(diffs, axis=1), measures, vals.boot, vals.test)
    adjusted = np.full(len(which), np.nan)
    for measure in vals.columns:
        at = np.array(measures) == measure
        adjusted[at] = holm(result.p_value[at])
    return _frame(PAIRS, {
        "measure": measures, "model_a": [w[1] for w in which],
        "model_b": [w[2] for w in which], "n": result.n, "diff": result.diff,
        "ci_low": result.ci_low, "ci_high": result.ci_high, "p_value": result.p_value,
        "p_adjusted": adjusted})


def paired_by_measure(diffs: np.ndarray, measures: list[str], boot: Bootstrap, test: str
                      ) -> Paired:
    """:func:`~harness.stats.paired.paired` of each column of ``diffs`` by the test of its
    measure (:func:`test_for`)."""
    tests = np.array([test_for(m, test) for m in measures])
    out = {name: np.full(len(measures), np.nan) for name in (
        "n", "diff", "ci_low", "ci_high", "p_value")}
    for chosen in dict.fromkeys(tests.tolist()):
        at = tests == chosen
        result = paired(diffs[:, at], boot, chosen)
        for name in out:
            out[name][at] = getattr(result, name)
    return Paired(**(out | {"n": out["n"].astype(np.int64)}))


def family_pairs(vals: Values) -> pl.DataFrame:
    """Every pair of families per measure, by the studentised two-level bootstrap of
    :mod:`harness.stats.families` (whatever the run's test: the sign-flip test has no
    two-level form); Holm-adjusted within the measure."""
    families = list(dict.fromkeys(f for m in vals.models if (f := vals.family[m]) is not None))
    out = {name: [] for name in FAMILIES}
    for measure, v in vals.columns.items():
        members = {f: [j for j, m in enumerate(vals.models) if vals.family[m] == f]
                   for f in families}
        drawn = {f: family_draws(v, members[f], vals.boot, f) for f in families}
        rows = []
        for fa, fb in itertools.combinations(families, 2):
            a, b = drawn[fa], drawn[fb]
            if np.isnan(a.value) or np.isnan(b.value):
                continue
            difference = family_means(v, members[fa]) - family_means(v, members[fb])
            n, low, high, p = family_test(a, b, difference, vals.boot)
            rows.append((fa, fb, n, a.value, b.value, a.value - b.value, low, high, p))
        adjusted = holm([r[-1] for r in rows])
        for r, adj in zip(rows, adjusted, strict=True):
            for name, value in zip(FAMILIES, (measure, *r, adj), strict=True):
                out[name].append(value)
    return _frame(FAMILIES, out)


def reversed_pair(row) -> tuple:
    """A pair's ``(diff, ci_low, ci_high)`` of a - b as those of b - a (a missing value
    stays missing; no row at all: all missing)."""
    if row is None:
        return None, None, None
    diff, low, high = row
    return tuple(None if x is None else -x for x in (diff, high, low))


def better_matrix(pairs: pl.DataFrame, measure: str, models: list[str], higher: bool
                  ) -> np.ndarray:
    """``(M, M) bool``: ``[i, j]`` when model i is separably better than model j on
    ``measure`` (Holm-adjusted p below :data:`SEPARABLE`, difference in i's favour)."""
    at = {m: i for i, m in enumerate(models)}
    better = np.zeros((len(models), len(models)), bool)
    rows = pairs.filter((pl.col("measure") == measure) & (pl.col("p_adjusted") < SEPARABLE))
    for a, b, diff in rows.select("model_a", "model_b", "diff").iter_rows():
        winner, loser = (a, b) if (diff > 0) == higher else (b, a)
        better[at[winner], at[loser]] = True
    return better


def _frame(schema: dict, columns: dict) -> pl.DataFrame:
    frame = pl.DataFrame({k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v)
                          for k, v in columns.items()}, schema=schema)
    return frame.with_columns(pl.col(c).fill_nan(None) for c, t in schema.items()
                              if t == pl.Float64)
