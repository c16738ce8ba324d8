"""``harness export``: a finished run's results in the formats of other tools."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from harness.errors import HarnessError


@click.command(short_help="Write a finished run's results for other tools (MLflow, model card).")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--mlflow", "to_mlflow", is_flag=True,
              help="Log the run to MLflow: settings, every headline with its interval and "
                   "rank, the report and tables.")
@click.option("--tracking-uri", metavar="URI",
              help="MLflow's tracking store (e.g. sqlite:///mlflow.db); default: MLflow's "
                   "own (MLFLOW_TRACKING_URI).")
@click.option("--experiment", default="harness", show_default=True,
              help="The MLflow experiment to log into (made if missing).")
@click.option("--model-card", "card", metavar="MODEL",
              help="MODEL's results as a Hugging Face model card's model-index block.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="--model-card: write to this new file instead of printing.")
def export(run_dir, to_mlflow, tracking_uri, experiment, card, out):
    """Export RUN_DIR's results. --mlflow logs a run to MLflow (parameters: the settings
    and versions; metrics MODEL/MEASURE with .ci_low, .ci_high, .rank, .rank_low and
    .rank_high; artefacts: the report, leaderboard and tables). --model-card MODEL
    gives the YAML front matter a Hugging Face model card reads its evaluation results
    from."""
    from harness.rundir import RunDir

    if to_mlflow == (card is not None):
        raise HarnessError("say what to export: --mlflow or --model-card MODEL (one)")
    # an option of the other export would be ignored: say so rather than drop it
    given = click.get_current_context().get_parameter_source
    if to_mlflow and out is not None:
        raise HarnessError("--out is for --model-card; --mlflow logs to MLflow's tracking "
                           "store (--tracking-uri)")
    if card is not None and (tracking_uri is not None
                             or given("experiment") == ParameterSource.COMMANDLINE):
        raise HarnessError("--tracking-uri and --experiment are for --mlflow; --model-card "
                           "prints its block or writes it to --out")
    folder = RunDir(run_dir)
    if to_mlflow:
        from harness.results.mlflow_export import log

        run_id = log(folder, tracking_uri, experiment)
        click.echo(f"logged {run_dir} to MLflow experiment {experiment!r} as run {run_id}")
        return
    from harness.results import reading
    from harness.results.model_card import model_index

    text = model_index(reading.scores(folder), folder.info(), card)
    if out is None:
        click.echo(text, nl=False)
        return
    if out.exists():  # never write over a file the harness did not write
        raise HarnessError(f"{out} exists; name a new file")
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {card}'s model-index block to {out}")
