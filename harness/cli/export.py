"""``harness export``: a finished run's results in the formats of other tools."""

from __future__ import annotations

from pathlib import Path

import click

from harness.errors import HarnessError


@click.command(short_help="Write a finished run's results for other tools (model card).")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--model-card", "card", metavar="MODEL",
              help="MODEL's results as a Hugging Face model card's model-index block.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this new file instead of printing.")
def export(run_dir, card, out):
    """Export RUN_DIR's results: with --model-card MODEL, the YAML front matter a Hugging
    Face model card reads its evaluation results from (every headline with its 95%
    interval, images and rank)."""
    from harness.results import reading
    from harness.results.model_card import model_index
    from harness.rundir import RunDir

    if card is None:
        raise HarnessError("say what to export: --model-card MODEL")
    folder = RunDir(run_dir)
    text = model_index(reading.scores(folder), folder.info(), card)
    if out is None:
        click.echo(text, nl=False)
        return
    if out.exists():  # never write over a file the harness did not write
        raise HarnessError(f"{out} exists; name a new file")
    out.write_text(text, encoding="utf-8")
    click.echo(f"wrote {card}'s model-index block to {out}")
