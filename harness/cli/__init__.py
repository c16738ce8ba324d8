"""The ``harness`` command line: click only (parse, call the library, echo), one module
per command group. Heavy modules are imported inside commands so that ``harness
--help`` answers at once."""

from __future__ import annotations

import click

import harness.cli.explain as explain_commands
import harness.cli.export as export_commands
import harness.cli.parity as parity_commands
import harness.cli.results as results_commands
import harness.cli.run as run_commands
import harness.cli.zoo as zoo_commands
from harness import __version__
from harness.errors import HarnessError


class _Group(click.Group):
    """Turns a user's mistake (HarnessError) into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HarnessError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="harness")
def cli():
    """Rank image classifiers by how well their salience is grounded."""


for command in (explain_commands.salience, run_commands.run, results_commands.leaderboard,
                results_commands.compare, results_commands.pick, results_commands.gate,
                results_commands.report, zoo_commands.zoo, parity_commands.parity,
                export_commands.export):
    cli.add_command(command)


def main():
    cli(prog_name="harness")
