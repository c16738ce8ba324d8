"""Orchestration: models x measures -> long-format records.

Every salience map is computed once per (model, image, perturbation) and shared by the
measures that read it: the clean maps feed entropy, noise, transforms, stability,
degradation and agreement alike. The work is split into units (model x shard of images,
:mod:`harness.units`): each unit's maps are looked up in the salience cache, the missing
ones computed by an engine (this process or a Dask cluster), so memory holds one shard's
perturbed images at a time and a repeated or resumed run computes nothing twice.
Perturbed images depend only on the image, the run seed and the perturbation, so every
model sees the same ones wherever it runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl

from harness.data import ImageSet
from harness.errors import HarnessError
from harness.measures import ALL, check_grid, get_measures, too_small
from harness.measures.base import MeasureInputs, ModelMaps, measure_rng
from harness.model import OnnxClassifier
from harness.perturb import NOISE_LEVELS, TRANSFORMS, degrade, transform
from harness.salience.config import SalienceConfig
from harness.units import image_hashes, model_identity, noisy_image, perturbations
from harness.work import Work

# Images per unit of work (model x shard): small enough that a killed run loses little
# and a cluster has units to balance, large enough that batches stay full.
DEFAULT_SHARD = 64


def evaluate(models: Sequence, images, labels=None, out_of_set: dict | None = None,
             families: dict | None = None, measures=ALL, salience: SalienceConfig | None = None,
             seed: int = 0, masks=None, noise_levels=NOISE_LEVELS, keep_going: bool = False,
             progress: Callable | None = None,
             on_model: Callable[[OnnxClassifier, ModelMaps], None] | None = None,
             cache=None, engine=None, shard_size: int = DEFAULT_SHARD,
             on_unit: Callable | None = None):
    """Score every model on the chosen measures.

    Args:
        models: :class:`OnnxClassifier` objects or paths to ``.onnx`` files; names unique.
        images: the in-set :class:`ImageSet`, or ``(N, H, W, 3)`` uint8/float images.
        labels: ``(N,)`` true classes (model class indices); taken from the image set
            (matched to each model's class names) when not given.
        out_of_set: set name -> ImageSet or images of the in-set image size.
        families: model name -> family name (None: no family); default the models'
            ``harness.family`` metadata. A family needs at least two models.
        measures: names or a comma-separated string (default: all six).
        salience: how maps are computed (default: 7 x 7 occlusion).
        seed: drives noise, RISE's second seed and the bootstrap; same seed, same bytes.
        masks: ``(N, H, W) bool`` human maps; default the image set's.
        noise_levels: salt-and-pepper levels of measure (b).
        keep_going: a model that cannot be scored (bad output, NaN) is reported with
            status ``failed: ...`` and null values instead of stopping the run.
        progress: called as ``progress(done_units, total_units, unit, computed_passes)``
            after each unit of work (model x shard of images).
        on_model: called with each scored model and all its maps (e.g. to keep
            examples for a report).
        cache: a :class:`harness.cache.SalienceCache`: maps found there are not
            computed again, computed ones are added.
        engine: where units run (default: in this process, see :mod:`harness.engine`).
        shard_size: images per unit of work.
        on_unit: called with each finished :class:`harness.units.Unit` once its maps are
            in the cache (the resume journal).

    Returns:
        A Polars frame in :data:`harness.results.SCHEMA`; each model's
        ``forward_passes`` equals :func:`required_passes` for the same inputs, whether
        its maps were computed now or read from the cache.
    """
    return _evaluate(models, images, labels, out_of_set, families, measures, salience, seed,
                     masks, noise_levels, keep_going, progress, on_model, cache, engine,
                     shard_size, on_unit)[0]


def _evaluate(models, images, labels, out_of_set, families, measures, salience, seed, masks,
              noise_levels, keep_going, progress, on_model, cache, engine, shard_size,
              on_unit):
    """:func:`evaluate`, also returning how many passes were computed and maps reused."""
    from harness.engine import InProcessEngine
    from harness.results import to_frame

    chosen = get_measures(measures)
    needs = frozenset().union(*(m.needs for m in chosen))
    config = salience or SalienceConfig()
    inset = _as_image_set(images, "images")
    clfs = [m if isinstance(m, OnnxClassifier) else OnnxClassifier(m, batch_size=config.batch_size)
            for m in models]
    names = [c.name for c in clfs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise HarnessError(f"model names must be unique; repeated: {', '.join(dup)}")
    if labels is not None and len(labels) != len(inset):
        raise HarnessError(f"{len(labels)} labels for {len(inset)} images")
    if masks is None:
        masks = inset.masks
    elif np.asarray(masks).shape != inset.images.shape[:3]:
        raise HarnessError(f"masks have shape {np.asarray(masks).shape}, images "
                           f"{inset.images.shape[:3]}")
    has_mask = (np.zeros(len(inset), bool) if masks is None
                else np.asarray(masks).reshape(len(inset), -1).any(axis=1))
    oos = {name: _as_image_set(s, f"out-of-set set {name!r}")
           for name, s in (out_of_set or {}).items()} if "out_of_set" in needs else {}
    for name, other in oos.items():
        if other.size != inset.size:
            raise HarnessError(f"out-of-set set {name!r} has {other.size[0]}x{other.size[1]} "
                               f"images, the in-set ones are {inset.size[0]}x{inset.size[1]}: "
                               "resize them to one size")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise HarnessError(f"shard_size must be an integer >= 1, got {shard_size!r}")
    min_map = check_grid(chosen, config)
    family_of = _families(clfs, families, check="family" in needs)

    work = Work(clfs, inset, oos, config, seed,
                 perturbations(needs, noise_levels, seed,
                               second_seed=config.method == "rise" and "family" in needs),
                 shard_size, cache)
    failed = work.run(engine or InProcessEngine({c.name: c for c in clfs}), keep_going,
                      progress, on_unit)

    maps, true_labels = {}, {}
    for clf in clfs:
        if clf.name in failed:
            continue
        try:
            true_labels[clf.name] = _labels_for(clf, inset, labels)
        except HarnessError as exc:
            if not keep_going:
                raise
            failed[clf.name] = str(exc)
            continue
        maps[clf.name] = work.model_maps(clf.name, noise_levels)
        h, w = maps[clf.name].clean.raw.shape[1:]
        if min(h, w) < min_map:  # a CAM's size is the model's, known only now
            del maps[clf.name]
            failed[clf.name] = (f"its {h}x{w} CAM maps are too small for "
                                f"{too_small(chosen, min_map)}")
            if not keep_going:
                raise HarnessError(f"model {clf.name}: {failed[clf.name]}")
            continue
        if on_model is not None:
            on_model(clf, maps[clf.name])

    common = provenance(inset, config, seed)
    records = []
    for clf in clfs:
        family = family_of.get(clf.name)
        member_names = [n for n in family_of if family_of[n] == family and n in maps] \
            if family else None
        members = [maps[n] for n in member_names] if family else None
        base = common | {"model": clf.name, "family": family,
                         "provider": work.provider(clf), "model_sha256": clf.sha256,
                         "forward_passes": work.passes(clf.name),
                         "status": "ok" if clf.name in maps else f"failed: {failed[clf.name]}"}
        if clf.name not in maps:
            records += failed_records(base, chosen)
            continue
        for measure in chosen:
            inp = MeasureInputs(maps[clf.name], members, member_names, true_labels[clf.name],
                                masks, has_mask, measure_rng(seed, clf.name, measure.name))
            result = measure.compute(inp)
            for stat in result.stats:
                records.append(base | dataclasses.asdict(stat) | {
                    "measure": measure.name, "higher_is_better": measure.higher_is_better})
    return to_frame(records), {"computed_passes": work.computed_passes,
                               "reused_maps": work.reused_maps,
                               "units": len(work.units), "cached_units": work.cached_units}


def provenance(inset: ImageSet, salience: SalienceConfig, seed: int) -> dict:
    """What every row of a run records about its inputs and software."""
    from harness.results import versions

    return versions() | {"image_set_hash": inset.hash, "salience_config": salience.to_json(),
                         "seed": seed}


def failed_records(base: dict, measures) -> list[dict]:
    """Null headline rows for a model that could not be scored; ``base`` holds its
    identity, provenance and ``status``."""
    return [base | {"measure": m.name, "statistic": "headline", "value": None, "ci_low": None,
                    "ci_high": None, "n": 0, "higher_is_better": m.higher_is_better}
            for m in measures]


def required_passes(n_images: int, measures=ALL, salience: SalienceConfig | None = None,
                    out_of_set_sizes: Sequence[int] = (), noise_levels=NOISE_LEVELS,
                    in_family: bool = True) -> int:
    """The minimum forward passes one model needs for these measures: per image set a
    clean pass per image plus its maps; RISE's explainer floor adds one more map."""
    config = salience or SalienceConfig()
    needs = frozenset().union(*(m.needs for m in get_measures(measures)))
    per_map = config.passes_per_image()
    sets = 1 + len(noise_levels) * ("noise" in needs) + len(TRANSFORMS) * (
        "transforms" in needs) + 2 * ("degradation" in needs)
    total = sets * n_images * (1 + per_map)
    if "out_of_set" in needs:
        total += sum(m * (1 + per_map) for m in out_of_set_sizes)
    if config.method == "rise" and "family" in needs and in_family:
        total += n_images * per_map
    return total


def _as_image_set(images, what) -> ImageSet:
    if isinstance(images, ImageSet):
        return images
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or not len(arr):
        raise HarnessError(f"{what}: expected (N, H, W, 3) images, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() > 1:
            raise HarnessError(f"{what}: float images must lie in [0, 1]")
        arr = np.round(arr * 255).astype(np.uint8)
    return ImageSet(arr, tuple(str(i) for i in range(len(arr))), source=what)


def _families(clfs, families, check: bool) -> dict[str, str | None]:
    """model -> family; ``check``: refuse a family of one (stability needs two)."""
    family_of = {c.name: (families or {}).get(c.name, c.family) for c in clfs}
    for family in {f for f in family_of.values() if f is not None and check}:
        members = [n for n, f in family_of.items() if f == family]
        if len(members) < 2:
            raise HarnessError(f"family {family!r} has one model ({members[0]}); stability "
                               "compares at least two training runs: add its siblings or "
                               "give it no family")
    return family_of


def _labels_for(clf, inset: ImageSet, labels):
    """True classes in ``clf``'s class order: given labels as they are, else the image
    set's labels matched to the model's class names by name (or as indices when the
    model declares no names)."""
    if labels is not None:
        return np.asarray(labels, np.int64)
    if inset.labels is None:
        return None
    if clf.spec.classes is None or inset.label_names is None:
        return inset.labels
    index = {c: i for i, c in enumerate(clf.spec.classes)}
    missing = sorted(set(inset.label_names) - set(index))
    if missing:
        raise HarnessError(f"label {missing[0]!r} of {inset.source} is not a class of model "
                           f"{clf.name} (classes: {', '.join(clf.spec.classes)})")
    return np.array([index[inset.label_names[i]] for i in inset.labels], np.int64)


def run_config(config, progress=None, resume: bool = False, log=None):
    """A whole ``harness run``: resolve zoos, models and data, score everything, and
    report models that could not be loaded or scored as failed instead of stopping.

    The run folder (``config.out``) gets a plan and a journal of finished units as the
    run goes, and the maps go to the salience cache (``config.cache_dir``), so a killed
    run can be resumed and a repeated one reuses every map.

    Args:
        config: a :class:`harness.config.RunConfig` with ``out`` set.
        progress: ``progress(done_units, total_units, unit, computed_passes)``.
        resume: continue the run already started in ``config.out`` (its inputs must
            not have changed).
        log: called with one-line messages for the user (cache use, resuming).

    Returns:
        ``(scores, info, examples)``: the long frame, a dict describing the run for
        run.json, and :class:`Examples` of maps for a report.
    """
    import time

    from harness.cache import SalienceCache
    from harness.config import to_json
    from harness.data import load_image_set
    from harness.engine import make_engine
    from harness.journal import Journal, check_inputs, read_plan, write_plan
    from harness.results import to_frame, versions
    from harness.zoo import builtin_manifest, read_manifest

    say = log or (lambda message: None)
    manifests = list(config.zoo) or ([] if config.models else [builtin_manifest()])
    zoos = [read_manifest(m) for m in manifests]
    entries = [(m.path, m.spec) for z in zoos for m in z.models]
    entries += [(path, None) for path in config.models]
    measures = get_measures(list(config.measures) or list(ALL))

    own = next((z for z in zoos if z.data is not None), None)
    data_path = config.data or (own.data if own else None)
    if data_path is None:
        raise HarnessError("no image set: pass --data IMAGES (a folder, an image or an .npz)")
    from_zoo = config.data is None
    split = config.split or (own.split if from_zoo else None)
    inset = load_image_set(data_path, split=split)
    if config.limit:
        inset = inset.subset(np.arange(min(config.limit, len(inset))))
    grid = config.salience.grid
    if config.salience.method != "cam" and grid > min(inset.size):
        raise HarnessError(f"grid {grid} is larger than the {inset.size[0]}x{inset.size[1]} "
                           f"images of {inset.source}; use at most {min(inset.size)}")
    oos_paths = list(config.out_of_set) or (list(own.out_of_set) if from_zoo else [])
    oos = {p.stem: load_image_set(p) for p in oos_paths}

    loaded, failed = [], []
    for path, spec in entries:
        try:
            loaded.append(OnnxClassifier(path, spec, batch_size=config.salience.batch_size,
                                         timeout=config.model_timeout))
        except HarnessError as exc:
            failed.append((spec.name if spec and spec.name else Path(path).stem,
                           spec.family if spec else None, str(exc)))

    inputs = {"image_set_hash": inset.hash,
              "models": {c.name: model_identity(c) for c in loaded}}
    journal = Journal(config.out)
    if resume:
        check_inputs(config.out, read_plan(config.out), inputs)
    # the cluster first: a scheduler that cannot be reached leaves the folder untouched
    engine = make_engine(config.engine, {c.name: c for c in loaded}, config.scheduler,
                         config.workers)
    try:
        if resume:
            say(f"resuming {config.out}: {len(journal.finished())} units finished before")
        else:
            write_plan(config.out, to_json(config), inputs)
        cache = SalienceCache(config.cache_dir)
        examples = Examples(inset, config.seed, config.noise_levels)
        start = time.perf_counter()
        try:
            scores, stats = _evaluate(
                loaded, inset, labels=None, out_of_set=oos, families=None,
                measures=[m.name for m in measures], salience=config.salience,
                seed=config.seed, masks=None, noise_levels=config.noise_levels,
                keep_going=True, progress=progress, on_model=examples.add, cache=cache,
                engine=engine, shard_size=config.shard_size, on_unit=journal.record,
            ) if loaded else (to_frame([]), {})
        finally:
            cache.close()
    finally:
        engine.close()
    seconds = time.perf_counter() - start
    common = provenance(inset, config.salience, config.seed) | {
        "provider": None, "model_sha256": None, "forward_passes": 0}
    extra = [r for name, family, reason in failed
             for r in failed_records(common | {"model": name, "family": family,
                                               "status": f"failed: {reason}"}, measures)]
    if extra:
        scores = pl.concat([scores, to_frame(extra)])
    passes = int(scores.unique("model")["forward_passes"].sum())
    computed = stats.get("computed_passes", 0)
    if cache.discarded:
        say(f"warning: {cache.path}: {cache.discarded} damaged entr"
            f"{'y' if cache.discarded == 1 else 'ies'} discarded and recomputed")
    if stats.get("reused_maps"):
        say(f"cache {config.cache_dir}: reused {stats['reused_maps']:,} maps "
            f"({stats['cached_units']} of {stats['units']} units whole), computed "
            f"{computed:,} of {passes:,} forward passes")
    info = {"config": to_json(config), "image_set": inset.source,
            "images": len(inset), "image_set_hash": inset.hash,
            "out_of_set": {k: len(v) for k, v in oos.items()},
            "models": len(entries), "failed": {n: r for n, _, r in failed},
            "providers": sorted(set(scores["provider"].drop_nulls().to_list())),
            "forward_passes": passes, "computed_passes": computed,
            "reused_maps": stats.get("reused_maps", 0), "engine": config.engine,
            "seconds": round(seconds, 2),
            "passes_per_second": round(computed / seconds, 1) if seconds > 0 else None,
            **versions()}
    return scores, info, examples


class Examples:
    """A few images' maps from every model, kept for the report: the clean maps of the
    first images, and for the first image its maps under a flip, a shift, the highest
    noise level and both degradation modes, with the images they explain."""

    COUNT = 8

    def __init__(self, inset: ImageSet, seed: int, noise_levels):
        first = inset.subset(np.arange(min(self.COUNT, len(inset))))
        self.x = first.pixels()
        self.names = first.names
        self.top_level = float(noise_levels[-1])
        self.noisy_first = noisy_image(self.x[0], self.top_level, seed,
                                       image_hashes(first.images[:1])[0])
        self.models, self.clean, self.variants = [], [], []

    def add(self, clf, maps: ModelMaps) -> None:
        n = len(self.x)
        first = self.x[:1]
        variants = [("clean", first[0], maps.clean.raw[0])]
        for name in ("hflip", "shift_right"):
            if name in maps.transformed:
                variants.append((name, transform(name, first)[0], maps.transformed[name].raw[0]))
        if self.top_level in maps.noisy:
            variants.append((f"noise@{self.top_level:g}", self.noisy_first,
                             maps.noisy[self.top_level].raw[0]))
        for mode in ("object", "background"):
            if mode in maps.degraded:
                variants.append((f"blur {mode}", degrade(first, maps.q_up[:1], mode)[0],
                                 maps.degraded[mode].raw[0]))
        self.models.append(clf.name)
        self.clean.append(maps.clean.raw[:n])
        self.variants.append(variants)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as arrays for an .npz (no objects, so no pickle)."""
        names = [v[0] for v in self.variants[0]] if self.variants else []
        return {
            "images": np.round(self.x * 255).astype(np.uint8), "names": np.array(self.names),
            "models": np.array(self.models), "clean": np.stack(self.clean) if self.clean
            else np.zeros((0,)), "variant_names": np.array(names),
            "variant_images": np.stack([[np.round(v[1] * 255).astype(np.uint8) for v in vs]
                                        for vs in self.variants]) if self.variants
            else np.zeros((0,)),
            "variant_maps": np.stack([[v[2] for v in vs] for vs in self.variants])
            if self.variants else np.zeros((0,))}
