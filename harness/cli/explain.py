"""``harness salience``: explain one model's predictions on an image set."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import existing, parse_baseline
from harness.model.session import DEFAULT_TIMEOUT
from harness.salience.methods import METHODS
from harness.salience.scoring import SCORES


@click.command(short_help="Explain one model's predictions: maps and overlays.")
@click.argument("model", type=existing("file"))
@click.argument("images", type=existing())
@click.option("--method", type=click.Choice(list(METHODS)), default="occlusion",
              show_default=True, help="Salience method (cam: from the model's GAP + linear head).")
@click.option("--grid", type=click.IntRange(1), default=7, show_default=True,
              help="Cells per side of the map.")
@click.option("--window", type=click.IntRange(1), default=1, show_default=True,
              help="Occlusion window side, in cells.")
@click.option("--baseline", default="blur", show_default=True,
              help="What hides a region: blur, mean, or a grey level in [0, 1].")
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
def salience(model, images, method, grid, window, baseline, score, n_masks, seed, batch_size,
             model_timeout, limit, out, png):
    """Explain MODEL's predictions on IMAGES (folder, image file or .npz).

    Writes raw maps, 8-bit maps, the flat-map mask and the explained classes to --out.
    """
    from harness.explain import explain, write_maps, write_overlays
    from harness.io import check_writable
    from harness.model.classifier import OnnxClassifier
    from harness.salience.settings import SalienceConfig

    settings = SalienceConfig.checked(method=method, grid=grid, window=window,
                                      baseline=parse_baseline(baseline), score=score,
                                      n_masks=n_masks, seed=seed, batch_size=batch_size)
    check_writable(out.parent, "folder of --out")
    if png is not None:
        check_writable(png, "--png folder")
    clf = OnnxClassifier(model, batch_size=settings.batch_size, timeout=model_timeout)
    click.echo(f"model {clf.name}: input {clf.input_size[0]}x{clf.input_size[1]} "
               f"{clf.layout} {clf.color}, provider {clf.provider}", err=True)
    maps = explain(clf, images, settings, limit)
    write_maps(out, maps)
    click.echo(f"wrote {len(maps.raw)} {method} maps ({maps.raw.shape[1]}x{maps.raw.shape[2]}, "
               f"{int(maps.flat.sum())} flat) "
               f"to {out}; {clf.forward_passes} forward passes", err=True)
    if png is not None:
        write_overlays(png, maps)
        click.echo(f"wrote {len(maps.raw)} overlays to {png}/", err=True)
