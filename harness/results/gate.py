"""CI gate: thresholds on a finished run, and no regression against a baseline run.

```toml
rules = ["entropy <= 0.6", "stability >= 0.8", "degradation.score_drop@object >= 0.5"]
applies_to = "every"     # or "best": only the top model of the leaderboard must pass
no_regression = true     # with --baseline: no headline separably worse than the baseline's
tolerance = 0.01         # ... by more than this (a number, or a table measure -> number)
test = "bootstrap-t"     # the paired test; "sign-flip" for the permutation test
```

``no_regression = "when-baseline"`` compares when ``--baseline`` is given and otherwise
says, on a SKIP line, that nothing was compared: the first run of a new repository has no
baseline, and its threshold rules alone decide. A gate whose every check was skipped
checked nothing, which is a usage error, never a pass.

A rule names a measure (its headline) or ``measure.statistic`` for a detail row, or a
bound: ``entropy.ci_high <= 0.6`` tests the upper end of the headline's 95% interval
(the model is below 0.6 with confidence, not just on its point value),
``agreement.ci_low >= 1`` the lower end, ``entropy.rank_high <= 3`` the worst rank the
model's rank set allows; each line says which bound it tested. ``p_best >= 0.5`` tests
the run's decision: the pick must come first in at least half of the resamples. A model
without a value for a rule (no family, no human maps, failed) fails that rule: a gate
that cannot check something does not pass it. A model with no rows of the measure at
all is one the measure is not about (the model itself in a parity run, whose
``parity.ssim`` and ``parity.agreement`` rows are its variants'): its check is skipped,
on a SKIP line.

A regression is judged like a pair of models (docs/measures.md, "Statistics"): each
model against the same-named model of the baseline, on the per-image differences over
the images both runs scored; it is a regression when the headline is worse with a
Holm-adjusted p below 0.05 (over all the gate's regression tests, so an unchanged model
fails a gate with at most 5% chance) and by more than the tolerance.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import polars as pl

from harness.errors import HarnessError, did_you_mean, excerpt
from harness.results import numbers
from harness.results.comparisons import SEPARABLE, paired_by_measure, test_for
from harness.results.rules import BOUNDS, INTERVAL, OPS, Rule, parse_rule, rule_values
from harness.results.schema import per_image_column
from harness.stats.bootstrap import Bootstrap
from harness.stats.paired import BOOTSTRAP_T, TESTS, holm, smallest_p
from harness.tomlfile import check_keys, read_toml

# What the gate reads of a scores file; a file without them is not a run's scores.
_COLUMNS = ("model", "measure", "statistic", "value", "ci_low", "ci_high",
            "higher_is_better", "image_set_hash", "salience_config", "seed")
_KEYS = {"rules", "applies_to", "no_regression", "tolerance", "test"}
WHEN_BASELINE = "when-baseline"
P_BEST = "p_best"  # a rule on the decision: the share of resamples the pick comes first in


@dataclasses.dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    applies_to: str = "every"
    no_regression: bool | str = False  # or WHEN_BASELINE
    tolerance: float | dict = 0.0
    test: str = BOOTSTRAP_T

    def tolerance_for(self, measure: str) -> float:
        if isinstance(self.tolerance, dict):
            return self.tolerance.get(measure, 0.0)
        return self.tolerance


@dataclasses.dataclass(frozen=True)
class Check:
    """One checked line: a rule or a regression test for one model."""

    model: str
    what: str
    value: float | None
    detail: str
    passed: bool
    skipped: bool = False  # not checked, and said so (never counted as passed)


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
    if not isinstance(no_regression, bool) and no_regression != WHEN_BASELINE:
        raise HarnessError(f"{path}: no_regression must be true, false or "
                           f'"{WHEN_BASELINE}"')
    if not rules and not no_regression:
        raise HarnessError(f"{path}: no rules and no_regression is off: nothing to check")
    tolerance = doc.get("tolerance", 0.0)
    numbers = tolerance.values() if isinstance(tolerance, dict) else [tolerance]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) and t >= 0
               for t in numbers):
        raise HarnessError(f"{path}: tolerance must be a number >= 0 or a table of them by "
                           "measure (in the measure's units)")
    test = doc.get("test", BOOTSTRAP_T)
    if test not in TESTS:
        raise HarnessError(f"{path}: test must be one of {', '.join(TESTS)}, got "
                           f"{excerpt(test)}")
    return Rules(tuple(parse_rule(r) for r in rules), applies_to, no_regression, tolerance,
                 test)


def check(scores: pl.DataFrame, rules: Rules, baseline: pl.DataFrame | None = None, *,
          per_image: pl.DataFrame | None = None, baseline_per_image: pl.DataFrame | None = None,
          order: list[str] | None = None, decision: dict | None = None) -> list[Check]:
    """Every rule for every model it applies to, then the regression checks.

    Args:
        scores, per_image: the run's long scores and per-image values.
        rules: what to check.
        baseline, baseline_per_image: the baseline run's, for ``no_regression``.
        order: the models in leaderboard order (``applies_to = "best"`` takes the first);
            default: the leaderboard rebuilt from ``per_image``.
        decision: the run's decision (:mod:`harness.results.decision`), for rules on
            ``p_best``.

    Raises:
        HarnessError: a rule names what the run lacks, a scores file is not a run's, the
            baseline was made on other images, settings or measures, or nothing at all
            was checked (a gate that checks nothing must not pass).
    """
    _require_columns(scores, "the run")
    available = set(zip(scores["measure"].to_list(), scores["statistic"].to_list(), strict=True))
    measures = sorted({m for m, _ in available})
    for rule in rules.rules:
        if rule.measure == P_BEST:
            if rule.statistic != "headline":
                raise HarnessError(f"rule {rule.text!r}: p_best has no statistic "
                                   f"{rule.statistic!r}; write 'p_best >= 0.5'")
            if decision is None:
                raise HarnessError(f"rule {rule.text!r}: tests the run's decision; pass it")
            continue
        if rule.measure not in measures:
            raise HarnessError(f"rule {rule.text!r}: measure {rule.measure!r} is not in this "
                               f"run (measures: {', '.join(measures)})")
        wanted = "headline" if rule.statistic in INTERVAL else rule.statistic
        if (rule.measure, wanted) not in available:
            stats = sorted(s for m, s in available if m == rule.measure)
            hint = did_you_mean(rule.statistic, stats)
            raise HarnessError(f"rule {rule.text!r}: {rule.measure} has no statistic "
                               f"{rule.statistic!r}{hint}")
    if isinstance(rules.tolerance, dict):
        for name in rules.tolerance:
            if name not in measures:
                raise HarnessError(f"tolerance: {excerpt(name)} is not a measure of this run"
                                   f"{did_you_mean(name, measures)} (measures: "
                                   f"{', '.join(measures)})")
    if order is None:
        order = _order(scores, per_image) if rules.applies_to == "best" \
            else scores["model"].unique(maintain_order=True).to_list()
    models = order[:1] if rules.applies_to == "best" else list(order)
    if not models:
        raise HarnessError("the gate checked nothing: the run has no model to apply the "
                           "rules to")
    value = rule_values(scores)
    measured = set(zip(scores["model"].to_list(), scores["measure"].to_list(), strict=True))
    checks = []
    for rule in rules.rules:
        if rule.measure == P_BEST:
            checks.append(_p_best(rule, decision))
            continue
        for model in models:
            if (model, rule.measure) not in measured:
                # e.g. the model a parity run compares its variants with: a model that
                # has no value fails, one the measure is not about is not checked
                checks.append(Check(model, rule.text, None, f"(no {rule.measure} rows for "
                                    "this model: not checked)", True, skipped=True))
                continue
            v = value.get((model, rule.measure, rule.statistic))
            tested = f" ({BOUNDS[rule.statistic]})" if rule.statistic in BOUNDS else ""
            checks.append(Check(model, rule.text, v, f"{rule.op} {rule.bound:g}{tested}",
                                v is not None and OPS[rule.op](v, rule.bound)))
    if rules.no_regression and baseline is None and rules.no_regression == WHEN_BASELINE:
        checks.append(Check("-", "no_regression", None, "(no baseline given: nothing "
                            "compared; the rules above decide)", True, skipped=True))
    elif rules.no_regression:
        if baseline is None:
            raise HarnessError("no_regression is on: pass --baseline RUN_DIR (or set "
                               f'no_regression = "{WHEN_BASELINE}" to compare only when one '
                               "is given)")
        _require_columns(baseline, "the baseline")
        check_comparable(scores, baseline)
        if per_image is None or baseline_per_image is None:
            raise HarnessError("no_regression compares per-image values: pass both runs' "
                               "per_image.parquet")
        checks += _regressions(scores, per_image, baseline, baseline_per_image, models, rules)
    if all(c.skipped for c in checks):
        small = [c for c in checks if c.detail.startswith("(n ")]
        if small:
            raise HarnessError(f"the gate checked nothing: {small[0].detail.strip('()')}")
        raise HarnessError("the gate checked nothing: no rule applied to the run's models")
    return checks


def _p_best(rule, decision: dict) -> Check:
    """``p_best >= 0.5``: one line, for the run's pick."""
    if decision.get("pick") is None:
        return Check("-", rule.text, None, f"(no pick: {decision.get('reason')})", False)
    v = decision["p_best"]
    return Check(decision["pick"], rule.text, v, f"{rule.op} {rule.bound:g} (the share of "
                 "resamples in which the pick comes first)", OPS[rule.op](v, rule.bound))


def _order(scores: pl.DataFrame, per_image: pl.DataFrame | None) -> list[str]:
    """The models in leaderboard order."""
    from harness.results.comparisons import model_pairs, values
    from harness.results.leaderboard import build

    if per_image is None:
        raise HarnessError('applies_to = "best" needs the leaderboard: pass the per-image '
                           "values or the order")
    return build(scores, per_image, model_pairs(values(scores, per_image)))["model"].to_list()


def _require_columns(frame: pl.DataFrame, what: str) -> None:
    missing = [c for c in _COLUMNS if c not in frame.columns]
    if missing:
        raise HarnessError(f"{what}'s scores lack the column(s) {', '.join(missing)}: not "
                           "the scores.parquet of a harness run")


def check_comparable(scores: pl.DataFrame, baseline: pl.DataFrame) -> None:
    """A regression is judged only against a baseline of the same images, salience
    settings, seed and measures."""
    for column, what in (("image_set_hash", "another image set"),
                         ("salience_config", "other salience settings"),
                         ("seed", "another seed")):
        ours = set(scores[column].drop_nulls().to_list())
        theirs = set(baseline[column].drop_nulls().to_list())
        if ours != theirs:
            raise HarnessError(f"the baseline was made with {what} "
                               f"({_contrast(column, theirs, ours)}); no_regression compares "
                               "runs of the same images, salience settings and seed")
    missing = sorted(set(scores["measure"].to_list()) - set(baseline["measure"].to_list()))
    if missing:
        raise HarnessError(f"the baseline has no {', '.join(missing)}: it was run with other "
                           "measures")


def _contrast(column: str, theirs: set, ours: set) -> str:
    """How the baseline's values of ``column`` differ from the run's, in words that
    show the difference: hashes whole, salience settings by the keys that differ."""
    def listed(values):
        return ", ".join(excerpt(str(v), 80) for v in sorted(values, key=str)) or "none"

    if column == "salience_config" and len(theirs) == len(ours) == 1:
        import json

        try:
            a, b = json.loads(next(iter(theirs))), json.loads(next(iter(ours)))
        except ValueError:
            a = b = None
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            return "; ".join(f"{excerpt(k)} {excerpt(a.get(k))} against {excerpt(b.get(k))}"
                             for k in keys[:6])
    if column == "image_set_hash":  # whole: two hashes may share any prefix
        return f"{', '.join(sorted(map(str, theirs)))} against {', '.join(sorted(map(str, ours)))}"
    return f"{listed(theirs)} against {listed(ours)}"


def _regressions(scores, per_image, baseline, baseline_per_image, models, rules
                 ) -> list[Check]:
    """Each model's headlines against the same-named model of the baseline, paired over
    the images both scored; a model the baseline does not have (or could not score)
    fails, since nothing could be checked for it."""
    base = baseline_values(baseline)
    out, tests = [], []
    for r in scores.filter(pl.col("statistic") == "headline").iter_rows(named=True):
        if r["model"] not in models:
            continue
        status = comparable_value(r, base)
        if status == "neither":
            continue
        if status is not None:
            out.append(status)
            continue
        tests.append((r, len(out)))
        out.append(None)
    if tests:
        keys = per_image["image"].unique(maintain_order=True).to_list()
        diffs = np.stack([_differences(per_image, baseline_per_image, r["model"],
                                       r["measure"], keys) for r, _ in tests], axis=1)
        measures = [r["measure"] for r, _ in tests]
        result = paired_by_measure(diffs, measures, Bootstrap(int(scores["seed"][0]), keys),
                                   rules.test)
        adjusted = holm(result.p_value)
        # Holm multiplies the smallest p by the number of tests: below this floor no
        # change, however large, is separable, and saying "not separable" would pass it
        floor = len(tests) * np.array([smallest_p(n, test_for(m, rules.test))
                                       for n, m in zip(result.n, measures, strict=True)])
        for j, (r, at) in enumerate(tests):
            if result.n[j] and floor[j] >= SEPARABLE:
                out[at] = Check(r["model"], f"{r['measure']} vs baseline", r["value"],
                                f"(n {result.n[j]}: with {len(tests)} regression tests no "
                                f"change can reach p_adj < {SEPARABLE:g} on so few images, the "
                                f"smallest possible is {min(floor[j], 1.0):.2g}: not checked; "
                                "score more images)", True, skipped=True)
                continue
            out[at] = _verdict(r, result, j, adjusted[j], rules.tolerance_for(r["measure"]))
    return out


def baseline_values(baseline: pl.DataFrame) -> dict:
    """``(model, measure) -> headline value`` of the baseline run."""
    return {(m, s): v for m, s, v in baseline.filter(pl.col("statistic") == "headline")
            .select("model", "measure", "value").rows()}


def comparable_value(row: dict, base: dict) -> Check | str | None:
    """Whether a headline row of the run can be compared with the baseline's: None when
    both have a value; ``"neither"`` when the measure applies to neither (stability
    without a family); else the failing check that says what is missing, since nothing
    could be checked for it."""
    key = (row["model"], row["measure"])
    if key in base and base[key] is None and row["value"] is None:
        return "neither"
    if key in base and base[key] is not None and row["value"] is not None:
        return None
    why = ("model missing from the baseline" if key not in base else
           "no baseline value" if base[key] is None else "no value in this run")
    return Check(row["model"], f"{row['measure']} vs baseline", row["value"], f"({why})",
                 False)


def _differences(run: pl.DataFrame, baseline: pl.DataFrame, model: str, measure: str,
                 keys: list[str]) -> np.ndarray:
    """Per-image run - baseline over ``keys``, NaN where either has no value."""
    return per_image_column(run, model, measure, keys) - \
        per_image_column(baseline, model, measure, keys)


def _verdict(r: dict, result, j: int, p_adjusted: float, tolerance: float) -> Check:
    what = f"{r['measure']} vs baseline"
    if result.n[j] == 0:
        return Check(r["model"], what, r["value"], "(no image scored in both runs)", False)
    sign = 1.0 if r["higher_is_better"] else -1.0
    worse_by = -sign * result.diff[j]
    regressed = p_adjusted < SEPARABLE and worse_by > tolerance
    if regressed:
        verdict = "worse"
    elif p_adjusted >= SEPARABLE:
        verdict = "not separable"
    else:
        verdict = "better" if worse_by < 0 else "worse, within tolerance"
    text = (f"(change {result.diff[j]:+.3g} "
            f"{numbers.interval(result.ci_low[j], result.ci_high[j], '+.3g')}, p_adj "
            f"{numbers.p_value(p_adjusted)}, n {result.n[j]}: {verdict}"
            f"{f', tolerance {tolerance:g}' if tolerance else ''})")
    return Check(r["model"], what, r["value"], text, not regressed)
