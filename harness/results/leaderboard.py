"""The wide view of a run (docs/measures.md, "Statistics"): one row per model, each
measure's headline with its 95% interval, its rank and its rank set.

Rank = 1 + the number of models separably better (paired test, Holm-adjusted p < 0.05),
so models the data cannot tell apart share a rank. The rank set is [1 + the models
separably better, M - the models separably worse], from the same simultaneous tests
(:mod:`harness.stats.ranks`), so the rank always lies in it. Models are
ordered by mean rank over the measures, ties broken by the mean of their ranks by point
value, then by the order they were given in; never by name. ``pareto`` marks the models
no other model dominates (separably better on one measure and separably worse on none).
Test accuracy, when the images have labels, stands beside the measures and is not ranked.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from harness.errors import printable
from harness.measures import saturation
from harness.measures.accuracy import NAME as ACCURACY
from harness.results.comparisons import better_matrix, values
from harness.stats.ranks import pareto, rank_sets, separable_ranks, value_ranks

ARROW = {True: "↑", False: "↓"}
# what a headline is read against: random maps, and (transforms) a perfectly
# equivariant explanation through the same grid
REFERENCES = ("chance", "ceiling")
SATURATED = ("saturated", "saturated_of")  # clean images at the probability clip, of all
WIDTH = 100  # the terminal table's budget, in columns
SHORT = {"entropy": "entr", "out_of_set": "oos", "transforms": "trans", "stability": "stab",
         "degradation": "degr", "agreement": "agree", "sanity": "sanity",
         "deletion": "del", "insertion": "ins", "road": "road",
         "faithfulness_correlation": "fcorr", ACCURACY: "acc"}


def headlines(scores: pl.DataFrame) -> pl.DataFrame:
    """The headline rows: model, family, status, measure, value, ci_low, ci_high, n,
    higher_is_better."""
    return scores.filter(pl.col("statistic") == "headline").select(
        "model", "family", "status", "measure", "value", "ci_low", "ci_high", "n",
        "higher_is_better")


def directions(scores: pl.DataFrame) -> dict[str, bool]:
    """Ranked measure -> higher_is_better, in run order (accuracy is not ranked)."""
    heads = headlines(scores).unique("measure", maintain_order=True)
    return {m: h for m, h in heads.select("measure", "higher_is_better").rows()
            if m != ACCURACY}


def build(scores: pl.DataFrame, per_image: pl.DataFrame, pairs: pl.DataFrame,
          by: str | None = None) -> pl.DataFrame:
    """Scores, per-image values and model pairs -> the leaderboard, ordered by mean rank
    (or by the rank of measure ``by``); models that failed last."""
    dirs = directions(scores)
    if by is not None and by not in dirs:
        raise ValueError(f"--by {by!r}: not a measure of this run ({', '.join(dirs)})")
    vals = values(scores, per_image)
    models = vals.models
    heads = headlines(scores)
    status = dict(heads.select("model", "status").unique("model", maintain_order=True).rows())
    head = {(m, s): (v, lo, hi) for m, s, v, lo, hi in
            heads.select("model", "measure", "value", "ci_low", "ci_high").rows()}
    counts = {(m, s): n for m, s, n in heads.select("model", "measure", "n").rows()}
    images = per_image["image"].n_unique()  # the run's in-set images
    levels = {(m, s, st): v for m, s, st, v in scores.filter(
        pl.col("statistic").is_in(REFERENCES)).select("model", "measure", "statistic",
                                                       "value").rows()}
    flat = dict(scores.filter(pl.col("flat_fraction").is_not_null()).unique(
        "model", maintain_order=True).select("model", "flat_fraction").rows())
    table = {m: {"model": m, "family": vals.family[m], "status": status.get(m, "ok"),
                 "images": images, "flat_fraction": flat.get(m)} for m in models}
    has_accuracy = any(k[1] == ACCURACY for k in head)
    if has_accuracy:
        for m in models:
            v, lo, hi = head.get((m, ACCURACY), (None, None, None))
            table[m].update({ACCURACY: v, f"{ACCURACY}_ci_low": lo, f"{ACCURACY}_ci_high": hi})
    clipped = {m: (int(v), n) for m, v, n in scores.filter(
        (pl.col("measure") == saturation.NAME) & (pl.col("statistic") == saturation.STATISTIC)
    ).select("model", "value", "n").rows() if v is not None}
    for m in models if clipped else ():
        table[m].update(dict(zip(SATURATED, clipped.get(m, (None, None)), strict=True)))
    separable, by_value, wins = {}, {}, []
    for measure, higher in dirs.items():
        point = np.array([_float(head.get((m, measure), (None,))[0]) for m in models])
        scored = ~np.isnan(point)
        better = better_matrix(pairs, measure, models, higher)
        wins.append(better)
        separable[measure] = separable_ranks(better, scored)
        by_value[measure] = value_ranks(point, higher)
        low, high = rank_sets(better, scored)
        for i, m in enumerate(models):
            v, lo, hi = head.get((m, measure), (None, None, None))
            table[m].update({f"{measure}_{r}": levels.get((m, measure, r)) for r in REFERENCES})
            table[m].update({measure: v, f"{measure}_ci_low": lo, f"{measure}_ci_high": hi,
                             f"{measure}_n": counts.get((m, measure)) if v is not None else None,
                             f"{measure}_rank": _int(separable[measure][i]),
                             f"{measure}_rank_low": _int(low[i]) if scored[i] else None,
                             f"{measure}_rank_high": _int(high[i]) if scored[i] else None})
    front = pareto(wins) if wins else np.zeros(len(models), bool)
    for i, m in enumerate(models):
        row = table[m]
        row["mean_rank"] = _mean([separable[d][i] for d in dirs])
        row["point_rank"] = _mean([by_value[d][i] for d in dirs])
        row["pareto"] = bool(front[i]) and row["mean_rank"] is not None
    if by is None:
        def key(i):
            r = table[models[i]]
            return (r["status"] != "ok", r["mean_rank"] is None, r["mean_rank"] or 0,
                    r["point_rank"] or 0, i)
    else:
        def key(i):
            r = table[models[i]]
            return (r["status"] != "ok", r[f"{by}_rank"] is None, r[f"{by}_rank"] or 0,
                    _float(by_value[by][i]), r["mean_rank"] or 0, i)
    ordered = [table[models[i]] for i in sorted(range(len(models)), key=key)]
    for pos, row in enumerate(ordered, start=1):
        row["position"] = pos
    return pl.DataFrame(ordered, schema=_schema(dirs, has_accuracy, bool(clipped)))


RANKS = ("rank", "rank_low", "rank_high")  # the statistics rank_rows adds to the scores


def rank_rows(scores: pl.DataFrame, board: pl.DataFrame) -> pl.DataFrame:
    """Each ranked headline's rank and rank set as rows of the long scores (statistics
    :data:`RANKS`, n: the models ranked), beside its headline, so the gate can test
    ``entropy.rank_high <= 3``."""
    heads = scores.filter(pl.col("statistic") == "headline")
    ranked = {m: int(board[m].is_not_null().sum()) for m in directions(scores)}
    on_board = {row["model"]: row for row in board.iter_rows(named=True)}
    rows = []
    for r in heads.filter(pl.col("measure").is_in(list(ranked))).iter_rows(named=True):
        for stat in RANKS:
            value = on_board.get(r["model"], {}).get(f"{r['measure']}_{stat}")
            if value is not None:
                rows.append(r | {"statistic": stat, "value": float(value), "ci_low": None,
                                 "ci_high": None, "n": ranked[r["measure"]],
                                 "higher_is_better": False})
    return pl.DataFrame(rows, schema=scores.schema) if rows else scores.clear()


def _schema(dirs, has_accuracy: bool, has_saturation: bool = False) -> dict:
    schema = {"position": pl.Int64, "model": pl.String, "family": pl.String,
              "status": pl.String, "mean_rank": pl.Float64, "point_rank": pl.Float64,
              "pareto": pl.Boolean, "images": pl.Int64, "flat_fraction": pl.Float64}
    if has_saturation:
        schema |= {name: pl.Int64 for name in SATURATED}
    if has_accuracy:
        schema |= {ACCURACY: pl.Float64, f"{ACCURACY}_ci_low": pl.Float64,
                   f"{ACCURACY}_ci_high": pl.Float64}
    for m in dirs:
        schema |= {m: pl.Float64, f"{m}_ci_low": pl.Float64, f"{m}_ci_high": pl.Float64,
                   f"{m}_n": pl.Int64,
                   f"{m}_rank": pl.Int64, f"{m}_rank_low": pl.Int64, f"{m}_rank_high": pl.Int64}
        schema |= {f"{m}_{r}": pl.Float64 for r in REFERENCES}
    return schema


def _float(v) -> float:
    return np.nan if v is None else float(v)


def _int(v) -> int | None:
    return None if v is None or np.isnan(v) else int(v)


def _mean(ranks) -> float | None:
    kept = [r for r in ranks if not np.isnan(r)]
    return float(np.mean(kept)) if kept else None


# -- rendering ----------------------------------------------------------------------


def cell_parts(row: dict, m: str, digits: int = 3) -> tuple[str, str, str, str] | None:
    """One cell as (value, interval or "", rank such as "#2", rank set such as "2-4"
    or "" when it is one rank), or None when the model has no value for measure ``m``."""
    if row.get(m) is None:
        return None
    ci = ""
    if row[f"{m}_ci_low"] is not None and row[f"{m}_ci_low"] != row[f"{m}_ci_high"]:
        ci = f"[{row[f'{m}_ci_low']:.{digits}f}, {row[f'{m}_ci_high']:.{digits}f}]"
    if f"{m}_rank" not in row:  # accuracy: not ranked
        return f"{row[m]:.{digits}f}", ci, "", ""
    low, high = row[f"{m}_rank_low"], row[f"{m}_rank_high"]
    spread = "" if low is None or low == high else f"{low}-{high}"
    return f"{row[m]:.{digits}f}", ci, f"#{row[f'{m}_rank']}", spread


FEW = 10  # a value on fewer images than this is marked: too few to lean on alone


def n_note(row: dict, m: str) -> str:
    """``"n8"`` where measure ``m``'s value rests on fewer images than the run has
    (flat maps and images without a mask give none), ``"n8!"`` below :data:`FEW`;
    ``""`` when it rests on them all."""
    n, total = row.get(f"{m}_n"), row.get("images")
    if n is None or total is None or n >= total:
        return ""
    return f"n{n}" + ("!" if n < FEW else "")


def _cell(row, m, wide: bool, in_header: bool = False, few_only: bool = False) -> str:
    parts = cell_parts(row, m)
    if parts is None:
        return "n/a"
    value, ci, rank, spread = parts
    note = "" if in_header else n_note(row, m)
    if few_only and not note.endswith("!"):
        note = ""  # the footnote gives the counts: the table must fit
    if not wide:
        return " ".join(x for x in (value, rank, note) if x)
    text = " ".join(p for p in (value, ci, rank) if p)
    extra = "; ".join(x for x in (spread, note) if x)
    return f"{text} ({extra})" if extra else text


def _rows(board: pl.DataFrame, dirs: dict[str, bool], wide: bool, short: bool,
          few_only: bool = False) -> list[list[str]]:
    def name(m):
        return SHORT.get(m, m) if short else m

    shown = [ACCURACY] if ACCURACY in board.columns else []
    # a measure whose every value rests on the same fewer images says so once, in its
    # header; the others say it in each cell that does
    common = {m: _common_note(board, m) for m in dirs}
    # the narrow table marks the Pareto front with a * after the name, to save a column
    header = ["#", "model"] + (["family"] if wide else []) + [
        f"{name(m)}{ARROW[h]}" + (f" {common[m]}" if common[m] else "")
        for m, h in dirs.items()] + [name(m) for m in shown] + [
        "mean" if short else "mean rank"] + (["pareto"] if wide else [])
    rows = [header]
    for row in board.iter_rows(named=True):
        model = printable(row["model"]) + ("*" if row["pareto"] and not wide else "")
        first = [str(row["position"]), model] + ([printable(row["family"] or "-")] if wide
                                                 else [])
        if row["status"] != "ok":
            rows.append(first + [printable(row["status"])]
                        + [""] * (len(header) - len(first) - 1))
            continue
        mean = "-" if row["mean_rank"] is None else f"{row['mean_rank']:.2f}"
        rows.append(first + [_cell(row, m, wide, bool(common.get(m)), few_only)
                             for m in (*dirs, *shown)]
                    + [mean] + (["yes" if row["pareto"] else ""] if wide else []))
    return rows


def _common_note(board: pl.DataFrame, m: str) -> str:
    """Measure ``m``'s note when every model with a value has the same one, else ""."""
    notes = {n_note(r, m) for r in board.iter_rows(named=True) if r.get(m) is not None}
    return notes.pop() if len(notes) == 1 else ""


def reference_line(board: pl.DataFrame, dirs) -> str:
    """The measures' chance levels and the transforms ceiling: one value each when every
    model shares it (they depend on the images and the grid), else their range."""
    out = []
    for r, label in (("chance", "Chance (random maps)"),
                     ("ceiling", "Ceiling (a map that moves exactly with the image)")):
        parts = []
        for m in dirs:
            column = f"{m}_{r}"
            values = board[column].drop_nulls() if column in board.columns else []
            if len(values):
                low, high = f"{values.min():.3f}", f"{values.max():.3f}"
                parts.append(f"{m} {low}" if low == high else f"{m} {low}-{high}")
        if parts:
            out.append(f"{label}: {', '.join(parts)}.")
    return " ".join(out)


def saturation_line(board: pl.DataFrame) -> str:
    """Which models score clean images at the probability clip, and how many."""
    if SATURATED[0] not in board.columns:
        return ""
    hit = [f"{printable(m)} {k} of {n}"
           for m, k, n in board.select("model", *SATURATED).rows() if k]
    if not hit:
        return ""
    return ("At the probability clip (p = 1 in float32: log-odds pinned at +-16.1, so the "
            "score cannot move and those images' maps are flat): " + ", ".join(hit)
            + " images.")


def flat_line(board: pl.DataFrame) -> str:
    """Which models gave flat clean maps, and on how many images: what every measure
    leaves out for them (docs/measures.md, "Flat maps")."""
    hit = [f"{printable(r['model'])} {round(r['flat_fraction'] * r['images'])} of "
           f"{r['images']}" for r in board.iter_rows(named=True) if r["flat_fraction"]]
    if not hit:
        return ""
    return ("Flat clean maps (no positive evidence for the class explained; every measure "
            "leaves those images out, --target chooses the class): " + ", ".join(hit) + ".")


def few_line(board: pl.DataFrame, dirs, few_only: bool = False) -> str:
    """What ``nk`` means, when a cell shows it; with ``few_only`` (the cells show only
    the marked ones, for the table to fit) the counts of each measure too."""
    rows = list(board.iter_rows(named=True))
    if not any(n_note(r, m) for r in rows for m in dirs):
        return ""
    text = (f"nk: the value rests on k of the run's {board['images'][0]} images (flat maps, "
            "and images without a human map for agreement, give none; in a header: for every "
            f"model); nk!: fewer than {FEW}, too few to decide on.")
    if few_only:
        parts = []
        for m in dirs:
            ns = [r[f"{m}_n"] for r in rows if n_note(r, m)]
            if ns and not _common_note(board, m):
                span = f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}"
                parts.append(f"{m} n{span} ({len(ns)} model{'s' * (len(ns) > 1)})")
        if parts:
            text += " Shown here only when marked; on fewer images: " + ", ".join(parts) + "."
    return text


def footnote(wide: bool = True, columns=()) -> str:
    """What the table's marks mean; ``columns``: the measures shown by short names."""
    text = ("#k: 1 + the number of models separably better (paired test on the images both "
            "have, Holm-adjusted p < 0.05); models the data cannot tell apart share a rank. ")
    if wide:
        text += ("[low, high]: 95% bootstrap interval over images; (a-b): the rank set, "
                 "1 + the models separably better to M - the models separably worse: every "
                 "model's true rank lies in its set at once with 95% confidence. ")
    text += ("pareto" if wide else "*") + (
        ": no other model is separably better on one measure and worse on none. "
        "n/a: no value. `harness compare DIR` states each verdict")
    text += "; --wide adds intervals." if not wide else "."
    if columns:
        text += " " + ", ".join(f"{SHORT[m]} = {m}" for m in columns
                                if SHORT.get(m, m) != m) + "."
    return text


def render(board: pl.DataFrame, dirs: dict[str, bool], fmt: str = "table",
           wide: bool = False, decision: dict | None = None) -> str:
    """The leaderboard as ``table`` (aligned text, within :data:`WIDTH` columns unless
    ``wide``), ``md`` (always wide), ``csv`` or ``json``; the table says the ``decision``
    (``run.json``'s) under it, Markdown above it."""
    if fmt == "csv":  # names escaped: a newline in one must not start a row of its own
        return board.with_columns(pl.col(c).map_elements(printable, return_dtype=pl.String)
                                  for c in ("model", "family", "status")).write_csv()
    if fmt == "json":
        return json.dumps(board.to_dicts(), indent=2)
    if fmt == "md":
        return _markdown(board, dirs, decision)
    if fmt != "table":
        raise ValueError(f"unknown format {fmt!r}")
    from harness.results.decision import lines as decision_lines

    said = decision_lines(decision) if decision else []
    lines, short, few_only = _aligned(_rows(board, dirs, wide, short=False)), (), False
    if not wide and max(map(len, lines)) > WIDTH:  # short names, one space between columns
        lines = _aligned(_rows(board, dirs, wide, short=True), " ")
        short = [*dirs, *([ACCURACY] if ACCURACY in board.columns else [])]
    if not wide and max(map(len, lines)) > WIDTH:  # the counts move to the footnote
        lines, few_only = _aligned(_rows(board, dirs, wide, short=True, few_only=True), " "), \
            True
    notes = footnote(wide, short) + _then(few_line(board, dirs, few_only)) + \
        _then(reference_line(board, dirs)) + _then(saturation_line(board)) + \
        _then(flat_line(board))
    return "\n".join(lines + said) + "\n" + _wrap(notes, WIDTH) + "\n"


def _markdown(board: pl.DataFrame, dirs: dict[str, bool], decision: dict | None) -> str:
    """The leaderboard to post on a pull request: the decision first (the pick in bold,
    each further line a bullet), then the whole table and its notes folded in a
    ``<details>`` block that says what it holds."""
    from harness.results.decision import lines as decision_lines

    head = []
    if decision:  # each decision line, unwrapped: Markdown wraps it
        said = [" ".join(part.strip() for part in line.splitlines())
                for line in decision_lines(decision, excluded=None)]
        head = [f"**{_md(said[0])}**", ""] + [f"- {_md(x)}" for x in said[1:]]
        head += [""] if len(said) > 1 else []
    rows = [[_md(c) for c in r] for r in _rows(board, dirs, wide=True, short=False)]
    table = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    table += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    notes = footnote() + _then(few_line(board, dirs)) + _then(reference_line(board, dirs)) \
        + _then(saturation_line(board)) + _then(flat_line(board))
    # the order is the board's (mean rank, or --by's measure), so the summary names none
    summary = (f"Leaderboard: {board.height} model{'s' * (board.height != 1)}, "
               f"{len(dirs)} measure{'s' * (len(dirs) != 1)}")
    return "\n".join([*head, "<details>", f"<summary>{summary}</summary>", "", *table, "",
                      _md(notes), "", "</details>"]) + "\n"


def _md(text: str) -> str:
    """Text safe in a Markdown table cell or a line of a pull-request comment: a | would
    end a cell, and < > & would open HTML in a name."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|"))


def _then(text: str) -> str:
    return " " + text if text else ""


def _aligned(rows: list[list[str]], gap: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [gap.join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, gap.join("-" * w for w in widths))
    return lines


def _wrap(text: str, width: int) -> str:
    import textwrap

    # a model name such as faces-cyborg-3 must not be broken at its hyphens
    return textwrap.fill(text, width, break_on_hyphens=False)
