"""``harness run``: score every model, rank them, write the run folder."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click

from harness.cli.common import log_to_stderr, parse_baseline
from harness.errors import HarnessError, first_line
from harness.execution.engines import ENGINES
from harness.salience.methods import INCREMENTAL, METHODS
from harness.stats.paired import BOOTSTRAP_T, TESTS

# the measures' names without importing them (that would load Numba for --help)
MEASURE_NAMES = ("entropy", "out_of_set", "transforms", "stability", "degradation",
                 "agreement", "sanity", "deletion", "insertion", "road",
                 "faithfulness_correlation")
DEFAULT_MEASURES = MEASURE_NAMES[:7]  # the rest (faithfulness) only when asked for


class Progress:
    """What a run is doing, on stderr: the plan once the cache is consulted, then the
    unit of work running (model, image set, images) with the passes per second computed
    so far and the time left at that rate. On a terminal one line redrawn in place;
    otherwise a line per computed unit, for logs."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = self.running = None
        self.done = self.total = self.computed = self.to_compute = 0
        self.drawn = False

    def _echo(self, text: str, nl: bool = True) -> None:
        click.echo(text, file=self.stream, nl=nl)

    def plan(self, units: int, cached: int, passes: int) -> None:
        import time

        self.started, self.total, self.to_compute = time.perf_counter(), units, passes
        whole = f", {cached} whole in the cache" if cached else ""
        self._echo(f"{units} units of work (model x images){whole}: {passes:,} forward "
                   "passes to compute; the time left is at this machine's rate so far, and "
                   "grows when other work shares its cores")

    def start(self, unit) -> None:
        self.running = unit
        self._draw()

    def __call__(self, done, total, unit, computed_passes) -> None:
        before, self.done, self.total = self.computed, done, total
        self.computed = computed_passes
        if self.running == unit:
            self.running = None
        if not self.tty and computed_passes > before:
            self._echo(f"[{done}/{total}] {_unit_name(unit)} done, {self._rate()}")
        self._draw()

    def _rate(self) -> str:
        import time

        if self.started is None or not self.computed:
            return "starting"
        rate = self.computed / max(time.perf_counter() - self.started, 1e-9)
        left = max(self.to_compute - self.computed, 0) / rate
        return f"{rate:,.0f} passes/s, about {_duration(left)} left at that rate"

    def _draw(self) -> None:
        if not self.tty:
            return
        import shutil

        what = f"computing {_unit_name(self.running)}" if self.running else "scoring"
        line = f"[{self.done}/{self.total}] {what}, {self._rate()}"
        width = shutil.get_terminal_size((100, 20)).columns - 1
        self._echo("\r\x1b[K" + line[:width], nl=False)
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            self._echo("\r\x1b[K", nl=False)
            self.drawn = False


def _interrupted(out: Path) -> str:
    """The line a run stopped by Ctrl-C ends with: what it kept and how to go on."""
    from harness.rundir import RunDir

    folder = RunDir(out)
    if not (folder / RunDir.PLAN).exists():
        return "interrupted before any work was planned; nothing was kept"
    kept = len(folder.finished())
    return (f"interrupted: {kept} unit{'s' * (kept != 1)} of work finished and kept in "
            f"{out}/; go on with: harness run --resume {shlex.quote(str(out))}")


def _unit_name(unit) -> str:
    return f"{unit.model} on {unit.part} images {unit.start + 1}-{unit.stop}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def _announce(config) -> str:
    """The first line of a run: what will be scored, from the settings alone (before
    anything heavy is loaded)."""
    from harness.inputs.zoo import run_sources

    sources = run_sources(config.zoo, config.models, config.data, config.split,
                          config.out_of_set)
    models = sum(len(z.models) for z in sources.zoos) + len(config.models)
    where = "the built-in zoo" if not config.zoo and not config.models else \
        ", ".join([m.name for m in config.zoo] + ([f"{len(config.models)} --model"]
                                                  if config.models else []))
    data, split = sources.data, sources.split
    images = f"{Path(data).name if data else '?'}" + (f" [{split}]" if split else "") + (
        f", {config.limit} drawn by label" if config.limit else "")
    measures = list(config.measures) or list(DEFAULT_MEASURES)
    sal = config.salience
    method = f"{sal.method} at each model's feature-map size" if sal.explainer.fixed_grid \
        else f"{sal.method} {sal.grid}x{sal.grid}"
    return (f"scoring {models} model{'s' * (models != 1)} ({where}) on {images}: "
            f"{', '.join(measures)}; {method} salience -> {config.out}/")


# The salience settings, shared with ``harness parity``. Defaults are shown but not set:
# a flag left out must not override the settings file.
SALIENCE_OPTIONS = [
    click.option("--method", type=click.Choice(list(METHODS)), show_default="occlusion",
                 help="Salience method."),
    click.option("--grid", type=int, show_default="7",
                 help="Cells per side of the maps (at least 7 for the SSIM measures)."),
    click.option("--target", show_default="clean",
                 help="Class a map explains: 'clean' (the clean image's prediction), 'own' "
                      "(each perturbed image's prediction), or a class name or index (e.g. "
                      "face) for every image."),
    click.option("--layer", show_default="the last spatial feature map",
                 help="cam: the 4-D tensor of the graph whose maps Grad-CAM weighs."),
    click.option("--window", type=int, show_default="1", help="Occlusion window in cells."),
    click.option("--baseline", show_default="blur",
                 help="What hides a region: blur, mean or a grey level in [0, 1]."),
    click.option("--incremental", type=click.Choice(list(INCREMENTAL)), show_default="auto",
                 help="Occlusion: recompute only what a window changes (auto: where the "
                      "graph allows it and it is predicted to pay)."),
    click.option("--n-masks", "n_masks", type=int, show_default="1000", help="RISE masks."),
    click.option("--batch-size", "batch_size", type=int, show_default="64",
                 help="Perturbed copies per ONNX Runtime call."),
]


def salience_flags(method, grid, target, layer, window, baseline, incremental, n_masks,
                   batch_size) -> dict:
    """The salience flags given, as ``salience.<key>`` settings (None: not given)."""
    return {"salience.method": method, "salience.grid": grid, "salience.window": window,
            "salience.incremental": incremental,
            "salience.target": target, "salience.layer": layer,
            "salience.baseline": None if baseline is None else parse_baseline(baseline),
            "salience.n_masks": n_masks, "salience.batch_size": batch_size}


def _run_options(f):
    # Defaults are shown but not set: a flag left out must not override the settings file.
    options = [
        click.option("--zoo", "zoo", multiple=True, type=click.Path(path_type=Path),
                     show_default="the built-in zoo", help="Zoo manifest (TOML); repeatable."),
        click.option("--model", "models", multiple=True, type=click.Path(path_type=Path),
                     help="An extra .onnx model; repeatable."),
        click.option("--data", type=click.Path(path_type=Path), show_default="the zoo's data",
                     help="In-set images (folder, image, .npz)."),
        click.option("--split", show_default="the zoo's", help="Split of an .npz image set."),
        click.option("--out-of-set", "out_of_set", multiple=True,
                     type=click.Path(path_type=Path), help="Out-of-set image set; repeatable."),
        click.option("--measures", show_default="the first seven",
                     help=f"Comma-separated measures, of: {', '.join(MEASURE_NAMES)}; "
                          "'faithfulness' names the last four."),
        *SALIENCE_OPTIONS,
        click.option("--limit", type=int, show_default="all",
                     help="Score N of the images, drawn (seeded) so their labels keep the "
                          "whole set's proportions."),
        click.option("--seed", type=int, show_default="0",
                     help="Seed for noise, controls, the randomised twin, RISE and bootstrap."),
        click.option("--test", type=click.Choice(TESTS), show_default=BOOTSTRAP_T,
                     help="The paired test of two models: studentised bootstrap, or the "
                          "sign-flip permutation test (exact only for symmetric "
                          "differences)."),
        click.option("--objective", show_default="mean_rank",
                     help='What the pick maximises: "mean_rank", a measure, or weights '
                          'such as "agreement=1,entropy=0.5".'),
        click.option("--constraint", "constraints", multiple=True,
                     help='A condition the pick must meet, e.g. "sanity >= 0.5" or '
                          '"accuracy not worse than the best by more than 0.02"; '
                          "repeatable."),
        click.option("--sanity-twins", "sanity_twins", type=int,
                     show_default="50 with cam, 10 otherwise",
                     help="Randomised twins per model for the sanity measure (each costs a "
                          "map of every image)."),
        click.option("--sanity", type=click.Choice(["twins", "cascade"]),
                     show_default="twins",
                     help="cascade: also the cascading test, the model's weights redrawn "
                          "from the output down a step at a time (4 more maps an image)."),
        click.option("--model-timeout", "model_timeout", type=float, show_default="300",
                     help="Seconds loading a model, then one batch, may take before the "
                          "model is marked failed."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                     show_default="results/<timestamp>", help="Output folder."),
        click.option("--cache", type=click.Path(path_type=Path, file_okay=False),
                     show_default="OUT/cache", help="Salience cache folder."),
        click.option("--shard-size", "shard_size", type=int, show_default="64",
                     help="Images per unit of work."),
        click.option("--until-decided", "until_decided", is_flag=True, default=None,
                     help="Score the images a look at a time and stop when the questions "
                          "are decided (with --rules: the gate's; else the pick's)."),
        click.option("--rules", "rules", type=click.Path(path_type=Path, dir_okay=False),
                     help="--until-decided: a gate file (harness gate's rules)."),
        click.option("--baseline-run", "baseline_run",
                     type=click.Path(path_type=Path, file_okay=False),
                     help="--until-decided: the run the rules' regressions compare with."),
        click.option("--look", type=int, show_default="10",
                     help="--until-decided: images added at each look."),
        click.option("--budget", type=int, show_default="all",
                     help="--until-decided: at most this many images."),
        click.option("--resume", type=click.Path(path_type=Path, file_okay=False),
                     help="Finish the interrupted run in this folder, with its settings."),
        click.option("--engine", type=click.Choice(ENGINES), show_default="in-process",
                     help="Where units run."),
        click.option("--scheduler", help="Dask: address of a running scheduler to join."),
        click.option("--workers", type=int, show_default="one per core",
                     help="Dask: size of the local cluster."),
        click.option("--config", "config_file", type=click.Path(path_type=Path),
                     help="A run.toml (every key: docs/running.md); flags override it."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--json", "as_json", is_flag=True,
                     help="Print the leaderboard as JSON (for machines)."),
        click.option("--wide", is_flag=True,
                     help="Print the leaderboard with intervals and rank intervals."),
        click.option("--print-config", "print_config", is_flag=True,
                     help="Print the resolved settings as a run.toml and stop."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command(short_help="Score every model, rank them, write the run folder.")
@_run_options
def run(zoo, models, data, split, out_of_set, measures, method, grid, target, layer, window,
        baseline, incremental, n_masks, batch_size, limit, seed, test, objective, constraints,
        sanity_twins, sanity, model_timeout, out, cache, shard_size, until_decided, rules,
        baseline_run, look, budget, resume, engine, scheduler, workers, config_file, quiet,
        as_json, wide, print_config):
    """Score every model, rank them, and write the run to --out.

    With no arguments: the built-in zoo (15 face detectors) on its built-in test split,
    all seven measures, 7 x 7 occlusion salience. Maps are cached (--cache), so a repeated
    run reuses them, and an interrupted one is finished with --resume OUT.
    """
    import datetime

    from harness.inputs.settings import build_config, from_json, read_config
    from harness.results.leaderboard import directions, render
    from harness.run import run as run_all
    from harness.rundir import RunDir

    where = {"engine": engine, "scheduler": scheduler, "workers": workers}
    flags = {"zoo": zoo or None, "models": models or None, "data": data, "split": split,
             "out_of_set": out_of_set or None, "limit": limit, "seed": seed, "test": test,
             "decision.objective": objective, "decision.constraints": constraints or None,
             "sanity_twins": sanity_twins, "sanity": sanity,
             "out": out, "model_timeout": model_timeout, "cache": cache, "shard_size": shard_size,
             "until_decided": until_decided, "rules": rules, "baseline_run": baseline_run,
             "look": look, "budget": budget,
             "measures": tuple(m.strip() for m in measures.split(",")) if measures else None,
             **salience_flags(method, grid, target, layer, window, baseline, incremental,
                              n_masks, batch_size)}
    if resume is not None:
        given = [k.split(".")[-1] for k, v in flags.items() if v is not None]
        given += ["config_file"] * bool(config_file)
        if given:
            flag = next(p.opts[0] for p in click.get_current_context().command.params
                        if p.name == given[0])
            raise HarnessError(f"--resume takes the run's settings from {resume}; drop "
                               f"{flag} (only --engine, --scheduler and --workers may change)")
        saved = RunDir(resume).plan()["settings"]
        saved.update({k: v for k, v in where.items() if v is not None})
        if engine == "in-process":
            saved.update(scheduler=None, workers=None)
        plan = Path(resume) / RunDir.PLAN
        try:
            config = from_json(saved | {"out": str(resume)})
        except HarnessError as exc:
            raise HarnessError(f"{plan}: {exc}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise HarnessError(f"{plan}: its settings are not a harness run's "
                               f"({first_line(exc)}); start a new run") from None
    else:
        settings = read_config(config_file) if config_file else {}
        settings.update({k: v for k, v in (flags | where).items() if v is not None})
        config = build_config(**settings)
    if print_config:
        from harness.inputs.settings import to_toml

        click.echo(to_toml(config), nl=False)
        return
    if config.out is None:
        # runs without --out go to results/<time> and share results/cache
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        config = dataclasses.replace(config, out=Path("results") / stamp,
                                     cache=config.cache or Path("results") / "cache")
    log_to_stderr()
    progress = None if quiet or as_json else Progress()
    say = (lambda message: None) if quiet or as_json else (lambda m: click.echo(m, err=True))
    say(_announce(config))
    try:
        done = run_all(config, progress, resume=resume is not None, log=say)
    except KeyboardInterrupt:
        if progress is not None:
            progress.end()
        click.echo(_interrupted(Path(config.out)), err=True)
        sys.exit(130)  # the shell's code for a run ended by Ctrl-C
    finally:
        if progress is not None:
            progress.end()
    dirs = directions(done.scores)
    if as_json:
        click.echo(render(done.board, dirs, "json"))
        return
    info = done.info
    if not quiet:
        click.echo(f"done: {info['models']} models, {info['images']} images, "
                   f"{info['computed_passes']:,} forward passes computed in "
                   f"{info['seconds']:.0f} s on "
                   f"{', '.join(info['providers']) or 'no provider'}", err=True)
    click.echo(render(done.board, dirs, "table", wide=wide, decision=info["decision"]))
    if "sequential" in info:
        from harness.results.stopping import summary

        click.echo(summary(info["sequential"]))
    click.echo(f"results: {config.out}/", err=True)
    if done.checks is not None:
        from harness.cli.results import print_checks

        sys.exit(print_checks(done.checks))
