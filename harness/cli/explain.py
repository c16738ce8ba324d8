"""``harness salience``: explain one model's predictions on an image set."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import existing, parse_baseline
from harness.model.session import DEFAULT_TIMEOUT
from harness.salience.methods import INCREMENTAL, METHODS
from harness.salience.scoring import SCORES


@click.command(short_help="Explain one model's predictions: maps and overlays.")
@click.argument("model", type=existing("file"))
@click.argument("images", type=existing(), required=False)
@click.option("--method", type=click.Choice(list(METHODS)), default="occlusion",
              show_default=True,
              help="Salience method (cam: Grad-CAM through the model's head, from its graph).")
@click.option("--grid", type=click.IntRange(1), default=7, show_default=True,
              help="Cells per side of the map.")
@click.option("--layer", default=None, show_default="the last spatial feature map",
              help="cam: the 4-D tensor of the graph whose maps Grad-CAM weighs.")
@click.option("--window", type=click.IntRange(1), default=1, show_default=True,
              help="Occlusion window side, in cells.")
@click.option("--baseline", default="blur", show_default=True,
              help="What hides a region: blur, mean, or a grey level in [0, 1].")
@click.option("--incremental", type=click.Choice(list(INCREMENTAL)), default="auto",
              show_default=True,
              help="Occlusion: recompute only what a window changes (auto: where the graph "
                   "allows it and it is predicted to pay).")
@click.option("--score", type=click.Choice(SCORES),
              default="log_odds", show_default=True, help="The explained scalar.")
@click.option("--n-masks", type=click.IntRange(1), default=1000, show_default=True,
              help="RISE: number of random masks.")
@click.option("--seed", type=int, default=0, show_default=True, help="RISE: mask seed.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Perturbed copies per ONNX Runtime call.")
@click.option("--model-timeout", type=click.FloatRange(0, 10**6, min_open=True),
              default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds loading the model, then one batch, may take.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Explain only the first N images.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default="maps.npz",
              show_default=True, help="Where to write the maps (.npz).")
@click.option("--png", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write one overlay picture per image into this folder.")
@click.option("--force", is_flag=True,
              help="Replace a file at --out that is not a maps file the harness wrote.")
@click.option("--explain-head", is_flag=True,
              help="cam: print the head Grad-CAM differentiates (the ops from the feature "
                   "map to the score) and stop.")
def salience(model, images, method, grid, layer, window, baseline, incremental, score, n_masks,
             seed, batch_size, model_timeout, limit, out, png, force, explain_head):
    """Explain MODEL's predictions on IMAGES (folder, image file or .npz); with
    --explain-head, show what --method cam differentiates (no IMAGES needed).

    Writes raw maps, 8-bit maps, the flat-map mask and the explained classes to --out.
    """
    from harness.explain import explain, is_maps_file, write_maps, write_overlays
    from harness.io import check_replaceable, check_writable, own_folder
    from harness.model.classifier import OnnxClassifier
    from harness.salience.settings import SalienceConfig

    settings = SalienceConfig.checked(method=method, grid=grid, window=window,
                                      baseline=parse_baseline(baseline), score=score,
                                      n_masks=n_masks, seed=seed, batch_size=batch_size,
                                      layer=layer, incremental=incremental)
    if images is None and not explain_head:
        raise click.UsageError("Missing argument 'IMAGES'.")
    check_writable(out.parent, "folder of --out")
    if png is not None:
        check_writable(png, "--png folder")
    if not explain_head:  # refused before any work: never over a file of the user's
        check_replaceable(out, is_maps_file, force)
        if png is not None:
            own_folder(png, "overlay folder")
    clf = OnnxClassifier(model, batch_size=settings.batch_size, timeout=model_timeout)
    if explain_head:
        from harness.errors import HarnessError
        from harness.salience.cam import grad_head

        if method != "cam":
            raise HarnessError("--explain-head shows the head of --method cam; add it")
        click.echo(grad_head(clf, layer).describe())
        return
    click.echo(f"model {clf.name}: input {clf.input_size[0]}x{clf.input_size[1]} "
               f"{clf.layout} {clf.color}, provider {clf.provider}", err=True)
    maps = explain(clf, images, settings, limit)
    write_maps(out, maps, force)
    click.echo(f"wrote {len(maps.raw)} {method} maps ({maps.raw.shape[1]}x{maps.raw.shape[2]}, "
               f"{int(maps.flat.sum())} flat) "
               f"to {out}; {clf.forward_passes} forward passes", err=True)
    if png is not None:
        write_overlays(png, maps)
        click.echo(f"wrote {len(maps.raw)} overlays to {png}/", err=True)
