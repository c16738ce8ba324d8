"""The pairwise comparisons of a run in words, for ``harness compare``: "A has lower
entropy than B by 0.11 [0.06, 0.16], p_adj 0.003" for every separable pair, and a count
(or, asked for, the list) of the pairs the data cannot decide."""

from __future__ import annotations

import polars as pl

from harness.errors import printable
from harness.results import numbers
from harness.results.comparisons import SEPARABLE, reversed_pair


def verdicts(pairs: pl.DataFrame, higher: dict[str, bool], measure: str | None = None,
             undecided: bool = False, side: str = "model") -> list[str]:
    """Lines of text, measure by measure.

    Args:
        pairs: ``pairs.parquet`` (``side="model"``) or ``families.parquet``
            (``side="family"``).
        higher: measure -> higher is better.
        measure: only this measure.
        undecided: also list the pairs that are not separable.
    """
    a, b = f"{side}_a", f"{side}_b"
    measures = list(dict.fromkeys(pairs["measure"].to_list()))
    if measure is not None:
        measures = [m for m in measures if m == measure]
    lines = []
    for m in measures:
        rows = pairs.filter(pl.col("measure") == m).sort(
            "p_adjusted", pl.col("diff").abs(), descending=[False, True], nulls_last=True)
        decided = rows.filter(pl.col("p_adjusted") < SEPARABLE)
        word = "higher is better" if higher.get(m, True) else "lower is better"
        lines.append(f"{printable(m)} ({word}): {len(decided)} of {len(rows)} pairs separable "
                     f"(Holm-adjusted p < {SEPARABLE:g})")
        for r in rows.iter_rows(named=True):
            separable = r["p_adjusted"] is not None and r["p_adjusted"] < SEPARABLE
            if separable or undecided:
                lines.append("  " + _sentence(r, m, a, b, separable, higher.get(m, True)))
    return lines


def summary(pairs: pl.DataFrame, higher: dict[str, bool], side: str = "model") -> list[str]:
    """One line per measure: how many pairs are separable, and its top set, the
    models (or families) not separably worse than any other."""
    a, b = f"{side}_a", f"{side}_b"
    lines = []
    for m in dict.fromkeys(pairs["measure"].to_list()):
        rows = pairs.filter(pl.col("measure") == m)
        everyone = list(dict.fromkeys(rows[a].to_list() + rows[b].to_list()))
        losers = set()
        for r in rows.filter(pl.col("p_adjusted") < SEPARABLE).iter_rows(named=True):
            a_better = (r["diff"] > 0) == higher.get(m, True)
            losers.add(r[b] if a_better else r[a])
        top = [printable(x) for x in everyone if x not in losers]
        decided = int((rows["p_adjusted"] < SEPARABLE).sum())
        lines.append(f"{printable(m)}: {decided} of {len(rows)} pairs separable; top set "
                     f"({len(top)} not separably worse than any other): {', '.join(top)}")
    return lines


def _sentence(r: dict, measure: str, a: str, b: str, separable: bool, higher: bool) -> str:
    """The better side first; the gap (larger minus smaller value) and its interval read
    positive in the measure's units."""
    diff, low, high = r["diff"], r["ci_low"], r["ci_high"]
    if diff < 0:
        diff, low, high = reversed_pair((diff, low, high))
    larger, smaller = (r[a], r[b]) if r["diff"] >= 0 else (r[b], r[a])
    larger, smaller = printable(larger), printable(smaller)
    first, second = (larger, smaller) if higher else (smaller, larger)
    stats = (f"by {diff:.3g} {numbers.interval(low, high)}, p_adj "
             f"{numbers.p_value(r['p_adjusted'])}, n {r['n']}")
    word = "higher" if higher else "lower"
    if separable:
        return f"{first} has {word} {measure} than {second} {stats}"
    return f"not separable: {first} has {word} {measure} than {second} {stats}"
