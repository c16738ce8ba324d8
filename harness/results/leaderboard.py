"""The wide view of a run (docs/measures.md): one row per model, one column per measure's
headline with its 95% interval and rank, models ordered by mean rank.

Ranks admit ties: within a measure, a model's rank is 1 + the number of models that
are *separably* better, i.e. whose whole 95% interval lies on the better side of its
own. Models the data cannot tell apart share a rank. In the order of the headline, a
model whose interval overlaps the one ranked just above it is marked ``tied``.
"""

from __future__ import annotations

import json

import polars as pl

from harness.stats.ranks import separable_ranks

ARROW = {True: "↑", False: "↓"}


def headlines(scores: pl.DataFrame) -> pl.DataFrame:
    """The headline rows: model, family, status, measure, value, ci_low, ci_high,
    higher_is_better."""
    return scores.filter(pl.col("statistic") == "headline").select(
        "model", "family", "status", "measure", "value", "ci_low", "ci_high", "higher_is_better")


def build(scores: pl.DataFrame, by: str | None = None) -> pl.DataFrame:
    """Scores (long) -> leaderboard (wide), ordered by mean rank (or by the rank of
    measure ``by``); failed models last."""
    heads = headlines(scores)
    measures = list(dict.fromkeys(heads["measure"].to_list()))
    if by is not None and by not in measures:
        raise ValueError(f"--by {by!r}: not a measure of this run ({', '.join(measures)})")
    models = heads.unique("model", keep="first", maintain_order=True)
    table = {r["model"]: {"model": r["model"], "family": r["family"], "status": r["status"]}
             for r in models.iter_rows(named=True)}
    for m in measures:
        rows = heads.filter(pl.col("measure") == m).to_dicts()
        ranks = separable_ranks(rows, rows[0]["higher_is_better"])
        for r in rows:
            rank, tied = ranks.get(r["model"], (None, False))
            table[r["model"]].update({m: r["value"], f"{m}_ci_low": r["ci_low"],
                                      f"{m}_ci_high": r["ci_high"], f"{m}_rank": rank,
                                      f"{m}_tied": tied})
    for row in table.values():
        ranks = [row[f"{m}_rank"] for m in measures if row.get(f"{m}_rank") is not None]
        row["mean_rank"] = sum(ranks) / len(ranks) if ranks else None
    key = f"{by}_rank" if by else "mean_rank"
    ordered = sorted(table.values(), key=lambda r: (r["status"] != "ok", r[key] is None,
                                                    r[key] or 0, r["model"]))
    schema = {"position": pl.Int64, "model": pl.String, "family": pl.String,
              "status": pl.String, "mean_rank": pl.Float64}
    for m in measures:
        schema |= {m: pl.Float64, f"{m}_ci_low": pl.Float64, f"{m}_ci_high": pl.Float64,
                   f"{m}_rank": pl.Int64, f"{m}_tied": pl.Boolean}
    for pos, row in enumerate(ordered, start=1):
        row["position"] = pos
    return pl.DataFrame(ordered, schema=schema)


def directions(scores: pl.DataFrame) -> dict[str, bool]:
    """measure -> higher_is_better, in run order."""
    heads = headlines(scores)
    return dict(zip(heads["measure"].to_list(), heads["higher_is_better"].to_list(), strict=True))


def cell_parts(row: dict, m: str, digits: int = 3) -> tuple[str, str, str] | None:
    """One leaderboard cell as (value, interval or "", rank such as "#2="), or None
    when the model has no value for measure ``m``."""
    if row[m] is None:
        return None
    ci = ""
    if row[f"{m}_ci_low"] is not None and row[f"{m}_ci_low"] != row[f"{m}_ci_high"]:
        ci = f"[{row[f'{m}_ci_low']:.{digits}f}, {row[f'{m}_ci_high']:.{digits}f}]"
    rank = f"#{row[f'{m}_rank']}{'=' if row[f'{m}_tied'] else ''}"
    return f"{row[m]:.{digits}f}", ci, rank


def _cell(row, m):
    parts = cell_parts(row, m)
    if parts is None:
        return "n/a"
    value, ci, rank = parts
    return f"{value} {ci} {rank}" if ci else f"{value} {rank}"


def _rows(board: pl.DataFrame, dirs: dict[str, bool]) -> list[list[str]]:
    header = ["#", "model", "family"] + [f"{m} {ARROW[h]}" for m, h in dirs.items()] + [
        "mean rank"]
    rows = [header]
    for row in board.iter_rows(named=True):
        if row["status"] != "ok":
            rows.append([str(row["position"]), row["model"], row["family"] or "-",
                         row["status"]] + [""] * len(dirs))
            continue
        rows.append([str(row["position"]), row["model"], row["family"] or "-"]
                    + [_cell(row, m) for m in dirs]
                    + ["-" if row["mean_rank"] is None else f"{row['mean_rank']:.2f}"])
    return rows


FOOTNOTE = ("[low, high]: 95% bootstrap interval over images. #k: 1 + the number of models "
            "separably better (whole interval better); '=': not separable from the model "
            "just above it (intervals overlap). n/a: no value (e.g. no family, no human "
            "maps).")


def render(board: pl.DataFrame, dirs: dict[str, bool], fmt: str = "table") -> str:
    """The leaderboard as ``table`` (aligned text), ``md``, ``csv`` or ``json``."""
    if fmt == "csv":
        return board.write_csv()
    if fmt == "json":
        return json.dumps(board.to_dicts(), indent=2)
    rows = _rows(board, dirs)
    if fmt == "md":
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines) + "\n\n" + FOOTNOTE + "\n"
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}")
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n" + FOOTNOTE + "\n"
