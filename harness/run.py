"""A whole ``harness run``: resolve zoos, models and data, score everything into the run
folder, and report models that could not be loaded or scored as failed instead of
stopping.

The run folder gets a plan and a journal of finished units as the run goes, and the
maps go to the salience cache, so a killed run can be resumed and a repeated one
reuses every map.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import polars as pl

from harness.errors import HarnessError
from harness.execution.cache import SalienceCache
from harness.execution.engines import make_engine
from harness.execution.plan import model_identity
from harness.inputs.images import load_image_set
from harness.inputs.settings import RunConfig, to_json
from harness.inputs.zoo import run_sources
from harness.io import check_writable
from harness.measures import DEFAULT, get_measures
from harness.measures.accuracy import NAME as ACCURACY
from harness.model.classifier import OnnxClassifier
from harness.report.examples import Examples
from harness.results.comparisons import family_pairs, model_pairs, values
from harness.results.decision import check_names, decide
from harness.results.leaderboard import build, directions, rank_rows, render
from harness.results.schema import per_image_frame, to_frame, versions
from harness.rundir import RunDir
from harness.runner import Evaluation, Scored, Spent, failed_records, provenance, score
from harness.salience.incremental import REFUSED
from harness.salience.occlusion import incremental_provenance
from harness.sequential import run_looks


@dataclasses.dataclass(frozen=True)
class Finished:
    """A finished run, as written to its folder.

    Attributes:
        scores: the long frame (``scores.parquet``).
        per_image: every headline's per-image values (``per_image.parquet``).
        pairs: every pair of models per measure (``pairs.parquet``).
        families: every pair of families per measure (``families.parquet``).
        board: the wide leaderboard.
        info: what ``run.json`` says of the run.
        checks: with ``--until-decided --rules``, the gate's lines at stopping.
    """

    scores: pl.DataFrame
    per_image: pl.DataFrame
    pairs: pl.DataFrame
    families: pl.DataFrame
    board: pl.DataFrame
    info: dict
    checks: list | None = None


def run(config: RunConfig, progress=None, resume: bool = False, log=None) -> Finished:
    """Score everything ``config`` names and write the run to ``config.out``.

    Args:
        config: the settings, with ``out`` set.
        progress: ``progress(done_units, total_units, unit, computed_passes)``.
        resume: continue the run already started in ``config.out`` (its inputs must
            not have changed).
        log: called with one-line messages for the user (cache use, resuming).
    """
    folder = RunDir(config.out)
    check_writable(config.out, "output folder")
    check_writable(config.cache_dir, "cache folder")
    with folder.owned():
        return _run(config, folder, progress, resume, log or (lambda message: None))


def _run(config: RunConfig, folder: RunDir, progress, resume: bool, say) -> Finished:
    if not resume:
        folder.clear_results()
    sources = run_sources(config.zoo, config.models, config.data, config.split,
                          config.out_of_set)
    entries = [(m.path, m.spec) for z in sources.zoos for m in z.models]
    entries += [(path, None) for path in config.models]
    measures = get_measures(list(config.measures) or list(DEFAULT))
    check_names(config.decision, [m.name for m in measures] + [ACCURACY])

    if sources.data is None:
        raise HarnessError("no image set: pass --data IMAGES (a folder, an image or an .npz)")
    inset = load_image_set(sources.data, split=sources.split)
    if config.limit:
        inset = inset.sample(config.limit, config.seed)
    config.salience.check_image_size(inset.size, inset.source)
    oos = {p.stem: load_image_set(p) for p in sources.out_of_set}

    loaded, failed = [], []
    for path, spec in entries:
        try:
            loaded.append(OnnxClassifier(path, spec, batch_size=config.salience.batch_size,
                                         timeout=config.model_timeout))
            loaded[-1].release()  # opened again for its units: one model's at a time
        except HarnessError as exc:
            failed.append((spec.name if spec and spec.name else Path(path).stem,
                           spec.family if spec else None, str(exc)))

    _check_target(config.salience, loaded)
    inputs = {"image_set_hash": inset.hash,
              "models": {c.name: model_identity(c) for c in loaded}}
    if resume:
        folder.check_inputs(inputs)
    # the cluster first: a scheduler that cannot be reached leaves the folder untouched
    engine = make_engine(config.engine, {c.name: c for c in loaded}, config.scheduler,
                         config.workers)
    try:
        if resume:
            say(f"resuming {config.out}: {len(folder.finished())} units finished before")
        else:
            folder.start(to_json(config), inputs)
        cache = SalienceCache(config.cache_dir)
        examples = Examples(inset, config.seed, config.noise_levels)
        how = Evaluation(measures=[m.name for m in measures], salience=config.salience,
                         sanity_twins=config.sanity_twins,
                         sanity_cascade=config.sanity == "cascade",
                         seed=config.seed, noise_levels=config.noise_levels, keep_going=True,
                         shard_size=config.shard_size, cache=cache, engine=engine,
                         progress=progress, on_model=examples.add, on_unit=folder.record)
        start = time.perf_counter()
        outcome = None
        try:
            if loaded and config.until_decided:
                outcome = run_looks(loaded, inset, how, oos, config, say)
                scored, inset, examples = outcome.scored, outcome.inset, outcome.examples
            else:
                scored = score(loaded, inset, how, out_of_set=oos) if loaded \
                    else Scored(to_frame([]), per_image_frame([], []), Spent())
        finally:
            cache.close()
    finally:
        engine.close()
    seconds = time.perf_counter() - start
    scores, spent = scored.scores, scored.spent
    common = provenance(inset, config.salience, config.seed) | {
        "provider": None, "model_sha256": None, "forward_passes": 0}
    extra = [r for name, family, reason in failed
             for r in failed_records(common | {"model": name, "family": family,
                                               "status": f"failed: {reason}"}, measures)]
    if extra:
        scores = pl.concat([scores, to_frame(extra)])
    passes = int(scores.unique("model")["forward_passes"].sum())
    if cache.discarded:
        say(f"warning: {cache.path}: {cache.discarded} damaged entr"
            f"{'y' if cache.discarded == 1 else 'ies'} discarded and recomputed")
    if spent.reused_maps:
        say(f"cache {config.cache_dir}: reused {spent.reused_maps:,} maps "
            f"({spent.cached_units} of {spent.units} units whole), computed "
            f"{spent.computed_passes:,} of {passes:,} forward passes")
    info = {"config": to_json(config), "image_set": inset.source,
            "images": len(inset), "image_set_hash": inset.hash,
            "out_of_set": {k: len(v) for k, v in oos.items()},
            "models": len(entries), "failed": {n: r for n, _, r in failed},
            "providers": sorted(set(scores["provider"].drop_nulls().to_list())),
            "forward_passes": passes, "computed_passes": spent.computed_passes,
            "reused_maps": spent.reused_maps, "engine": config.engine,
            "seconds": round(seconds, 2),
            "passes_per_second": round(spent.computed_passes / seconds, 1)
            if seconds > 0 else None,
            **versions()}
    if config.salience.method == "occlusion":
        info["incremental"] = _incremental(loaded, scores, inset, config.salience, say)
    vals = values(scores, scored.per_image, config.test)
    pairs, families = model_pairs(vals), family_pairs(vals)
    board = build(scores, scored.per_image, pairs)
    dirs = directions(scores)
    scores = pl.concat([scores, rank_rows(scores, board)])
    info["decision"] = decide(vals, scores, pairs, board, config.decision)
    checks = None
    if outcome is not None:
        checks = outcome.checks(scores, info["decision"])
        info["sequential"] = outcome.record(scores, checks)
    folder.write_results({RunDir.SCORES: scores, RunDir.PER_IMAGE: scored.per_image,
                          RunDir.PAIRS: pairs, RunDir.FAMILIES: families},
                         info, examples.arrays(), board,
                         {"csv": render(board, dirs, "csv"),
                          "md": render(board, dirs, "md", decision=info["decision"])})
    return Finished(scores, scored.per_image, pairs, families, board, info, checks)


def _incremental(models, scores, inset, salience, say) -> dict:
    """Per model, how its occlusion maps were computed (recomputing only what windows
    change, or in full, and why); a self-check that refused it is said."""
    providers = dict(scores.select("model", "provider").drop_nulls().unique("model")
                     .iter_rows())
    found = {}
    for clf in models:
        if clf.name not in providers:
            continue
        found[clf.name] = incremental_provenance(clf, salience, inset.images.shape[1:3],
                                                 providers[clf.name])
        if REFUSED in providers[clf.name]:
            say(f"warning: model {clf.name}: incremental occlusion differed from the full "
                "recompute on its first image; its maps were computed in full")
    return found


def _check_target(salience, models) -> None:
    """A class target that no model has is the user's mistake: one line, before any
    work (a model without it, among others that have it, fails on its own)."""
    problems = []
    for clf in models:
        try:
            salience.class_target(clf.classes)
        except HarnessError as exc:
            problems.append(str(exc))
    if models and len(problems) == len(models):
        raise HarnessError(f"--target: {problems[0]}")
