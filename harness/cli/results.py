"""``harness leaderboard``, ``gate`` and ``report``: reading a finished run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.errors import HarnessError


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]),
              default="table", show_default=True)
@click.option("--by", help="Order by this measure's rank instead of the mean rank.")
def leaderboard(run_dir, fmt, by):
    """Re-render the leaderboard of a finished run (no recomputation)."""
    from harness.results.leaderboard import build, directions, render
    from harness.rundir import RunDir

    scores = RunDir(run_dir).scores()
    try:
        board = build(scores, by=by)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    click.echo(render(board, directions(scores), fmt), nl=False)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--rules", "rules_file", required=True, type=click.Path(path_type=Path),
              help="gate.toml with rules, applies_to and no_regression.")
@click.option("--baseline", type=click.Path(path_type=Path, file_okay=False),
              help="A baseline run folder for no_regression.")
def gate(run_dir, rules_file, baseline):
    """Check a finished run against rules: exit 0 when all hold, 1 when any fails."""
    from harness.results.gate import check, read_rules
    from harness.rundir import RunDir

    rules = read_rules(rules_file)
    checks = check(RunDir(run_dir).scores(), rules,
                   RunDir(baseline).scores() if baseline else None)
    width = max(len(c.model) for c in checks) if checks else 0
    for c in checks:
        value = "n/a" if c.value is None else f"{c.value:.4g}"
        verdict = "PASS" if c.passed else "FAIL"
        click.echo(f"{verdict}  {c.model.ljust(width)}  {c.what}: {value} {c.bound}")
    failed = sum(not c.passed for c in checks)
    click.echo(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the page (default RUN_DIR/report.html).")
@click.option("--images", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Example images whose salience overlays are shown.")
def report(run_dir, out, images):
    """Write a self-contained HTML report of a finished run."""
    from harness.report.page import write_report
    from harness.rundir import RunDir

    path = write_report(run_dir, out or Path(run_dir) / RunDir.REPORT, images)
    click.echo(f"report: {path}", err=True)
