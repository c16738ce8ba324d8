"""``harness parity``: a model against its half-precision, 8-bit and other-provider
variants."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from harness.cli.common import log_to_stderr
from harness.cli.run import MEASURE_NAMES, SALIENCE_OPTIONS, Progress, salience_flags

VARIANT_NAMES = ("fp16", "int8-dynamic", "int8-static")  # without importing ONNX Runtime


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else ()


def _options(f):
    options = [
        click.argument("models", nargs=-1),
        click.option("--zoo", "zoo", multiple=True, type=click.Path(path_type=Path),
                     show_default="the built-in zoo",
                     help="Zoo manifest whose models MODELS names; repeatable."),
        click.option("--data", type=click.Path(path_type=Path), show_default="the zoo's data",
                     help="Images to compare on (folder, image, .npz); int8-static "
                          "calibrates on the first 128."),
        click.option("--split", show_default="the zoo's", help="Split of an .npz image set."),
        click.option("--variants", default=",".join(VARIANT_NAMES), show_default=True,
                     help=f"Comma-separated variants, of: {', '.join(VARIANT_NAMES)}."),
        click.option("--providers", show_default="none: the run's own provider",
                     help="Comma-separated execution providers (cpu, cuda): the first runs "
                          "the models, each other one is compared as a variant."),
        click.option("--measures", default="", show_default="none",
                     help="Also compare these measures' headlines, of: "
                          f"{', '.join(m for m in MEASURE_NAMES if m != 'stability')}."),
        *SALIENCE_OPTIONS,
        click.option("--limit", type=int,
                     help="Compare on N of the images, drawn (seeded) by label."),
        click.option("--seed", type=int, help="Seed of the bootstrap, tests and measures."),
        click.option("--model-timeout", "model_timeout", type=float, show_default="300",
                     help="Seconds loading a model, then one batch, may take."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                     show_default="results/parity-<timestamp>", help="Output folder."),
        click.option("--cache", type=click.Path(path_type=Path, file_okay=False),
                     show_default="OUT/cache (results/cache without --out)",
                     help="Salience cache folder, shared with harness run."),
        click.option("--save-variants", "save_variants",
                     type=click.Path(path_type=Path, file_okay=False),
                     help="Also write each built variant here as MODEL@VARIANT.onnx."),
        click.option("--force", is_flag=True,
                     help="--save-variants may replace files of other content."),
        click.option("--quiet", is_flag=True, help="No progress, only the table."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command(short_help="Compare a model with its FP16, INT8, other-provider variants.")
@_options
def parity(models, zoo, data, split, variants, providers, measures, method, grid, target,
           layer, window, baseline, incremental, n_masks, batch_size, limit, seed,
           model_timeout, out, cache, save_variants, force, quiet):
    """Compare each MODEL (an .onnx file, or a model of the zoo by name; default: every
    model of the zoo) with its variants, built in memory: fp16, int8-dynamic and
    int8-static (calibrated on the images), and each extra --providers entry. Per
    variant: prediction agreement, change of the predicted class's log-odds, and the
    SSIM between the model's and the variant's maps, each with its 95% interval; with
    --measures, each measure's change with a paired test. Writes a run folder with
    parity.md and parity.parquet; gate it with rules such as "parity.ssim >= 0.9".
    """
    import datetime

    from harness.inputs.settings import build_config
    from harness.parity import parity as compare

    files = tuple(Path(m) for m in models if m.endswith(".onnx") or Path(m).is_file())
    names = tuple(m for m in models if not (m.endswith(".onnx") or Path(m).is_file()))
    settings = {"zoo": zoo or None, "models": files, "data": data, "split": split,
                "limit": limit, "seed": seed, "out": out, "cache": cache,
                "model_timeout": model_timeout, "measures": _split(measures),
                **salience_flags(method, grid, target, layer, window, baseline, incremental,
                                 n_masks, batch_size)}
    config = build_config(default_measures=(), **settings)
    if config.out is None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        config = dataclasses.replace(config, out=Path("results") / f"parity-{stamp}",
                                     cache=config.cache or Path("results") / "cache")
    log_to_stderr()
    say = (lambda message: None) if quiet else (lambda m: click.echo(m, err=True))
    chosen = _split(variants)
    say(f"comparing {', '.join(models) or 'every model of the zoo'} with "
        f"{', '.join([*chosen, *_split(providers)[1:]]) or 'no variant'} -> {config.out}/")
    progress = None if quiet else Progress()
    try:
        done = compare(config, names, chosen, _split(providers), save_variants, progress, say,
                       force)
    finally:
        if progress is not None:
            progress.end()
    click.echo(done.text, nl=False)
    click.echo(f"results: {config.out}/", err=True)
