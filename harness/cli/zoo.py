"""``harness zoo``: model zoos, manifests of models to score."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def zoo():
    """Model zoos: manifests of models to score."""


@zoo.command("list")
@click.argument("manifest", required=False, type=click.Path(path_type=Path, dir_okay=False))
def zoo_list(manifest):
    """List the models of MANIFEST (default: the built-in zoo)."""
    from harness.inputs.zoo import builtin_manifest, read_manifest
    from harness.model.classifier import OnnxClassifier

    parsed = read_manifest(manifest or builtin_manifest())
    rows = [("model", "family", "input", "classes", "test acc.")]
    for m in parsed.models:
        clf = OnnxClassifier(m.path, m.spec)
        acc = "" if m.test_accuracy is None else f"{m.test_accuracy:.3f}"
        rows.append((m.name, m.spec.family or clf.family or "-",
                     f"{clf.input_size[0]}x{clf.input_size[1]} {clf.color}",
                     ",".join(clf.classes), acc))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if parsed.data is not None:
        split = f" (split {parsed.split})" if parsed.split else ""
        click.echo(f"data: {parsed.data}{split}")


@zoo.command("export", short_help="Write a zoo as plain files: models, image folders, TOML.")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--manifest", type=click.Path(path_type=Path, dir_okay=False),
              show_default="the built-in zoo", help="The zoo to export.")
def zoo_export(folder, manifest):
    """Write the zoo (default: the built-in one) into FOLDER as the files a run of your
    own starts from: models/*.onnx, images/<label>/*.png with masks/, a folder per
    out-of-set set, zoo.toml naming them and run.toml with quick settings."""
    from harness.inputs.zoo import builtin_manifest, export

    written = export(manifest or builtin_manifest(), folder)
    click.echo(f"{folder}/: {len(written)} files (zoo.toml, run.toml, models/, images/ and "
               "the out-of-set folders)")
