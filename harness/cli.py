"""The ``harness`` command line. Heavy modules are imported inside commands so that
``harness --help`` answers at once."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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


def _existing(path_type="any"):
    # Existence is checked by the library, which names the file and the fix.
    return click.Path(path_type=Path, dir_okay=path_type != "file")


@cli.command()
@click.argument("model", type=_existing("file"))
@click.argument("images", type=_existing())
@click.option("--method", type=click.Choice(["occlusion", "rise"]), default="occlusion",
              show_default=True, help="Salience method.")
@click.option("--grid", type=click.IntRange(1), default=7, show_default=True,
              help="Cells per side of the map.")
@click.option("--window", type=click.IntRange(1), default=1, show_default=True,
              help="Occlusion window side, in cells.")
@click.option("--baseline", default="blur", show_default=True,
              help="What hides a region: blur, mean, or a grey level in [0, 1].")
@click.option("--score", type=click.Choice(["log_odds", "logit", "probability"]),
              default="log_odds", show_default=True, help="The explained scalar.")
@click.option("--n-masks", type=click.IntRange(1), default=1000, show_default=True,
              help="RISE: number of random masks.")
@click.option("--seed", type=int, default=0, show_default=True, help="RISE: mask seed.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True,
              help="Perturbed copies per ONNX Runtime call.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Explain only the first N images.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default="maps.npz",
              show_default=True, help="Where to write the maps (.npz).")
@click.option("--png", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Also write one overlay picture per image into this folder.")
def salience(model, images, method, grid, window, baseline, score, n_masks, seed, batch_size,
             limit, out, png):
    """Explain MODEL's predictions on IMAGES (folder, image file or .npz).

    Writes raw maps, 8-bit maps, the flat-map mask and the explained classes to --out.
    """
    import numpy as np

    from harness.data import load_image_set
    from harness.io import atomic_path
    from harness.model import NonFiniteOutput, OnnxClassifier
    from harness.salience import normalize, occlusion, rise, scale
    from harness.salience.scoring import resolve_targets

    baseline_value = _parse_baseline(baseline)
    clf = OnnxClassifier(model, batch_size=batch_size)
    click.echo(f"model {clf.name}: input {clf.input_size[0]}x{clf.input_size[1]} "
               f"{clf.layout} {clf.color}, provider {clf.provider}", err=True)
    data = load_image_set(images)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    if grid > min(data.size):
        raise HarnessError(f"--grid {grid} is larger than the images ({data.size[0]}x"
                           f"{data.size[1]}); use at most {min(data.size)}")
    if window > grid:
        raise HarnessError(f"--window {window} is larger than --grid {grid}")
    pixels = data.pixels()
    try:
        clean = clf.forward(pixels)
        targets = resolve_targets(clean, None)
        if method == "occlusion":
            raw = occlusion(clf, pixels, grid=grid, window=window, baseline=baseline_value,
                            score=score, batch_size=batch_size, clean=clean)
        else:
            raw = rise(clf, pixels, n_masks=n_masks, seed=seed, grid=grid,
                       baseline=baseline_value, score=score, batch_size=batch_size,
                       clean=clean)
    except NonFiniteOutput as exc:
        shown = ", ".join(data.names[i] for i in exc.rows[:5])
        more = f" and {len(exc.rows) - 5} more" if len(exc.rows) > 5 else ""
        raise HarnessError(f"{model}: model returned NaN or infinite scores for {shown}{more}"
                           ) from None
    q, flat = normalize(raw)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, raw=raw, q=q, flat=flat, targets=targets,
                            names=np.array(data.names), method=np.array(method))
    click.echo(f"wrote {len(raw)} {method} maps ({grid}x{grid}, {int(flat.sum())} flat) "
               f"to {out}; {clf.forward_passes} forward passes", err=True)
    if png is not None:
        _write_overlays(png, data, scale(raw)[0])
        click.echo(f"wrote {len(raw)} overlays to {png}/", err=True)


def _parse_baseline(text: str):
    if text in ("blur", "mean"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise HarnessError(f"--baseline {text!r}: use blur, mean, or a grey level in [0, 1]"
                           ) from None
    if not 0.0 <= value <= 1.0:
        raise HarnessError(f"--baseline {value}: a grey level must lie in [0, 1]")
    return value


def _write_overlays(folder: Path, data, s_norm):
    from PIL import Image

    from harness.io import atomic_path
    from harness.overlay import overlay

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(data.names):
        stem = name.replace("/", "__").rsplit(".", 1)[0]
        with atomic_path(folder / f"{stem}.png") as tmp:
            Image.fromarray(overlay(data.images[i], s_norm[i])).save(tmp, format="PNG")


def main():
    cli(prog_name="harness")


if __name__ == "__main__":
    sys.exit(main())
