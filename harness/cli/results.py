"""``harness leaderboard``, ``gate`` and ``report``: reading a finished run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.errors import HarnessError, printable


@click.command(short_help="Print a finished run's leaderboard again.")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]),
              default="table", show_default=True,
              help="Aligned text, Markdown, CSV or JSON.")
@click.option("--by", help="Order by this measure's rank instead of the mean rank.")
@click.option("--wide", is_flag=True, help="Add the intervals, rank intervals and families.")
def leaderboard(run_dir, fmt, by, wide):
    """Re-render the leaderboard of a finished run (no new maps; the ranks are rebuilt
    from its per-image values and pairs)."""
    from harness.results import reading
    from harness.results.leaderboard import build, directions, render
    from harness.rundir import RunDir

    folder = RunDir(run_dir)
    scores = reading.scores(folder)
    try:
        board = build(scores, reading.per_image(folder, scores), reading.pairs(folder), by=by)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    decision = folder.info().get("decision") if by is None else None
    click.echo(render(board, directions(scores), fmt, wide=wide,
                      decision=decision if isinstance(decision, dict) else None), nl=False)


@click.command(short_help="Check a finished run against rules (for CI).")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--rules", "rules_file", required=True, type=click.Path(path_type=Path),
              help="gate.toml with rules, applies_to, no_regression and tolerance.")
@click.option("--baseline", type=click.Path(path_type=Path, file_okay=False),
              help="A baseline run folder for no_regression.")
def gate(run_dir, rules_file, baseline):
    """Check a finished run against rules: exit 0 when all hold, 1 when any fails, 2 when
    the gate cannot check (a bad rule, a baseline of other images, settings or seed, a
    folder that is not a run, nothing to check)."""
    from harness.results import reading
    from harness.results.gate import P_BEST, check, read_rules
    from harness.rundir import RunDir

    rules = read_rules(rules_file)
    run = RunDir(run_dir)
    scores = reading.scores(run)
    order = run.table(f"{RunDir.LEADERBOARD}.parquet")["model"].to_list() \
        if rules.applies_to == "best" else None
    regression = rules.no_regression and baseline is not None
    values = reading.per_image(run, scores)  # read, so a damaged folder is never gated
    base = reading.scores(RunDir(baseline)) if baseline else None
    decision = _decision(run, scores, values) if any(
        r.measure == P_BEST for r in rules.rules) else None
    checks = check(scores, rules, base, per_image=values if regression else None,
                   baseline_per_image=reading.per_image(RunDir(baseline), base)
                   if regression else None, order=order, decision=decision)
    sys.exit(print_checks(checks))


def print_checks(checks) -> int:
    """The gate's lines and its tally; returns the exit code (1 when any failed)."""
    width = max(len(printable(c.model)) for c in checks) if checks else 0
    for c in checks:
        value = "" if c.skipped else "n/a" if c.value is None else f"{c.value:.4g}"
        verdict = "SKIP" if c.skipped else "PASS" if c.passed else "FAIL"
        click.echo(f"{verdict}  {printable(c.model).ljust(width)}  {printable(c.what)}: "
                   f"{value} {printable(c.detail)}")
    failed = sum(not c.passed for c in checks)
    skipped = sum(c.skipped for c in checks)
    click.echo(f"{len(checks) - failed - skipped} passed, {failed} failed"
               + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


@click.command(short_help="Write a self-contained HTML report of a finished run.")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the page (default RUN_DIR/report.html).")
@click.option("--images", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Example images whose salience overlays are shown.")
@click.option("--force", is_flag=True,
              help="Replace a file at --out that is not a report the harness wrote.")
def report(run_dir, out, images, force):
    """Write a self-contained HTML report of a finished run."""
    from harness.report.page import write_report
    from harness.rundir import RunDir

    path = write_report(run_dir, out or Path(run_dir) / RunDir.REPORT, images, force)
    click.echo(f"report: {path}", err=True)


@click.command(short_help="State which model (or family) is separably better.")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--measure", help="Only this measure.")
@click.option("--families", is_flag=True,
              help="Compare families (two-level bootstrap) instead of models.")
@click.option("--all", "undecided", is_flag=True,
              help="Also list the pairs the data cannot tell apart.")
def compare(run_dir, measure, families, undecided):
    """Say, pair by pair, which model (or family) is separably better on each measure."""
    from harness.results import reading
    from harness.results.leaderboard import headlines
    from harness.results.verdicts import summary, verdicts
    from harness.rundir import RunDir

    folder = RunDir(run_dir)
    scores = reading.scores(folder)
    reading.per_image(folder, scores)  # a damaged folder states no verdict
    pairs = reading.pairs(folder, families)
    higher = dict(headlines(scores).select("measure", "higher_is_better").unique().rows())
    if measure is not None and measure not in higher:
        raise HarnessError(f"--measure {measure!r}: not a measure of this run "
                           f"({', '.join(sorted(higher))})")
    side = "family" if families else "model"
    lines = verdicts(pairs, higher, measure, undecided, side)
    if lines and measure is None:
        lines = ["Summary (Holm-adjusted p < 0.05 within each measure):",
                 *("  " + x for x in summary(pairs, higher, side)), "", *lines]
    if not lines:
        raise HarnessError(f"{folder.path}: nothing to compare (no two "
                           f"{'families' if families else 'models'} with values)")
    click.echo("\n".join(lines))


@click.command(short_help="Say which model to ship, how sure, and what would change it.")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--objective", help='"mean_rank", a measure, or weights such as '
                                  '"agreement=1,entropy=0.5" (default: the run\'s).')
@click.option("--constraint", "constraints", multiple=True,
              help='"sanity >= 0.5", "sanity.ci_low >= 0.5" or "accuracy not worse than the '
                   'best by more than 0.02"; repeatable (default: the run\'s).')
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON.")
def pick(run_dir, objective, constraints, as_json):
    """Decide again on a finished run, without new maps: the run's own objective and
    constraints reproduce run.json's decision; --objective and --constraint replace
    them."""
    import json

    from harness.results import reading
    from harness.results.decision import lines
    from harness.rundir import RunDir

    folder = RunDir(run_dir)
    scores = reading.scores(folder)
    decision = _decision(folder, scores, reading.per_image(folder, scores), objective,
                         constraints, stored=False)
    click.echo(json.dumps(decision, indent=2) if as_json else "\n".join(lines(decision)))


def _decision(folder, scores, per_image, objective=None, constraints=(), stored=True) -> dict:
    """The run's decision: as run.json holds it (``stored``, when it holds one), or
    decided again from the run's files with its own objective and constraints unless
    others are given."""
    from harness.results import reading
    from harness.results.comparisons import values
    from harness.results.decision import DecisionConfig, decide
    from harness.results.leaderboard import build
    from harness.stats.paired import BOOTSTRAP_T

    info = folder.info()
    if stored and isinstance(info.get("decision"), dict):
        return info["decision"]
    settings = info.get("config") or {}
    saved = settings.get("decision") or {}
    config = DecisionConfig.checked(
        objective if objective is not None else saved.get("objective", "mean_rank"),
        tuple(constraints) if constraints else tuple(saved.get("constraints", ())))
    pairs = reading.pairs(folder)
    board = build(scores, per_image, pairs)
    vals = values(scores, per_image, settings.get("test", BOOTSTRAP_T))
    return decide(vals, scores, pairs, board, config)
