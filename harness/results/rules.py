"""The grammar of a rule, shared by the gate's rules and the decision's thresholds:
``measure <op> number`` on a headline, ``measure.statistic <op> number`` on a detail row
or on a bound (``ci_low``, ``ci_high``, ``rank_low``, ``rank_high``)."""

from __future__ import annotations

import dataclasses
import operator
import re

import polars as pl

from harness.errors import HarnessError

OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
# A rule's statistic that names a bound, and the words its line tests it in: the
# headline's interval is tested on its ends, the rank set on the ranks it allows
BOUNDS = {"ci_low": "the lower end of its 95% interval",
          "ci_high": "the upper end of its 95% interval",
          "rank_low": "the best rank its rank set allows",
          "rank_high": "the worst rank its rank set allows"}
INTERVAL = ("ci_low", "ci_high")  # read from the headline row's own columns
_RULE = re.compile(r"^\s*([A-Za-z_]+)(?:\.(\S+))?\s*(<=|>=|<|>)\s*"
                   r"(-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclasses.dataclass(frozen=True)
class Rule:
    text: str
    measure: str
    statistic: str
    op: str
    bound: float


def parse_rule(text: str) -> Rule:
    match = _RULE.match(text)
    if not match:
        raise HarnessError(f"rule {text!r}: write it as 'measure <op> number' or "
                           "'measure.statistic <op> number', with <=, >=, < or >")
    measure, statistic, op, bound = match.groups()
    return Rule(text.strip(), measure, statistic or "headline", op, float(bound))


def rule_values(scores: pl.DataFrame) -> dict:
    """``(model, measure, statistic) -> value`` for every row a rule can name, the
    headline's interval ends as statistics ``ci_low`` and ``ci_high``."""
    value = {(r["model"], r["measure"], r["statistic"]): r["value"]
             for r in scores.select("model", "measure", "statistic", "value").iter_rows(named=True)}
    for r in scores.filter(pl.col("statistic") == "headline").iter_rows(named=True):
        for bound in INTERVAL:
            value[(r["model"], r["measure"], bound)] = r[bound]
    return value
