"""The decision a user came for (docs/measures.md, "The decision"): which model to ship,
how sure that is, what the data cannot separate from it, and what would.

An objective ranks the models: ``mean_rank`` (the default: the mean over the measures run
of each model's rank by value among the models left), one measure, or weights over
measures (each measure in its own units, turned so higher is better, summed per image;
an image counts where every weighted measure has a value). Constraints first remove
models:

- a threshold, in the gate's words: ``"sanity >= 0.5"`` on the point value,
  ``"sanity.ci_low >= 0.5"`` on its interval (shown to hold), ``"parity.ssim >= 0.9"``
  on a detail;
- a non-inferiority margin: ``"accuracy not worse than the best by more than 0.02"``
  keeps a model only where its paired 95% interval against the best model on that
  measure shows it within the margin.

Among the models left, the pick is the first by the objective (a model whose objective
rests on fewer than 10 images is never picked: too few to lean on alone). Then:

- ``p_best``: the share of the run's shared resamples in which the pick comes first;
- ``top_set``: the pick and every model its paired tests on the objective cannot
  separate from it (Holm over its rivals); for one measure or weights the run's paired
  test of the per-image objective, for the mean rank the resampled difference of mean
  ranks by value (percentile interval and its two-sided bootstrap p: ranks have no
  per-image values to studentise);
- ``closest``: the runner-up's difference from the pick, with its interval;
- ``power``: the smallest difference from the runner-up these images detect with 80%
  power, and about how many images would separate the two at their observed difference.
"""

from __future__ import annotations

import dataclasses
import math
import re
import textwrap
import warnings

import numpy as np
import polars as pl

from harness.errors import HarnessError, did_you_mean, excerpt, printable
from harness.measures.accuracy import NAME as ACCURACY
from harness.results import numbers
from harness.results.comparisons import SEPARABLE, Values, reversed_pair, test_for
from harness.results.rules import BOUNDS, OPS, parse_rule, rule_values
from harness.stats import best
from harness.stats.bootstrap import column_means
from harness.stats.paired import holm, paired
from harness.stats.ranks import value_ranks

MEAN_RANK = "mean_rank"
FEW = 10  # an objective on fewer images than this never makes the pick on its own
_NUMBER = r"(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
_MARGIN = re.compile(r"^\s*([A-Za-z_]+)\s+not\s+worse\s+than\s+the\s+best\s+by\s+more\s+than\s+"
                     + _NUMBER + r"\s*$")


@dataclasses.dataclass(frozen=True)
class DecisionConfig:
    """``objective``: :data:`MEAN_RANK`, a measure, or measure -> weight (> 0);
    ``constraints``: thresholds and non-inferiority margins, as text."""

    objective: str | dict = MEAN_RANK
    constraints: tuple[str, ...] = ()

    @classmethod
    def checked(cls, objective=MEAN_RANK, constraints=()) -> DecisionConfig:
        """Validated settings (the names of measures are checked against a run later).

        Raises:
            HarnessError: an objective or constraint that cannot be read, in one line.
        """
        if isinstance(objective, str) and "=" in objective:
            objective = parse_weights(objective)
        if isinstance(objective, dict):
            if not objective or not all(
                    isinstance(k, str) and isinstance(w, int | float) and not isinstance(w, bool)
                    and math.isfinite(w) and w > 0 for k, w in objective.items()):
                raise HarnessError(f"decision objective {excerpt(objective)}: weights must be "
                                   "a table of measure = number > 0")
            objective = {k: float(w) for k, w in objective.items()}
        elif not isinstance(objective, str) or not objective:
            raise HarnessError(f"decision objective must be \"{MEAN_RANK}\", a measure or a "
                               f"table of weights, got {excerpt(objective)}")
        if isinstance(constraints, str) or not all(isinstance(c, str) for c in constraints):
            raise HarnessError(f"decision constraints must be a list of strings, got "
                               f"{excerpt(constraints)}")
        for text in constraints:
            parse_constraint(text)
        return cls(objective, tuple(constraints))


@dataclasses.dataclass(frozen=True)
class Margin:
    """``measure not worse than the best by more than margin``."""

    text: str
    measure: str
    margin: float


def parse_weights(text: str) -> dict[str, float]:
    """``"agreement=1,entropy=0.5"`` -> ``{"agreement": 1.0, "entropy": 0.5}``."""
    weights = {}
    for part in text.split(","):
        name, _, number = part.partition("=")
        try:
            weights[name.strip()] = float(number)
        except ValueError:
            raise HarnessError(f"decision objective {text!r}: write weights as "
                               "measure=number, comma-separated") from None
    return weights


def parse_constraint(text: str):
    """A gate-style threshold (:class:`harness.results.rules.Rule`) or a :class:`Margin`.

    Raises:
        HarnessError: neither form.
    """
    match = _MARGIN.match(text)
    if match:
        margin = float(match.group(2))
        if margin < 0:
            raise HarnessError(f"constraint {text!r}: the margin must be >= 0")
        return Margin(text.strip(), match.group(1), margin)
    try:
        return parse_rule(text)
    except HarnessError:
        raise HarnessError(f"constraint {text!r}: write 'measure <op> number' (as a gate "
                           "rule, e.g. 'sanity >= 0.5' or 'sanity.ci_low >= 0.5') or "
                           "'measure not worse than the best by more than number'") from None


def check_names(config: DecisionConfig, measures) -> None:
    """Refuse, before any work, an objective or constraint naming a measure the run will
    not have (``measures``: the run's, with accuracy)."""
    measures = list(measures)
    objective = config.objective
    named = [(objective, "objective")] if isinstance(objective, str) and \
        objective != MEAN_RANK else [(m, "objective") for m in objective] \
        if isinstance(objective, dict) else []
    named += [(parse_constraint(c).measure, f"constraint {c!r}") for c in config.constraints]
    for name, where in named:
        if name not in measures:
            raise HarnessError(f"decision {where}: {excerpt(name)} is not a measure of this "
                               f"run{did_you_mean(name, measures)} (measures: "
                               f"{', '.join(measures)})")


def decide(vals: Values, scores: pl.DataFrame, pairs: pl.DataFrame, board: pl.DataFrame,
           config: DecisionConfig = DecisionConfig()) -> dict:
    """The decision, as JSON-ready data (``run.json``'s ``"decision"``).

    Args:
        vals: the run's per-image values as matrices, with its resamples and its paired
            test (:func:`harness.results.comparisons.values`).
        scores, pairs: the run's long scores (with rank rows) and model pairs.
        board: the run's leaderboard (its order breaks ties of the mean rank).
        config: the objective and constraints.

    Raises:
        HarnessError: the objective or a constraint names what the run does not have.
    """
    order = [m for m, status in board.select("model", "status").rows() if status == "ok"]
    objective = config.objective
    wanted = [objective] if isinstance(objective, str) and objective != MEAN_RANK \
        else list(objective) if isinstance(objective, dict) else []
    for name in wanted:
        if name not in vals.columns:
            raise HarnessError(f"decision objective: {excerpt(name)} is not a measure with "
                               f"per-image values in this run{did_you_mean(name, vals.columns)}"
                               f" (measures: {', '.join(vals.columns)})")
    excluded = _constrained(scores, pairs, vals, order, config.constraints)
    out = {"objective": objective, "constraints": list(config.constraints), "test": vals.test,
           "resamples": vals.boot.resamples, "images": vals.boot.n, "pick": None,
           "p_best": None, "top_set": [], "closest": None, "power": None,
           "excluded": excluded, "reason": None}
    eligible = [m for m in order if m not in excluded]
    if objective == MEAN_RANK:
        ranked = [m for m in _ranked(scores) if m in vals.columns]
        if not ranked:
            return out | {"reason": "no ranked measure in this run"}
        judged = _by_mean_rank(vals, ranked, eligible)
    else:
        judged = _by_values(vals, objective, eligible, excluded)
    decided = out | judged | {"excluded": excluded}
    if decided["pick"] is not None:
        decided["position"] = board["model"].to_list().index(decided["pick"]) + 1
    return decided


def _ranked(scores: pl.DataFrame) -> list[str]:
    heads = scores.filter(pl.col("statistic") == "headline").unique("measure",
                                                                     maintain_order=True)
    return [m for m in heads["measure"].to_list() if m != ACCURACY]


def _constrained(scores, pairs, vals: Values, order: list[str], constraints) -> dict:
    """model -> why a constraint excludes it (the first that does)."""
    excluded = {}
    value = rule_values(scores)
    measures = sorted(set(scores["measure"].to_list()))
    for text in constraints:
        c = parse_constraint(text)
        if c.measure not in measures:
            raise HarnessError(f"constraint {text!r}: {excerpt(c.measure)} is not a measure of "
                               f"this run{did_you_mean(c.measure, measures)}")
        if isinstance(c, Margin):
            reasons = _margin(c, pairs, vals, order)
        else:
            reasons = {}
            for m in order:
                v = value.get((m, c.measure, c.statistic))
                what = c.measure if c.statistic == "headline" else f"{c.measure}.{c.statistic}"
                if v is None:
                    reasons[m] = f"{what}: no value"
                elif not OPS[c.op](v, c.bound):
                    bound = f", {BOUNDS[c.statistic]}" if c.statistic in BOUNDS else ""
                    reasons[m] = f"{what} {v:.3g} fails {c.op} {c.bound:g}{bound}"
        for m, why in reasons.items():
            excluded.setdefault(m, why)
    return excluded


def _margin(c: Margin, pairs: pl.DataFrame, vals: Values, order: list[str]) -> dict:
    """The models not shown within ``c.margin`` of the best on ``c.measure``: the lower
    end of the paired 95% interval of (model - best), turned so higher is better, must
    lie above -margin."""
    if c.measure not in vals.columns:
        raise HarnessError(f"constraint {c.text!r}: {c.measure} has no per-image values to "
                           "compare models on")
    higher = vals.higher[c.measure]
    means = column_means(vals.columns[c.measure])
    at = {m: i for i, m in enumerate(vals.models)}
    scored = [m for m in order if not np.isnan(means[at[m]])]
    if not scored:
        return {m: f"{c.measure}: no value" for m in order}
    sign = 1.0 if higher else -1.0
    top = max(scored, key=lambda m: sign * means[at[m]])
    rows = {(a, b): (d, lo, hi) for a, b, d, lo, hi in pairs.filter(
        pl.col("measure") == c.measure).select("model_a", "model_b", "diff", "ci_low",
                                                "ci_high").rows()}
    reasons = {}
    for m in order:
        if m == top:
            continue
        if m not in scored:
            reasons[m] = f"{c.measure}: no value"
            continue
        row = rows.get((m, top)) or reversed_pair(rows.get((top, m)))
        gap, low, high = row if higher else reversed_pair(row)  # turned: higher is better
        if low is None or low <= -c.margin:
            reasons[m] = (f"{c.measure} not shown within {c.margin:g} of the best "
                          f"({printable(top)}): {gap:+.3g} {numbers.interval(low, high, '+.3g')}"
                          if gap is not None else f"{c.measure}: no paired comparison with "
                          f"the best ({printable(top)})")
    return reasons


def _by_values(vals: Values, objective, eligible: list[str], excluded: dict) -> dict:
    """One measure, or weights over measures: per-image objective values."""
    if isinstance(objective, str):
        x, higher = vals.columns[objective], vals.higher[objective]
        units = objective
    else:
        x = sum(w * (1.0 if vals.higher[m] else -1.0) * vals.columns[m]
                for m, w in objective.items())
        higher, units = True, "weighted objective"
    at = {m: i for i, m in enumerate(vals.models)}
    counts = (~np.isnan(x)).sum(axis=0)
    for m in eligible:
        if counts[at[m]] == 0:
            excluded.setdefault(m, f"{units}: no value")
        elif counts[at[m]] < FEW:
            excluded.setdefault(m, f"{units} rests on {counts[at[m]]} images (< {FEW})")
    eligible = [m for m in eligible if m not in excluded]
    if not eligible:
        return {"reason": "no model meets the constraints", "units": units}
    columns = [at[m] for m in eligible]
    means = column_means(x[:, columns])
    sign = 1.0 if higher else -1.0
    ordered = sorted(range(len(eligible)), key=lambda i: (-sign * means[i], i))
    pick = eligible[ordered[0]]
    draws = vals.boot.means(x[:, columns])
    share = best.first_share(draws, higher)
    out = {"pick": pick, "p_best": float(share[ordered[0]]), "units": units,
           "top_set": [pick]}
    if len(eligible) == 1:
        return out
    rivals = [eligible[i] for i in ordered[1:]]
    diffs = np.stack([sign * (x[:, at[pick]] - x[:, at[r]]) for r in rivals], axis=1)
    tested = paired(diffs, vals.boot, test_for(objective, vals.test)
                    if isinstance(objective, str) else vals.test)
    adjusted = holm(tested.p_value)
    out["top_set"] += [r for r, p in zip(rivals, adjusted, strict=True)
                       if not p < SEPARABLE]
    d = diffs[:, 0][~np.isnan(diffs[:, 0])]
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) >= 2 else float("nan")
    out["closest"] = _closest(rivals[0], tested.diff[0], tested.ci_low[0], tested.ci_high[0],
                              adjusted[0], int(tested.n[0]))
    out["power"] = _power(rivals[0], se, int(tested.n[0]), float(tested.diff[0]))
    return out


def _by_mean_rank(vals: Values, ranked: list[str], eligible: list[str]) -> dict:
    """Each eligible model's mean over the measures of its rank by value among the
    eligible (ties broken by the leaderboard's order), in the data and in each
    resample."""
    units = "mean rank"
    if not eligible:
        return {"reason": "no model meets the constraints", "units": units}
    at = [vals.models.index(m) for m in eligible]
    point, draws = [], []
    for measure in ranked:
        v = vals.columns[measure][:, at]
        point.append(value_ranks(column_means(v), vals.higher[measure]))
        draws.append(value_ranks(vals.boot.means(v), vals.higher[measure]))
    with warnings.catch_warnings():  # a model with no value in a resample simply has none
        warnings.simplefilter("ignore", RuntimeWarning)
        point_rank = np.nanmean(np.stack(point), axis=0)
        rank_draws = np.nanmean(np.stack(draws), axis=0)  # (resamples, eligible)
    order = sorted(range(len(eligible)), key=lambda i: (np.nan_to_num(point_rank[i], nan=np.inf),
                                                        i))
    pick = eligible[order[0]]
    share = best.first_share(rank_draws, higher=False)
    out = {"pick": pick, "p_best": float(share[order[0]]), "units": units,
           "top_set": [pick], "mean_rank": float(point_rank[order[0]])}
    if len(eligible) == 1:
        return out
    rivals = [eligible[i] for i in order[1:]]
    # positive: the pick ranks better
    behind = rank_draws[:, order[1:]] - rank_draws[:, order[:1]]
    observed = point_rank[order[1:]] - point_rank[order[0]]
    low, high = np.nanpercentile(behind, [2.5, 97.5], axis=0)
    valid = (~np.isnan(behind)).sum(axis=0)
    tail = np.minimum((behind <= 0).sum(axis=0), (behind >= 0).sum(axis=0))
    p = np.minimum(1.0, 2.0 * (tail + 1) / (valid + 1))
    adjusted = holm(p)
    out["top_set"] += [r for r, q in zip(rivals, adjusted, strict=True) if not q < SEPARABLE]
    out["closest"] = _closest(rivals[0], observed[0], low[0], high[0], adjusted[0], vals.boot.n)
    out["power"] = _power(rivals[0], float(np.nanstd(behind[:, 0], ddof=1)), vals.boot.n,
                          float(observed[0]))
    return out


def _closest(model, diff, low, high, p_adjusted, n) -> dict:
    return {"model": model, "diff": _num(diff), "ci_low": _num(low), "ci_high": _num(high),
            "p_adjusted": _num(p_adjusted), "n": n}


def _power(runner_up: str, se: float, n: int, observed: float) -> dict | None:
    if not np.isfinite(se) or se <= 0:
        return None
    needed = best.images_needed(se, n, observed)
    return {"runner_up": runner_up, "images": n, "detectable": best.detectable(se),
            "observed": observed,
            "images_needed": None if not np.isfinite(needed) else int(math.ceil(needed))}


def _num(x) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def lines(decision: dict, width: int = 100, excluded: int | None = 4) -> list[str]:
    """The decision in a few lines of at most ``width`` columns, for the terminal (first
    under the table); the first ``excluded`` exclusions (None: all), then how many
    more."""
    units = decision.get("units") or "objective"
    objective = decision["objective"]
    what = "mean rank by value over the measures" if objective == MEAN_RANK else \
        objective if isinstance(objective, str) else \
        "weights " + ", ".join(f"{k}={w:g}" for k, w in objective.items())
    said = []
    if decision["pick"] is None:
        said.append(f"Pick: none ({decision['reason']}; objective: {printable(what)})")
    else:
        pick = printable(decision["pick"])
        row = decision.get("position")
        where = f"; row {row} of the table, which orders by separable ranks" \
            if row not in (None, 1) else ""
        said.append(f"Pick: {pick}, P(best) {decision['p_best']:.2f} (objective: "
                    f"{printable(what)}; {decision['resamples']:,} resamples of "
                    f"{decision['images']} images{where})")
        top, close = decision["top_set"], decision["closest"]
        if close is not None:
            alone = " (the data separate it from every rival)" if len(top) == 1 else ""
            said.append(f"Top set, not separable from {pick} (Holm over its rivals): "
                        f"{', '.join(map(printable, top))}{alone}")
            said.append(f"Runner-up {printable(close['model'])}: {pick} ahead by "
                        f"{_g(close['diff'])} {units} "
                        f"{numbers.interval(close['ci_low'], close['ci_high'])}, p_adj "
                        f"{numbers.p_value(close['p_adjusted'])}")
        power = decision["power"]
        if power is not None:
            needed = power["images_needed"]
            at = (f"; at the observed {_g(power['observed'])}, about {needed:,} images would "
                  "separate them" if needed is not None else "")
            said.append(f"Power: {power['images']} images detect a difference of "
                        f"{_g(power['detectable'])} {units} from the runner-up with 80% "
                        f"power{at}")
    out = list(decision["excluded"].items())
    shown = out if excluded is None or len(out) <= excluded + 1 else out[:excluded]
    said += [f"Excluded {printable(m)}: {printable(why)}" for m, why in shown]
    if len(shown) < len(out):
        said.append(f"... and {len(out) - len(shown)} more excluded (`harness pick DIR --json` "
                    "gives every reason)")
    return [textwrap.fill(line, width, initial_indent="  " if i else "",
                          subsequent_indent="    ", break_on_hyphens=False)
            for i, line in enumerate(said)]


def _g(x) -> str:
    return "n/a" if x is None else f"{x:.3g}"
