"""CI gate: thresholds on a finished run, and no regression against a baseline run.

```toml
rules = ["entropy <= 0.6", "stability >= 0.8", "degradation.score_drop@object >= 0.5"]
applies_to = "every"     # or "best": only the top model of the leaderboard must pass
no_regression = true     # with --baseline: no headline worse than the baseline's 95% interval
```

A rule names a measure (its headline) or ``measure.statistic`` for a detail row. A model
without a value for a rule (no family, no human maps, failed) fails that rule: a gate
that cannot check something does not pass it.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from pathlib import Path

import polars as pl

from harness.errors import HarnessError, did_you_mean, excerpt
from harness.tomlfile import check_keys, read_toml

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_RULE = re.compile(r"^\s*([A-Za-z_]+)(?:\.(\S+))?\s*(<=|>=|<|>)\s*"
                   r"(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
# What the gate reads of a scores file; a file without them is not a run's scores.
_COLUMNS = ("model", "measure", "statistic", "value", "ci_low", "ci_high",
            "higher_is_better", "image_set_hash", "salience_config")
_KEYS = {"rules", "applies_to", "no_regression"}


@dataclasses.dataclass(frozen=True)
class Rule:
    text: str
    measure: str
    statistic: str
    op: str
    bound: float


@dataclasses.dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    applies_to: str = "every"
    no_regression: bool = False


@dataclasses.dataclass(frozen=True)
class Check:
    """One checked line: a rule or a regression test for one model."""

    model: str
    what: str
    value: float | None
    bound: str
    passed: bool


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text)
    if not match:
        raise HarnessError(f"rule {text!r}: write it as 'measure <op> number' or "
                           "'measure.statistic <op> number', with <=, >=, < or >")
    measure, statistic, op, bound = match.groups()
    return Rule(text.strip(), measure, statistic or "headline", op, float(bound))


def read_rules(path) -> Rules:
    path = Path(path)
    doc = read_toml(path, "rules file")
    check_keys(doc, _KEYS, str(path))
    rules = doc.get("rules", [])
    if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
        raise HarnessError(f"{path}: 'rules' must be a list of strings")
    applies_to = doc.get("applies_to", "every")
    if applies_to not in ("every", "best"):
        raise HarnessError(f"{path}: applies_to must be 'every' or 'best', got {applies_to!r}")
    no_regression = doc.get("no_regression", False)
    if not isinstance(no_regression, bool):
        raise HarnessError(f"{path}: no_regression must be true or false")
    if not rules and not no_regression:
        raise HarnessError(f"{path}: no rules and no_regression is off: nothing to check")
    return Rules(tuple(parse_rule(r) for r in rules), applies_to, no_regression)


def check(scores: pl.DataFrame, rules: Rules, baseline: pl.DataFrame | None = None
          ) -> list[Check]:
    """Every rule for every model it applies to, then the regression checks.

    Raises:
        HarnessError: a rule names what the run lacks, a scores file is not a run's, the
            baseline was made on other images, settings or measures, or nothing at all
            was checked (a gate that checks nothing must not pass).
    """
    from harness.results.leaderboard import build

    _require_columns(scores, "the run")
    available = set(zip(scores["measure"].to_list(), scores["statistic"].to_list(), strict=True))
    measures = sorted({m for m, _ in available})
    for rule in rules.rules:
        if rule.measure not in measures:
            raise HarnessError(f"rule {rule.text!r}: measure {rule.measure!r} is not in this "
                               f"run (measures: {', '.join(measures)})")
        if (rule.measure, rule.statistic) not in available:
            stats = sorted(s for m, s in available if m == rule.measure)
            hint = did_you_mean(rule.statistic, stats)
            raise HarnessError(f"rule {rule.text!r}: {rule.measure} has no statistic "
                               f"{rule.statistic!r}{hint}")
    board = build(scores)
    models = board["model"].to_list()
    if rules.applies_to == "best":
        models = models[:1]
    if not models:
        raise HarnessError("the gate checked nothing: the run has no model to apply the "
                           "rules to")
    value = {(r["model"], r["measure"], r["statistic"]): r["value"]
             for r in scores.select("model", "measure", "statistic", "value").iter_rows(named=True)}
    checks = []
    for rule in rules.rules:
        for model in models:
            v = value.get((model, rule.measure, rule.statistic))
            checks.append(Check(model, rule.text, v, f"{rule.op} {rule.bound:g}",
                                v is not None and OPS[rule.op](v, rule.bound)))
    if rules.no_regression:
        if baseline is None:
            raise HarnessError("no_regression is on: pass --baseline RUN_DIR")
        _require_columns(baseline, "the baseline")
        _check_comparable(scores, baseline)
        checks += _regressions(scores, baseline, models)
    if not checks:
        raise HarnessError("the gate checked nothing: no rule applied to the run's models")
    return checks


def _require_columns(frame: pl.DataFrame, what: str) -> None:
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise HarnessError(f"{what}'s scores lack the column(s) {', '.join(missing)}: not "
                           "the scores.parquet of a harness run")


def _check_comparable(scores: pl.DataFrame, baseline: pl.DataFrame) -> None:
    """A regression is judged only against a baseline of the same images, salience
    settings and measures."""
    for column, what in (("image_set_hash", "another image set"),
                         ("salience_config", "other salience settings")):
        ours = set(scores[column].drop_nulls().to_list())
        theirs = set(baseline[column].drop_nulls().to_list())
        if ours != theirs:
            def shown(values):
                return ", ".join(excerpt(v, 60) for v in sorted(values)) or "none"

            raise HarnessError(f"the baseline was made with {what} ({shown(theirs)} against "
                               f"{shown(ours)}); no_regression compares runs of the same "
                               "images and salience settings")
    missing = sorted(set(scores["measure"].to_list()) - set(baseline["measure"].to_list()))
    if missing:
        raise HarnessError(f"the baseline has no {', '.join(missing)}: it was run with other "
                           "measures")


def _regressions(scores, baseline, models) -> list[Check]:
    """A headline is a regression when it is worse than the baseline's 95% interval; a
    model the baseline does not have (or could not score) fails, since nothing could
    be checked for it."""
    base = {(r["model"], r["measure"]): r for r in
            baseline.filter(pl.col("statistic") == "headline").iter_rows(named=True)}
    out = []
    for r in scores.filter(pl.col("statistic") == "headline").iter_rows(named=True):
        if r["model"] not in models:
            continue
        what = f"{r['measure']} no regression"
        b = base.get((r["model"], r["measure"]))
        if b is not None and b["value"] is None and r["value"] is None:
            continue  # the measure applies to neither (e.g. stability without a family)
        if b is None or b["value"] is None:
            why = "model missing from the baseline" if b is None else "no baseline value"
            out.append(Check(r["model"], what, r["value"], f"({why})", False))
            continue
        bound = b["ci_low"] if r["higher_is_better"] else b["ci_high"]
        if bound is None:
            raise HarnessError(f"the baseline's {r['measure']} of {r['model']} has a value but "
                               "no interval: not the scores of a harness run")
        if r["higher_is_better"]:
            ok = r["value"] is not None and r["value"] >= bound
            text = f">= {bound:.4g} (baseline low)"
        else:
            ok = r["value"] is not None and r["value"] <= bound
            text = f"<= {bound:.4g} (baseline high)"
        out.append(Check(r["model"], what, r["value"], text, ok))
    return out
