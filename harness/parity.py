"""A whole ``harness parity``: does shipping a model in half precision, in 8-bit integers
or on another execution provider change what it decides and what it looks at?

Each model's variants are built in memory (:mod:`harness.model.variants`) and scored
beside it on the same images, as models of one run named ``model@variant``: their clean
maps (and, when measures are asked for, every map those need) come from the salience
cache like any run's, so a variant's maps are computed once and the model's are shared
with ``harness run``. The comparison itself (:mod:`harness.results.parity`) is written
to the run folder as ``parity.parquet`` and ``parity.md``, and its drift statistics join
``scores.parquet`` (measure ``parity``) with a ``variant`` column, for the gate.

With ``providers``, the model runs on the first (the reference) and each other provider
becomes a variant of the same file; every model of such a run is pinned to its provider,
so no provider is served another's maps from the cache.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from harness.errors import HarnessError, did_you_mean, first_line, printable
from harness.execution.cache import SalienceCache
from harness.execution.plan import image_keys
from harness.inputs.images import load_image_set
from harness.inputs.settings import RunConfig, to_json
from harness.inputs.zoo import run_sources
from harness.io import atomic_path, check_replaceable, check_writable, safe_file_name
from harness.measures import get_measures
from harness.model.classifier import OnnxClassifier, two_classes
from harness.model.session import CPU, CUDA, CUDA_OPTIONS
from harness.model.spec import logits_before
from harness.model.variants import BUILDERS, CALIBRATION_BATCH, CALIBRATION_IMAGES, build
from harness.numerics.similarity import WIN
from harness.report.examples import Examples
from harness.results.comparisons import family_pairs, model_pairs, values
from harness.results.leaderboard import build as build_board
from harness.results.leaderboard import directions, rank_rows, render
from harness.results.parity import (
    DRIFT,
    MEASURE,
    Comparison,
    difference,
    drift,
    score_rows,
    table,
    variant_name,
)
from harness.results.parity import render as render_parity
from harness.results.schema import per_image_column, per_image_frame, to_frame, versions
from harness.rundir import RunDir
from harness.runner import Evaluation, failed_records, provenance, score
from harness.salience.scoring import class_scores, saturated
from harness.stats.bootstrap import Bootstrap

ORIGINAL = "original"  # the variant column's value for the model itself
# Images run alone and together to tell whether a variant's outputs depend on the batch;
# differences below BATCH_TOLERANCE times the outputs' scale are rounding.
PROBE_IMAGES = 8
BATCH_TOLERANCE = 1e-4
PROVIDERS = {"cpu": CPU, "cuda": CUDA}


@dataclasses.dataclass(frozen=True)
class ParityRun:
    """A finished parity run, as written to its folder.

    Attributes:
        parity: the comparison (``parity.parquet``); ``text``: it as Markdown.
        scores: the long scores of models and variants, with a ``variant`` column.
        info: what ``run.json`` says of the run.
    """

    parity: pl.DataFrame
    text: str
    scores: pl.DataFrame
    info: dict


@dataclasses.dataclass
class _Entry:
    """A model or one of its variants on its way through the run."""

    model: str  # the model it is a variant of (its own name for the model)
    variant: str
    clf: OnnxClassifier | None = None
    failure: str | None = None
    batch_dependence: float = 0.0  # see batch_dependence()
    extra_passes: int = 0  # forward passes spent outside the maps

    @property
    def note(self) -> str | None:
        if not self.batch_dependence:
            return None
        return (f"its outputs for an image depend on the other images of its batch (by up "
                f"to {self.batch_dependence:.3g} in log-odds): run one image at a time")


def parity(config: RunConfig, names: Sequence[str] = (),
           variants: Sequence[str] | dict[str, Callable] = tuple(BUILDERS),
           providers: Sequence[str] = (), save_variants=None, progress=None,
           log=None, force: bool = False) -> ParityRun:
    """Compare every chosen model with its variants and write the run to ``config.out``.

    Args:
        config: the images (``data``/``split``/``limit``, default the zoo's), the models
            (``models``: files; ``zoo``: manifests, default the built-in zoo), the
            measures to compare (none by default: ``measures = ()`` scores only the drift),
            the salience settings, seed, cache and output folder.
        names: models of the zoo to compare, by name; none: every model of the zoo
            unless files are given.
        variants: variant names (:data:`harness.model.variants.BUILDERS`), or name ->
            builder (``(proto, calibration) -> proto``) for variants of one's own.
        providers: execution providers to compare (``cpu``, ``cuda`` or ONNX Runtime's
            names): the first runs the models, each other one is a variant.
        save_variants: a folder to write each built variant to as ``model@variant.onnx``
            (default: variants are never written), the model's name made a safe file
            name; an existing file of other content is refused unless ``force``.
        progress, log: as for :func:`harness.run.run`.
    """
    folder = RunDir(config.out)
    check_writable(config.out, "output folder")
    check_writable(config.cache_dir, "cache folder")
    if save_variants is not None:
        check_writable(save_variants, "--save-variants folder")
    with folder.owned():
        return _parity(config, folder, names, variants, providers, save_variants, force,
                       progress, log or (lambda message: None))


def _parity(config, folder, names, variants, providers, save_variants, force, progress,
            say) -> ParityRun:
    measures = get_measures(list(config.measures))
    if any(m.name == "stability" for m in measures):
        raise HarnessError("stability compares training runs of a family; parity compares a "
                           "model with its own variants: leave stability out")
    sal = config.salience
    if not sal.explainer.fixed_grid and sal.grid < WIN:
        raise HarnessError(f"grid {sal.grid} is too coarse for parity: the SSIM between maps "
                           f"needs maps of at least {WIN}x{WIN}")
    builders = _builders(variants)
    pinned = [_provider(p) for p in providers]
    if not builders and len(pinned) < 2:
        raise HarnessError("nothing to compare: name variants (--variants fp16,int8-dynamic,"
                           "int8-static) or a second provider (--providers cpu,cuda)")
    folder.clear_results()

    sources = run_sources(config.zoo, config.models, config.data, config.split,
                          config.out_of_set)
    originals = _originals(sources, config.models, names)
    if sources.data is None:
        raise HarnessError("no image set: pass --data IMAGES (a folder, an image or an .npz)")
    inset = load_image_set(sources.data, split=sources.split)
    if config.limit:
        inset = inset.sample(config.limit, config.seed)
    sal.check_image_size(inset.size, inset.source)
    oos = {p.stem: load_image_set(p) for p in sources.out_of_set} \
        if any(m.name == "out_of_set" for m in measures) else {}

    entries = []
    for path, spec in originals:
        opened = _open(path, spec, config, builders, pinned, inset, save_variants, force, say)
        for e in opened:  # opened again for their units: one model's sessions at a time
            if e.clf is not None:
                e.clf.release()
        entries += opened
    clfs = [e.clf for e in entries if e.clf is not None]
    if not any(e.clf is not None for e in entries if e.variant == ORIGINAL):
        raise HarnessError(next(e.failure for e in entries if e.variant == ORIGINAL))
    keep, examples = {}, Examples(inset, config.seed, config.noise_levels)

    def on_model(clf, maps):
        keep[clf.name] = maps
        examples.add(clf, maps)

    cache = SalienceCache(config.cache_dir)
    start = time.perf_counter()
    try:
        how = Evaluation(measures=[m.name for m in measures], salience=sal, seed=config.seed,
                         noise_levels=config.noise_levels, keep_going=True,
                         shard_size=config.shard_size, cache=cache, progress=progress,
                         on_model=on_model)
        scored = score(clfs, inset, how, out_of_set=oos, families={c.name: None for c in clfs})
    finally:
        cache.close()
    seconds = time.perf_counter() - start

    keys = image_keys(inset.images)
    boot = Bootstrap(config.seed, keys)
    comparisons, drift_rows = [], []
    for e in entries:
        if e.variant == ORIGINAL:
            continue
        name = variant_name(e.model, e.variant)
        reference = next(x for x in entries if x.model == e.model and x.variant == ORIGINAL)
        why = _why_failed(e, reference, scored.failed, keep)
        if why is not None:
            comparisons.append(Comparison(e.model, e.variant, None, f"failed: {why}"))
            continue
        values_of, passes, saturation = _per_image(reference.clf, keep[e.model], e.clf,
                                                   keep[name], inset.images)
        e.extra_passes += passes
        for m in measures:
            values_of[difference(m.name)] = \
                per_image_column(scored.per_image, name, m.name, keys) - \
                per_image_column(scored.per_image, e.model, m.name, keys)
        note = "; ".join(n for n in (e.note, saturation.note) if n) or None
        comparisons.append(Comparison(e.model, e.variant, e.clf.execution, "ok", values_of,
                                      note, saturation.images))
        drift_rows += [(name, f"{MEASURE}.{s}", values_of[s]) for s in DRIFT]
    if comparisons and all(c.status != "ok" for c in comparisons):
        first = comparisons[0]
        raise HarnessError(f"every comparison failed, e.g. "
                           f"{printable(variant_name(first.model, first.variant))}: "
                           f"{first.status.removeprefix('failed: ')}")
    parity_table = table(comparisons, [m.name for m in measures], boot)

    common = provenance(inset, sal, config.seed)
    base = {r["model"]: {k: r[k] for k in ("family", "provider", "model_sha256",
                                           "forward_passes", "flat_fraction", "status")}
            for r in scored.scores.unique("model", maintain_order=True).iter_rows(named=True)}
    extra = []
    for e in entries:
        name = e.model if e.variant == ORIGINAL else variant_name(e.model, e.variant)
        if name not in base:  # never opened: listed as failed
            base[name] = {"family": None, "provider": None, "model_sha256": None,
                          "forward_passes": 0, "flat_fraction": None,
                          "status": f"failed: {e.failure}"}
            extra += failed_records(common | {"model": name, **base[name]}, measures)
    extra += [common | base[r["model"]] | r for r in score_rows(parity_table)]
    scores = pl.concat([scored.scores, to_frame(extra)])
    variant_of = {variant_name(e.model, e.variant) if e.variant != ORIGINAL else e.model:
                  e.variant for e in entries}
    scores = scores.with_columns(variant=pl.col("model").replace_strict(
        variant_of, return_dtype=pl.String))
    per_image = pl.concat([scored.per_image, per_image_frame(drift_rows, keys)])
    vals = values(scores, per_image)
    pairs = model_pairs(vals)
    board = build_board(scores, per_image, pairs)
    dirs = directions(scores)
    scores = pl.concat([scores, rank_rows(scores, board)])
    text = render_parity(parity_table)
    failed = {variant_name(c.model, c.variant): c.status for c in comparisons
              if c.status != "ok"}
    info = {"config": to_json(config), "image_set": inset.source, "images": len(inset),
            "image_set_hash": inset.hash, "models": [e.model for e in entries
                                                     if e.variant == ORIGINAL],
            "variants": list(builders), "providers": [p for p, _ in pinned],
            "failed": failed, "seconds": round(seconds, 2),
            "forward_passes": int(scores.unique("model")["forward_passes"].sum()),
            "computed_passes": scored.spent.computed_passes,
            "reused_maps": scored.spent.reused_maps,
            "extra_passes": sum(e.extra_passes for e in entries),
            "saved_variants": str(Path(save_variants).resolve()) if save_variants else None,
            **versions()}
    if scored.spent.reused_maps:
        say(f"cache {config.cache_dir}: reused {scored.spent.reused_maps:,} maps, computed "
            f"{scored.spent.computed_passes:,} forward passes")
    folder.path.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / RunDir.PARITY_TEXT) as tmp:
        tmp.write_text(text, encoding="utf-8")
    folder.write_results({RunDir.SCORES: scores, RunDir.PER_IMAGE: per_image,
                          RunDir.PAIRS: pairs, RunDir.FAMILIES: family_pairs(vals),
                          RunDir.PARITY: parity_table},
                         info, examples.arrays(), board,
                         {"csv": render(board, dirs, "csv"), "md": render(board, dirs, "md")})
    return ParityRun(parity_table, text, scores, info)


def _builders(variants) -> dict[str, Callable]:
    if isinstance(variants, dict):
        return dict(variants)
    chosen = {}
    for name in variants:
        if name not in BUILDERS:
            raise HarnessError(f"unknown variant {name!r}{did_you_mean(name, BUILDERS)} "
                               f"(known: {', '.join(BUILDERS)})")
        chosen[name] = BUILDERS[name]
    return chosen


def _provider(name: str) -> tuple[str, str]:
    """``(short name, ONNX Runtime provider)`` for a ``--providers`` entry."""
    import onnxruntime as ort

    full = PROVIDERS.get(name.lower(), name)
    if full not in ort.get_all_providers():
        raise HarnessError(f"unknown execution provider {name!r}"
                           f"{did_you_mean(name.lower(), PROVIDERS)} (use cpu, cuda or one "
                           "of ONNX Runtime's provider names)")
    short = next((k for k, v in PROVIDERS.items() if v == full), full)
    return short, full


def _originals(sources, files, names) -> list[tuple[Path, object]]:
    """``(path, spec)`` of the models to compare: the files, then the zoo models named
    (every zoo model when neither names nor files are given)."""
    zoo_models = {m.name: m for z in sources.zoos for m in z.models}
    chosen = [(Path(f), None) for f in files]
    for name in names:
        if name not in zoo_models:
            raise HarnessError(f"{name!r} is neither a model file nor a model of the zoo"
                               f"{did_you_mean(name, zoo_models)}")
        chosen.append((zoo_models[name].path, zoo_models[name].spec))
    if not chosen:
        chosen = [(m.path, m.spec) for m in zoo_models.values()]
    return chosen


def _save(folder: Path, name: str, data: bytes, force: bool) -> None:
    """Write a variant as ``folder/name.onnx``, its name made one safe file name (a
    model's name may hold ``../``), never over a file of other content unless
    ``force``."""
    target = folder / f"{safe_file_name(name)}.onnx"
    if check_replaceable(target, force=force, data=data):
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)


def _open(path, spec, config, builders, pinned, inset, save_variants, force, say
          ) -> list[_Entry]:
    """A model opened on the reference provider, then each variant built and opened
    (a variant that cannot be is an entry with its failure)."""
    name = spec.name if spec is not None and spec.name else Path(path).stem
    try:
        clf = OnnxClassifier(path, spec, providers=_session_providers(pinned[0])
                             if pinned else None, batch_size=config.salience.batch_size,
                             timeout=config.model_timeout)
    except HarnessError as exc:
        variants = [*builders, *(short for short, _ in pinned[1:])]
        return [_Entry(name, ORIGINAL, failure=str(exc))] + [
            _Entry(name, v, failure=f"the model itself failed: {exc}") for v in variants]
    if pinned:
        short, full = pinned[0]
        if clf.provider != full:
            raise HarnessError(f"--providers: {short} ({full}) is not available here: ONNX "
                               f"Runtime gave the session {clf.provider}")
        clf.pinned = full
    entries = [_Entry(clf.name, ORIGINAL, clf)]
    proto = None
    for variant, builder in builders.items():
        entry = _Entry(clf.name, variant)
        entries.append(entry)
        try:
            if proto is None:
                import onnx

                proto = onnx.load(str(clf.path))  # with its external data, read only
            data = build(builder, proto, calibration_batches(clf, inset))
        except Exception as exc:  # a quantiser's refusal, in whatever type it raises
            entry.failure = f"cannot build it: {type(exc).__name__}: {first_line(exc)}"
            say(f"{variant_name(clf.name, variant)}: {entry.failure}")
            continue
        if save_variants is not None:
            _save(Path(save_variants), variant_name(clf.name, variant), data, force)
        try:
            entry.clf = clf.with_graph(data)
            entry.clf.name, entry.clf.pinned = variant_name(clf.name, variant), clf.pinned
            entry.batch_dependence = batch_dependence(entry.clf,
                                                      inset.images[:PROBE_IMAGES])
        except HarnessError as exc:
            entry.clf, entry.failure = None, str(exc)
            continue
        # one image at a time, as a deployment serving single images would see it: its
        # maps then do not depend on which copies shared a batch
        entry.clf.one_at_a_time = entry.batch_dependence > 0
        entry.extra_passes = entry.clf.forward_passes
    for short, full in pinned[1:]:
        entry = _Entry(clf.name, short)
        entries.append(entry)
        try:
            other = OnnxClassifier(path, spec, providers=_session_providers((short, full)),
                                   batch_size=clf.batch_size, timeout=clf.timeout)
        except HarnessError as exc:
            entry.failure = str(exc)
            continue
        if other.provider != full:
            entry.failure = (f"{full} is not available here (ONNX Runtime gave the session "
                             f"{other.provider})")
            continue
        other.name, other.pinned = variant_name(clf.name, short), full
        entry.clf = other
    return entries


def _session_providers(pinned: tuple[str, str]) -> list:
    """One provider only: a pinned model must not fall back to another."""
    full = pinned[1]
    return [(CUDA, dict(CUDA_OPTIONS))] if full == CUDA else [full]


def calibration_batches(clf: OnnxClassifier, inset) -> Callable:
    """The run's first images as the model's input tensors, batch by batch (each batch
    of the model's fixed batch size, when it has one, the last padded)."""
    def batches():
        images = inset.images[:CALIBRATION_IMAGES]
        step = clf.fixed_batch or CALIBRATION_BATCH
        for start in range(0, len(images), step):
            x = clf.preprocess(images[start:start + step])
            if len(x) < step and clf.fixed_batch:
                x = np.concatenate([x, np.repeat(x[-1:], step - len(x), axis=0)])
            yield x.astype(clf.input_dtype, copy=False)
    return batches


def batch_dependence(clf: OnnxClassifier, images: np.ndarray) -> float:
    """How far the log-odds of the predicted class move when the images run one at a
    time instead of together: 0 for an ordinary model (differences within rounding are
    taken as none), more for one that scales its activations per batch (ONNX Runtime's
    dynamic quantisation does), whose maps would otherwise depend on which perturbed
    copies happened to share a batch. ``images``: pixel-space, uint8 or float."""
    prepared = clf.preprocess(images)
    together = clf.run_prepared(prepared)  # in one run, whatever the batch size setting
    alone = np.concatenate([clf.run_prepared(prepared[i:i + 1]) for i in range(len(images))])
    scale = max(1.0, float(np.abs(together).max()))
    if np.abs(alone - together).max() <= BATCH_TOLERANCE * scale:
        return 0.0
    predicted = together.argmax(axis=1)
    moved = class_scores(alone, clf.output_kind, predicted, "log_odds") - \
        class_scores(together, clf.output_kind, predicted, "log_odds")
    return float(np.abs(moved).max())


def _why_failed(entry: _Entry, reference: _Entry, failed: dict, maps: dict) -> str | None:
    """Why a variant cannot be compared (it or its model failed to open or to be scored,
    or their maps are too small for SSIM), or None; ``failed``: model -> why scoring it
    failed."""
    def failure(e: _Entry, name: str) -> str | None:
        return e.failure or failed.get(name)

    why = failure(entry, variant_name(entry.model, entry.variant))
    if why is not None:
        return why
    if (model := failure(reference, entry.model)) is not None:
        return f"the model itself failed: {model}"
    side = min(min(m.clean.raw.shape[1:]) for m in (maps[entry.model],
                                                    maps[variant_name(entry.model,
                                                                      entry.variant)]))
    if side < WIN:
        return (f"its maps are {side} cells a side; the SSIM between maps needs at least "
                f"{WIN}x{WIN}")
    return None


@dataclasses.dataclass(frozen=True)
class _Saturation:
    """How many images had a class probability at the clip on either side, and what
    was done about it (None: nothing needed)."""

    images: int = 0
    note: str | None = None


def _per_image(clf, maps, variant, vmaps, images) -> tuple[dict, int, _Saturation]:
    """The drift of ``variant`` from ``clf`` per image, the forward passes spent
    reading the variant's score of the model's class where their predictions differ
    (the variant's maps explain its own class) or reading logits, and the saturation;
    ``images``: the run's, uint8, of which only those needed are converted and run.

    A probability at the clip has log-odds +-16.1 whatever the model's margin, so two
    saturated sides would read "no change". Where either side saturates on some image,
    both are compared on the logits before their final softmax when both graphs have
    them; otherwise the shift of those images is left out (not measurable)."""
    predicted = maps.clean.predicted
    score = np.array(maps.clean.target_score, np.float64)
    score_v = np.array(vmaps.clean.target_score, np.float64)
    prob_v = np.array(vmaps.clean.target_prob, np.float64)
    flipped = np.flatnonzero(vmaps.clean.predicted != predicted)
    passes = len(flipped)
    if len(flipped):
        out = variant.forward(images[flipped])
        score_v[flipped] = class_scores(out, variant.output_kind, predicted[flipped],
                                        "log_odds")
        prob_v[flipped] = class_scores(out, variant.output_kind, predicted[flipped],
                                       "probability")
    at_clip = saturated(maps.clean.target_prob, clf.output_kind) | \
        saturated(prob_v, variant.output_kind)
    saturation = _Saturation()
    if at_clip.any():
        count = int(at_clip.sum())
        on_logits = _logit_scores(clf, images, predicted), \
            _logit_scores(variant, images, predicted)
        if on_logits[0] is not None and on_logits[1] is not None:
            score, score_v = on_logits
            passes += 2 * len(images)
            saturation = _Saturation(count, f"{count} of {len(images)} images at the "
                                            "probability clip: log-odds read from the logits")
        else:
            score[at_clip] = np.nan
            saturation = _Saturation(count, f"{count} of {len(images)} images at the "
                                            "probability clip and no logits in the graph: "
                                            "their log-odds shift is not measurable")
    values = drift(maps.q, maps.flat, predicted, score, vmaps.q, vmaps.flat,
                   vmaps.clean.predicted, score_v)
    return values, passes, saturation


def _logit_scores(clf, images, classes) -> np.ndarray | None:
    """The log-odds of ``classes`` from the logits before ``clf``'s final softmax (or
    sigmoid), or None when its graph has none."""
    name = logits_before(clf.graph, clf.output_name, clf.single_logit)
    if name is None:
        return None
    _, (z,) = clf.forward(images, extra_outputs=(name,))
    z = two_classes(z.reshape(len(images), -1), "logits")
    return class_scores(z, "logits", classes, "log_odds")
