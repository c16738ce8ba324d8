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

from harness.errors import HarnessError, did_you_mean
from harness.tomlfile import check_keys, read_toml

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_RULE = re.compile(r"^\s*([A-Za-z_]+)(?:\.(\S+))?\s*(<=|>=|<|>)\s*(-?[0-9.]+(?:[eE]-?\d+)?)\s*$")
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
    """Every rule for every model it applies to, then the regression checks."""
    from harness.results.leaderboard import build

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
        checks += _regressions(scores, baseline, models)
    return checks


def _regressions(scores, baseline, models) -> list[Check]:
    """A headline is a regression when it is worse than the baseline's 95% interval."""
    base = {(r["model"], r["measure"]): r for r in
            baseline.filter(pl.col("statistic") == "headline").iter_rows(named=True)}
    out = []
    for r in scores.filter(pl.col("statistic") == "headline").iter_rows(named=True):
        b = base.get((r["model"], r["measure"]))
        if r["model"] not in models or b is None or b["value"] is None:
            continue
        if r["higher_is_better"]:
            bound, ok = b["ci_low"], r["value"] is not None and r["value"] >= b["ci_low"]
            text = f">= {bound:.4g} (baseline low)"
        else:
            bound, ok = b["ci_high"], r["value"] is not None and r["value"] <= b["ci_high"]
            text = f"<= {bound:.4g} (baseline high)"
        out.append(Check(r["model"], f"{r['measure']} no regression", r["value"], text, ok))
    return out
