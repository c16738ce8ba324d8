"""The ``harness`` command line. Heavy modules are imported inside commands so that
``harness --help`` answers at once."""

from __future__ import annotations

import dataclasses
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
@click.option("--method", type=click.Choice(["occlusion", "rise", "cam"]), default="occlusion",
              show_default=True, help="Salience method (cam: from the model's GAP + linear head).")
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
    from harness.salience import normalize, scale
    from harness.salience.config import SalienceConfig, explain_with_outputs

    try:
        config = SalienceConfig(method=method, grid=grid, window=window,
                                baseline=_parse_baseline(baseline), score=score,
                                n_masks=n_masks, seed=seed, batch_size=batch_size)
    except ValueError as exc:
        raise HarnessError(f"salience settings: {exc}") from None
    clf = OnnxClassifier(model, batch_size=batch_size)
    click.echo(f"model {clf.name}: input {clf.input_size[0]}x{clf.input_size[1]} "
               f"{clf.layout} {clf.color}, provider {clf.provider}", err=True)
    data = load_image_set(images)
    if limit is not None:
        data = data.subset(np.arange(min(limit, len(data))))
    if method != "cam" and grid > min(data.size):
        raise HarnessError(f"--grid {grid} is larger than the images ({data.size[0]}x"
                           f"{data.size[1]}); use at most {min(data.size)}")
    pixels = data.pixels()
    try:
        outputs, raw = explain_with_outputs(clf, pixels, config)
        targets = outputs.argmax(axis=1)
    except NonFiniteOutput as exc:
        shown = ", ".join(data.names[i] for i in exc.rows[:5])
        more = f" and {len(exc.rows) - 5} more" if len(exc.rows) > 5 else ""
        raise HarnessError(f"{model}: model returned NaN or infinite scores for {shown}{more}"
                           ) from None
    q, flat = normalize(raw)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, raw=raw, q=q, flat=flat, targets=targets,
                            names=np.array(data.names), method=np.array(method))
    click.echo(f"wrote {len(raw)} {method} maps ({raw.shape[1]}x{raw.shape[2]}, "
               f"{int(flat.sum())} flat) "
               f"to {out}; {clf.forward_passes} forward passes", err=True)
    if png is not None:
        _write_overlays(png, data, scale(raw)[0])
        click.echo(f"wrote {len(raw)} overlays to {png}/", err=True)


class _Progress:
    """A progress bar over units of work (model x shard) on stderr, with the forward
    passes per second computed in this run."""

    def __init__(self):
        self.bar = None
        self.started = None

    def __call__(self, done, total, unit, computed_passes):
        import time

        if self.bar is None:
            self.started = time.perf_counter()
            self.bar = click.progressbar(length=total, file=sys.stderr, label="scoring",
                                         show_eta=True, item_show_func=lambda text: text)
            self.bar.__enter__()
        rate = computed_passes / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(1, f"{unit.model} {unit.part} {unit.start}-{unit.stop}, "
                           f"{rate:,.0f} passes/s")

    def end(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _run_options(f):
    options = [
        click.option("--zoo", "zoo", multiple=True, type=click.Path(path_type=Path),
                     help="Zoo manifest (TOML); repeatable. Default: the built-in zoo."),
        click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
                     help="An extra .onnx model; repeatable."),
        click.option("--data", type=click.Path(path_type=Path),
                     help="In-set images (folder, image, .npz). Default: the zoo's data."),
        click.option("--split", help="Split of an .npz image set (default: the zoo's)."),
        click.option("--out-of-set", "out_of_set", multiple=True,
                     type=click.Path(path_type=Path), help="Out-of-set image set; repeatable."),
        click.option("--measures", help="Comma-separated measures (default: all six)."),
        click.option("--method", type=click.Choice(["occlusion", "rise", "cam"]),
                     help="Salience method (default occlusion)."),
        click.option("--grid", type=int,
                     help="Cells per side of the maps (default 7; at least 7 for SSIM)."),
        click.option("--window", type=int, help="Occlusion window in cells (default 1)."),
        click.option("--baseline", help="blur, mean or a grey level (default blur)."),
        click.option("--n-masks", "n_masks", type=int, help="RISE masks (default 1000)."),
        click.option("--batch-size", "batch_size", type=int, help="Copies per ONNX call."),
        click.option("--limit", type=int, help="Score only the first N images."),
        click.option("--seed", type=int, help="Seed for noise, RISE and bootstrap (0)."),
        click.option("--model-timeout", "model_timeout", type=float,
                     help="Seconds one batch may take before the model is marked failed."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                     help="Output folder (default results/<timestamp>)."),
        click.option("--cache", type=click.Path(path_type=Path, file_okay=False),
                     help="Salience cache folder (default OUT/cache)."),
        click.option("--shard-size", "shard_size", type=int,
                     help="Images per unit of work (default 64)."),
        click.option("--resume", type=click.Path(path_type=Path, file_okay=False),
                     help="Finish the interrupted run in this folder, with its settings."),
        click.option("--engine", type=click.Choice(["in-process", "dask"]),
                     help="Where units run (default in-process)."),
        click.option("--scheduler", help="Dask: address of a running scheduler to join."),
        click.option("--workers", type=int,
                     help="Dask: size of the local cluster (default: one per core)."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="A run.toml; flags override it."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the leaderboard as JSON (for machines)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@_run_options
def run(zoo, models, data, split, out_of_set, measures, method, grid, window, baseline,
        n_masks, batch_size, limit, seed, model_timeout, out, cache, shard_size, resume, engine,
        scheduler, workers, config_file, quiet, as_json):
    """Score every model, rank them, and write the run to --out.

    With no arguments: the built-in zoo (15 face detectors) on its built-in test split,
    all six measures, 7 x 7 occlusion salience. Maps are cached (--cache), so a repeated
    run reuses them, and an interrupted one is finished with --resume OUT.
    """
    import datetime

    from harness.config import build_config, from_json, read_config
    from harness.journal import read_plan
    from harness.leaderboard import directions, render
    from harness.results import write_run
    from harness.runner import run_config

    where = {"engine": engine, "scheduler": scheduler, "workers": workers}
    flags = {"zoo": zoo or None, "models": models or None, "data": data, "split": split,
             "out_of_set": out_of_set or None, "limit": limit, "seed": seed, "out": out,
             "model_timeout": model_timeout, "cache": cache, "shard_size": shard_size,
             "measures": tuple(m.strip() for m in measures.split(",")) if measures else None,
             "salience.method": method, "salience.grid": grid, "salience.window": window,
             "salience.baseline": None if baseline is None else _parse_baseline(baseline),
             "salience.n_masks": n_masks, "salience.batch_size": batch_size}
    if resume is not None:
        given = [k.split(".")[-1] for k, v in flags.items() if v is not None]
        given += ["config_file"] * bool(config_file)
        if given:
            flag = next(p.opts[0] for p in click.get_current_context().command.params
                        if p.name == given[0])
            raise HarnessError(f"--resume takes the run's settings from {resume}; drop "
                               f"{flag} (only --engine, --scheduler and --workers may change)")
        saved = read_plan(resume)["settings"]
        saved.update({k: v for k, v in where.items() if v is not None})
        if engine == "in-process":
            saved.update(scheduler=None, workers=None)
        config = from_json(saved | {"out": str(resume)})
    else:
        settings = read_config(config_file) if config_file else {}
        settings.update({k: v for k, v in (flags | where).items() if v is not None})
        config = build_config(**settings)
    if config.out is None:
        # runs without --out go to results/<time> and share results/cache
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
        config = dataclasses.replace(config, out=Path("results") / stamp,
                                     cache=config.cache or Path("results") / "cache")
    _log_to_stderr()
    progress = None if quiet or as_json else _Progress()
    say = (lambda message: None) if quiet or as_json else (lambda m: click.echo(m, err=True))
    try:
        scores, info, examples = run_config(config, progress, resume=resume is not None,
                                            log=say)
    finally:
        if progress is not None:
            progress.end()
    board = write_run(config.out, scores, info, examples.arrays() if examples.models else None)
    if as_json:
        click.echo(render(board, directions(scores), "json"))
        return
    if not quiet:
        click.echo(f"{info['models']} models, {info['images']} images, "
                   f"{info['computed_passes']:,} forward passes in {info['seconds']:.0f} s on "
                   f"{', '.join(info['providers']) or 'no provider'}", err=True)
    click.echo(render(board, directions(scores), "table"))
    click.echo(f"results: {config.out}/", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json"]),
              default="table", show_default=True)
@click.option("--by", help="Order by this measure's rank instead of the mean rank.")
def leaderboard(run_dir, fmt, by):
    """Re-render the leaderboard of a finished run (no recomputation)."""
    from harness.leaderboard import build, directions, render
    from harness.results import read_scores

    scores = read_scores(run_dir)
    try:
        board = build(scores, by=by)
    except ValueError as exc:
        raise HarnessError(str(exc)) from None
    click.echo(render(board, directions(scores), fmt), nl=False)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--rules", "rules_file", required=True, type=click.Path(path_type=Path),
              help="gate.toml with rules, applies_to and no_regression.")
@click.option("--baseline", type=click.Path(path_type=Path, file_okay=False),
              help="A baseline run folder for no_regression.")
def gate(run_dir, rules_file, baseline):
    """Check a finished run against rules: exit 0 when all hold, 1 when any fails."""
    from harness.gate import check, read_rules
    from harness.results import read_scores

    rules = read_rules(rules_file)
    checks = check(read_scores(run_dir), rules, read_scores(baseline) if baseline else None)
    width = max(len(c.model) for c in checks) if checks else 0
    for c in checks:
        value = "n/a" if c.value is None else f"{c.value:.4g}"
        verdict = "PASS" if c.passed else "FAIL"
        click.echo(f"{verdict}  {c.model.ljust(width)}  {c.what}: {value} {c.bound}")
    failed = sum(not c.passed for c in checks)
    click.echo(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the page (default RUN_DIR/report.html).")
@click.option("--images", type=click.IntRange(1, 8), default=4, show_default=True,
              help="Example images whose salience overlays are shown.")
def report(run_dir, out, images):
    """Write a self-contained HTML report of a finished run."""
    from harness.report import write_report

    path = write_report(run_dir, out or Path(run_dir) / "report.html", images)
    click.echo(f"report: {path}", err=True)


@cli.group()
def zoo():
    """Model zoos: manifests of models to score."""


@zoo.command("list")
@click.argument("manifest", required=False, type=click.Path(path_type=Path, dir_okay=False))
def zoo_list(manifest):
    """List the models of MANIFEST (default: the built-in zoo)."""
    from harness.model import OnnxClassifier
    from harness.zoo import builtin_manifest, read_manifest

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


def _log_to_stderr():
    """Library warnings (e.g. a cache file that had to be set aside) as ``warning: ...``
    lines on whatever stderr is at the time."""
    import logging

    class Echo(logging.Handler):
        def emit(self, record):
            click.echo(f"warning: {record.getMessage()}", err=True)

    log = logging.getLogger("harness")
    if not any(type(h).__name__ == "Echo" for h in log.handlers):
        log.addHandler(Echo())
        log.propagate = False


def _parse_baseline(text: str):
    """``blur``, ``mean`` or a number; its range is SalienceConfig's to check."""
    if text in ("blur", "mean"):
        return text
    try:
        return float(text)
    except ValueError:
        raise HarnessError(f"--baseline {text!r}: use blur, mean, or a grey level in [0, 1]"
                           ) from None


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
