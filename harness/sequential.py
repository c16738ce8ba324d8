"""``harness run --until-decided``: score the images a look at a time and stop when the
questions asked of the run are decided (docs/measures.md, "Sequential evaluation").

The images are taken in a seeded order stratified by label (the nested draw of
``--limit``), ``look`` more at each look, up to the ``budget``. After each look the
per-image values the questions need are tested with repeated confidence intervals
(:mod:`harness.stats.sequential`) at alpha / Q for Q questions, so the chance of any
wrong verdict over all looks and questions stays under alpha. The questions:

- with ``rules`` (a gate file): each regression against ``baseline_run`` (a model's
  headline worse than the same-named baseline model's by more than the tolerance, on
  the images both have) **fails** when the interval of the change lies wholly beyond
  the tolerance and **passes** when it lies wholly within it; each rule on a headline
  or on an end of its interval fails or passes when the interval of the model's mean
  lies wholly on one side of the bound. Rules on other statistics, ranks or ``p_best``
  are checked once, at the last look, by the fixed-n gate. A failure stops the run at
  once; a pass needs every question decided. At the budget an undecided regression
  passes (no regression was shown) and an undecided rule is checked as the fixed-n gate
  checks it.
- without rules, with a one-measure objective: the leader on that measure against
  every other model; otherwise every pair of models on every measure. The run stops
  when all are decided.

Every look scores the images so far through the same cache, so each map is computed
once; workers never see the stopping rule (looks happen between ``score`` calls).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import polars as pl

from harness.errors import HarnessError
from harness.results import numbers
from harness.results.gate import P_BEST, Check, Rules, baseline_values, comparable_value
from harness.results.rules import INTERVAL, OPS
from harness.results.schema import per_image_column
from harness.stats import sequential as design

ALPHA = 0.05
DECIDABLE = ("headline", *INTERVAL)  # rule statistics a look can decide
METHOD = ("group-sequential: Lan-DeMets O'Brien-Fleming spending over the planned looks, "
          "Hall's skew-corrected studentised interval, Bonferroni over the questions")


@dataclasses.dataclass(frozen=True)
class Question:
    """One thing a look tests.

    Attributes:
        model: the model asked about (for a pair, the first).
        measure: the headline measure whose per-image values are tested.
        kind: ``"regression"``, ``"rule"`` or ``"pair"``.
        what: how a line names it (``"agreement vs baseline"``, the rule's text).
        op, bound, statistic: a rule's comparison, and what it names (the headline or
            an end of its interval).
        tolerance: a regression's allowance, in the measure's units.
        higher: the measure's direction.
        other: a pair's second model.
    """

    model: str
    measure: str
    kind: str
    what: str
    op: str = ""
    bound: float = 0.0
    statistic: str = "headline"
    tolerance: float = 0.0
    higher: bool = True
    other: str | None = None


@dataclasses.dataclass
class State:
    """Where a question stands: ``verdict`` None while open, else ``"fail"``, ``"pass"``
    or ``"decided"`` (a pair), with the look, the images and the interval it was
    decided on (or the latest ones while open)."""

    question: Question
    verdict: str | None = None
    look: int | None = None
    images: int = 0
    n: int = 0
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan

    def record(self) -> dict:
        q = self.question
        return {"model": q.model, "what": q.what, "measure": q.measure, "kind": q.kind,
                "other": q.other, "verdict": self.verdict, "look": self.look,
                "images": self.images, "n": self.n, "estimate": _finite(self.estimate),
                "ci_low": _finite(self.low), "ci_high": _finite(self.high)}


def plan_looks(total: int, look: int, budget: int) -> list[int]:
    """The images scored at each look: ``look``, ``2 look``, ... up to the budget
    (default: every image), the last look at the budget itself."""
    end = min(budget or total, total)
    return sorted({min(k * look, end) for k in range(1, math.ceil(end / look) + 1)})


def gate_questions(rules: Rules, scores: pl.DataFrame, per_image: pl.DataFrame,
                   baseline: pl.DataFrame | None) -> tuple[list[Question], list]:
    """The questions a look can decide, and the rules only the last look can check."""
    if rules.applies_to != "every":
        raise HarnessError('applies_to = "best" names the leaderboard\'s first model, which '
                           'can change from look to look: use applies_to = "every" with '
                           "--until-decided")
    heads = scores.filter(pl.col("statistic") == "headline")
    higher = dict(heads.select("measure", "higher_is_better").unique("measure").rows())
    with_values = set(per_image["measure"].unique().to_list())
    models = scores["model"].unique(maintain_order=True).to_list()
    questions, deferred = [], []
    for rule in rules.rules:
        if rule.measure == P_BEST or rule.statistic not in DECIDABLE \
                or rule.measure not in with_values:
            deferred.append(rule)
            continue
        questions += [Question(m, rule.measure, "rule", rule.text, rule.op, rule.bound,
                               rule.statistic, higher=higher[rule.measure]) for m in models]
    if rules.no_regression and baseline is not None:
        base = baseline_values(baseline)
        for row in heads.iter_rows(named=True):
            # a row without a value on one side fails at once (_missing_from), one
            # without on either is not the measure's (stability without a family)
            if row["measure"] in with_values and comparable_value(row, base) is None:
                questions.append(Question(
                    row["model"], row["measure"], "regression", f"{row['measure']} vs "
                    "baseline", tolerance=rules.tolerance_for(row["measure"]),
                    higher=row["higher_is_better"]))
    return questions, deferred


def pair_questions(scores: pl.DataFrame, per_image: pl.DataFrame,
                   objective: str) -> list[Question]:
    """Without rules: the leader on a one-measure objective against every other model,
    or every pair of models on every measure."""
    heads = scores.filter(pl.col("statistic") == "headline")
    with_values = set(per_image["measure"].unique().to_list())
    higher = dict(heads.select("measure", "higher_is_better").unique("measure").rows())
    models = scores["model"].unique(maintain_order=True).to_list()
    if objective in with_values:
        value = {m: v for m, s, v in heads.select("model", "measure", "value").rows()
                 if s == objective and v is not None}
        if not value:
            return []
        leader = (max if higher[objective] else min)(value, key=value.get)
        return [Question(leader, objective, "pair", f"{objective}: leader vs {m}",
                         higher=higher[objective], other=m) for m in value if m != leader]
    return [Question(a, m, "pair", f"{m}: {a} vs {b}", higher=higher[m], other=b)
            for m in sorted(with_values) for a, b in itertools.combinations(models, 2)]


def question_values(q: Question, per_image: pl.DataFrame, keys: list[str],
                    baseline_per_image: pl.DataFrame | None = None) -> np.ndarray:
    """The per-image values ``q`` tests the mean of (NaN where an image has none): a
    rule's own values, a regression's worsening (positive: worse than the baseline), a
    pair's differences."""
    own = per_image_column(per_image, q.model, q.measure, keys)
    if q.kind == "rule":
        return own
    if q.kind == "regression":
        base = per_image_column(baseline_per_image, q.model, q.measure, keys)
        return (base - own) if q.higher else (own - base)
    return own - per_image_column(per_image, q.other, q.measure, keys)


def judge(q: Question, low: float, high: float) -> str | None:
    """The verdict an interval ``[low, high]`` of the tested mean allows, or None."""
    if q.kind == "regression":
        return "fail" if low > q.tolerance else "pass" if high <= q.tolerance else None
    if q.kind == "pair":
        return "decided" if low > 0 or high < 0 else None
    holds = OPS[q.op]
    upper_side = q.op in ("<=", "<")  # the rule asks the mean to stay below the bound
    best, worst = (high, low) if upper_side else (low, high)
    return "pass" if holds(best, q.bound) else "fail" if not holds(worst, q.bound) else None


class Looks:
    """The questions' states across looks, tested at ``alpha / len(questions)``."""

    def __init__(self, questions: list[Question], looks: list[int], alpha: float = ALPHA,
                 latch: bool = True):
        self.states = [State(q) for q in questions]
        self.looks = looks
        self.latch = latch  # a decided question stays decided
        level = alpha / max(len(questions), 1)
        try:
            self.critical = design.boundaries(np.asarray(looks) / looks[-1], level)
        except ValueError as exc:  # refused, rather than verdicts at an unknown level
            raise HarnessError(f"--until-decided: {exc} ({len(looks)} looks, alpha "
                               f"{level:.2g} per question); take fewer looks (--look)"
                               ) from None

    def update(self, k: int, images: int, columns: list[np.ndarray]) -> None:
        """Test look ``k`` (0-based; ``images`` scored), one column of values per state."""
        for state, v in zip(self.states, columns, strict=True):
            if self.latch and state.verdict is not None:
                continue
            n, mean, sd, skew = design.moments(v)
            if n < 2:
                low = high = math.nan
                verdict = None
            else:
                low, high = (float(x) for x in design.interval(n, mean, sd, skew,
                                                               self.critical[k]))
                verdict = judge(state.question, low, high)
            state.verdict, state.look, state.images = verdict, k + 1, images
            state.n, state.estimate, state.low, state.high = n, mean, low, high

    def failed(self) -> bool:
        return any(s.verdict == "fail" for s in self.states)

    def settled(self) -> bool:
        return all(s.verdict is not None for s in self.states)


def final_checks(states: list[State], values: dict, stopped_at: int, at_budget: bool
                 ) -> list[Check]:
    """The gate's lines for the sequential questions: decided ones with the look and
    interval they were decided on; at the budget an undecided regression passes and an
    undecided rule is checked on its value in the final run (``values``: the gate's
    ``rule_values``); before it (a failure stopped the run) undecided ones are skipped."""
    out = []
    for s in states:
        q = s.question
        shown = _interval(s)
        own = values.get((q.model, q.measure, "headline"))  # the line shows the run's value
        if s.verdict is not None:
            why = "shown beyond" if s.verdict == "fail" else "shown within"
            tail = (f"{why} tolerance {q.tolerance:g}" if q.kind == "regression" else
                    f"the interval {'meets' if s.verdict == 'pass' else 'fails'} "
                    f"{q.op} {q.bound:g}")
            out.append(Check(q.model, q.what, own, f"(decided at look {s.look}, "
                             f"{s.images} images: {shown}; {tail})", s.verdict == "pass"))
        elif not at_budget:
            out.append(Check(q.model, q.what, own, f"(undecided when the run "
                             f"stopped at {stopped_at} images: {shown})", True, skipped=True))
        elif q.kind == "regression":
            out.append(Check(q.model, q.what, own, f"(undecided at {stopped_at} "
                             f"images: {shown}; no regression shown)", True))
        else:
            v = values.get((q.model, q.measure, q.statistic))
            out.append(Check(q.model, q.what, v, f"(undecided at {stopped_at} images: "
                             f"{shown}; checked on its value, {q.op} {q.bound:g})",
                             v is not None and OPS[q.op](v, q.bound)))
    return out


def _interval(s: State) -> str:
    if s.n < 2:
        return f"n {s.n}, no interval"
    name = "worse by" if s.question.kind == "regression" else "mean"
    return (f"{name} {s.estimate:+.3g} {numbers.interval(s.low, s.high, '+.3g')}, "
            f"n {s.n}")


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


@dataclasses.dataclass
class Outcome:
    """A sequential run's last look: what it scored (``scored`` over the images
    ``inset``, with their ``examples``), the questions' states, the rules left to the
    last look, and the looks taken."""

    scored: object
    inset: object
    examples: object
    states: list[State]
    deferred: list
    failing: list[Check]
    looks: list[int]
    history: list[dict]
    total: int
    passes_computed: int
    passes_full: int
    has_rules: bool

    @property
    def at_budget(self) -> bool:
        return self.history[-1]["images"] == self.looks[-1]

    def checks(self, scores: pl.DataFrame, decision: dict) -> list[Check] | None:
        """The gate's lines at stopping (None without rules)."""
        if not self.has_rules:
            return None
        from harness.results.gate import check
        from harness.results.rules import rule_values

        images = self.history[-1]["images"]
        out = list(self.failing) + final_checks(self.states, rule_values(scores), images,
                                                self.at_budget)
        if self.deferred and self.at_budget:
            out += check(scores, Rules(tuple(self.deferred)), decision=decision)
        else:
            out += [Check("-", r.text, None, f"(checked only at the last look; the run "
                         f"stopped at {images} images)", True, skipped=True)
                    for r in self.deferred]
        return out

    def record(self, scores: pl.DataFrame, checks: list[Check] | None) -> dict:
        """What ``run.json`` keeps under ``"sequential"``."""
        used = int(scores.unique("model")["forward_passes"].sum())
        decided = [s for s in self.states if s.verdict is not None]
        stopped = ("failed" if any(not c.passed for c in self.failing) or any(
            s.verdict == "fail" for s in self.states) else
            "budget" if self.at_budget and len(decided) < len(self.states) else "decided")
        return {"method": METHOD, "alpha": ALPHA, "questions": len(self.states),
                "look": self.looks[0], "looks_planned": self.looks,
                "images_total": self.total, "budget": self.looks[-1],
                "images_used": self.history[-1]["images"], "stopped": stopped,
                "passes_used": used, "passes_computed": self.passes_computed,
                "passes_full": self.passes_full, "looks": self.history,
                "states": [s.record() for s in self.states],
                "checks": None if checks is None else [
                    {"model": c.model, "what": c.what, "value": c.value, "detail": c.detail,
                     "passed": c.passed, "skipped": c.skipped} for c in checks]}


def run_looks(models, inset, how, oos: dict, config, say) -> Outcome:
    """Score ``inset`` look by look (module docstring) and stop when decided."""
    from harness.inputs.images import stratified_order
    from harness.report.examples import Examples
    from harness.results import reading
    from harness.results.gate import read_rules
    from harness.rundir import RunDir
    from harness.runner import score

    looks = plan_looks(len(inset), config.look, config.budget)
    rules = read_rules(config.rules) if config.rules is not None else None
    baseline = baseline_values = None
    if config.baseline_run is not None:
        folder = RunDir(config.baseline_run)
        baseline = reading.scores(folder)
        baseline_values = reading.per_image(folder, baseline)
    elif rules is not None and rules.no_regression is True:
        raise HarnessError("no_regression is on: pass --baseline-run RUN_DIR (or set "
                           'no_regression = "when-baseline")')
    objective = config.decision.objective
    objective = objective if isinstance(objective, str) else ""  # weights: every pair
    # the images in the order they are drawn (the nested draw of --limit), so each look
    # adds whole units after the cached ones of the looks before
    order = stratified_order(inset.labels, len(inset), config.seed)
    tracker, deferred, failing, history, computed, made = None, [], [], [], 0, 0
    for k, n in enumerate(looks):
        subset = inset.subset(order[:n])
        examples = Examples(subset, config.seed, config.noise_levels)
        scored = score(models, subset, dataclasses.replace(how, on_model=examples.add),
                       out_of_set=oos)
        computed += scored.spent.computed_passes
        made += scored.spent.computed_maps
        keys = scored.per_image["image"].unique(maintain_order=True).to_list()
        # with a one-measure objective and no rules, the leader may change: its
        # questions are asked afresh at each look; the gate's are asked once
        afresh = rules is None and objective in set(scored.per_image["measure"])
        if tracker is None or afresh:
            questions, deferred, failing = _ask(rules, scored, baseline, inset.hash,
                                                objective)
            tracker = Looks(questions, looks, latch=not afresh)
        tracker.update(k, n, [question_values(s.question, scored.per_image, keys,
                                              baseline_values) for s in tracker.states])
        open_ = sum(s.verdict is None for s in tracker.states)
        history.append({"look": k + 1, "images": n, "passes_computed": computed,
                        "passes_used": int(scored.scores.unique("model")[
                            "forward_passes"].sum()),
                        "open": open_, "failed": sum(s.verdict == "fail"
                                                     for s in tracker.states)})
        say(f"look {k + 1} of {len(looks)}: {n} images, "
            f"{len(tracker.states) - open_} of {len(tracker.states)} questions decided"
            + (", a failure shown: stopping" if tracker.failed() or failing else ""))
        if failing or tracker.failed() or (tracker.settled() and not deferred):
            break
    full = _full_passes(scored.scores, how, oos, n, len(inset))
    # what the run as a whole computed, and reused of maps it did not compute itself
    spent = scored.spent
    scored = dataclasses.replace(scored, spent=dataclasses.replace(
        spent, computed_passes=computed, computed_maps=made,
        reused_maps=spent.reused_maps - (made - spent.computed_maps)))
    return Outcome(scored, subset, examples, tracker.states, deferred, failing, looks,
                   history, len(inset), computed, full, rules is not None)


def _ask(rules, scored, baseline, set_hash: str, objective: str):
    """The questions of this look's scores: ``(questions, rules left to the last look,
    checks failed at once)``."""
    from harness.results.gate import check_comparable

    if rules is None:
        questions = pair_questions(scored.scores, scored.per_image, objective)
        if not questions:
            raise HarnessError("--until-decided: fewer than two models scored, so there is "
                               "nothing to decide; run without it")
        return questions, [], []
    failing = []
    if baseline is not None:
        # the baseline is a full run of the set these images are drawn from
        check_comparable(scored.scores.with_columns(image_set_hash=pl.lit(set_hash)),
                         baseline)
        failing = _missing_from(baseline, scored.scores, rules)
    questions, deferred = gate_questions(rules, scored.scores, scored.per_image, baseline)
    if not questions and not deferred and not failing:
        raise HarnessError("--until-decided: the rules ask nothing a run can decide")
    return questions, deferred, failing


def _missing_from(baseline: pl.DataFrame, scores: pl.DataFrame, rules: Rules) -> list[Check]:
    """A model (or value) the baseline lacks fails at once, as in the fixed-n gate:
    nothing can be compared for it."""
    if not rules.no_regression:
        return []
    base = baseline_values(baseline)
    out = []
    for row in scores.filter(pl.col("statistic") == "headline").iter_rows(named=True):
        status = comparable_value(row, base)
        if isinstance(status, Check):
            out.append(status)
    return out


def _full_passes(scores: pl.DataFrame, how, oos: dict, used: int, total: int) -> int:
    """What the whole image set would have cost: each model's in-set passes scale with
    the images; its out-of-set sets' passes do not."""
    from harness.runner import required_passes

    fixed = required_passes(0, how.measures, how.salience, [len(s) for s in oos.values()],
                            how.noise_levels, sanity_twins=how.sanity_twins,
                            sanity_cascade=how.sanity_cascade)
    total_passes = 0
    for passes in scores.unique("model")["forward_passes"].to_list():
        if passes:
            total_passes += fixed + round((passes - fixed) * total / used)
    return int(total_passes)
