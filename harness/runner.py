"""Models x measures -> long-format records, and nothing else.

Every salience map is computed once per (model, image, perturbation) and shared by the
measures that read it: the clean maps feed entropy, noise, transforms, stability,
degradation and agreement alike. The maps come from the scheduler
(:mod:`harness.execution.scheduler`), which splits the work into units, serves what it
can from the salience cache and runs the rest on an engine (this process or a Dask
cluster), so memory holds one shard's perturbed images at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from harness.errors import HarnessError, excerpt
from harness.execution import plan
from harness.execution.engines import InProcessEngine
from harness.execution.plan import DEFAULT_SHARD, INSET, perturbations, shard_images
from harness.execution.scheduler import Scheduler
from harness.inputs.images import ImageSet, marked
from harness.measures import DEFAULT, accuracy, check_grid, get_measures, saturation, too_small
from harness.measures.base import MeasureInputs
from harness.model.classifier import OnnxClassifier
from harness.numerics.perturb import NOISE_LEVELS, TRANSFORMS
from harness.numerics.pixels import to_uint8
from harness.results.schema import per_image_frame, to_frame, versions
from harness.salience.curves import CURVES, copies
from harness.salience.scoring import saturated
from harness.salience.settings import SalienceConfig
from harness.stats.bootstrap import Bootstrap


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How models are scored (everything but the models and the images).

    Attributes:
        measures: names, or a comma-separated string (default: all seven).
        salience: how maps are computed (default: 7 x 7 occlusion).
        seed: drives noise, RISE's second seed and the bootstrap; same seed, same bytes.
        noise_levels: salt-and-pepper levels of measure (b).
        sanity_twins: randomised twins per model for measure (g) (None: the method's
            default, :func:`harness.execution.plan.sanity_twins`).
        sanity_cascade: also the cascading test of measure (g): twins whose weights are
            redrawn from the output down, a step at a time.
        keep_going: a model that cannot be scored (bad output, NaN) is reported with
            status ``failed: ...`` and null values instead of stopping the run.
        shard_size: images per unit of work.
        cache: a :class:`harness.execution.cache.SalienceCache`: maps found there are
            not computed again, computed ones are added.
        engine: where units run (default: in this process, see
            :mod:`harness.execution.engines`).
        progress: called as ``progress(done_units, total_units, unit, computed_passes)``
            after each unit of work (model x shard of images); when it has them, also
            ``progress.plan(units, cached_units, passes_to_compute)`` once the cache is
            consulted and ``progress.start(unit)`` as a unit is taken.
        on_model: called with each scored model and all its maps (e.g. to keep
            examples for a report).
        on_unit: called with each finished :class:`harness.execution.plan.Unit` once its
            maps are in the cache (the resume journal).
    """

    measures: Sequence[str] | str = DEFAULT
    salience: SalienceConfig = SalienceConfig()
    seed: int = 0
    noise_levels: Sequence[float] = NOISE_LEVELS
    sanity_twins: int | None = None
    sanity_cascade: bool = False
    keep_going: bool = False
    shard_size: int = DEFAULT_SHARD
    cache: object = None
    engine: object = None
    progress: Callable | None = None
    on_model: Callable | None = None
    on_unit: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Scored:
    """What :func:`score` returns: the long scores, every headline's per-image values
    (:data:`harness.results.schema.PER_IMAGE`), what the maps cost, and why each model
    that could not be scored failed (also in its rows' ``status``, when it has rows:
    with no measure chosen it has none)."""

    scores: pl.DataFrame
    per_image: pl.DataFrame
    spent: Spent
    failed: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Spent:
    """What producing the maps cost: forward passes computed in this call, maps reused
    from the cache, units in all and units served whole by the cache, maps computed."""

    computed_passes: int = 0
    reused_maps: int = 0
    units: int = 0
    cached_units: int = 0
    computed_maps: int = 0


def evaluate(models: Sequence, images, labels=None, out_of_set: dict | None = None,
             families: dict | None = None, masks=None, **settings) -> pl.DataFrame:
    """Score every model on the chosen measures.

    Args:
        models: :class:`OnnxClassifier` objects or paths to ``.onnx`` files; names unique.
        images: the in-set :class:`ImageSet`, or ``(N, H, W, 3)`` uint8/float images.
        labels: ``(N,)`` true classes (model class indices); taken from the image set
            (matched to each model's class names) when not given.
        out_of_set: set name -> ImageSet or images of the in-set image size.
        families: model name -> family name (None: no family); default the models'
            ``harness.family`` metadata. A family needs at least two models.
        masks: ``(N, H, W) bool`` human maps; default the image set's.
        **settings: the fields of :class:`Evaluation` (``measures``, ``salience``,
            ``seed``, ``noise_levels``, ``keep_going``, ``cache``, ...).

    Returns:
        A Polars frame in :data:`harness.results.schema.SCHEMA` (with labels, also the
        clean test accuracy as measure ``accuracy``: context, never ranked); each
        model's ``forward_passes`` equals :func:`required_passes` for the same inputs,
        whether its maps were computed now or read from the cache.
    """
    return score(models, images, Evaluation(**settings), labels, out_of_set, families,
                 masks).scores


def score(models: Sequence, images, how: Evaluation, labels=None, out_of_set=None,
          families=None, masks=None) -> Scored:
    """:func:`evaluate` with its settings in one object, also returning the per-image
    values and what the maps cost."""
    chosen = get_measures(how.measures)
    needs = frozenset().union(*(m.needs for m in chosen))
    config = how.salience or SalienceConfig()
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
    has_mask = marked(masks, len(inset))
    oos = {name: _as_image_set(s, f"out-of-set set {name!r}")
           for name, s in (out_of_set or {}).items()} if "out_of_set" in needs else {}
    for name, other in oos.items():
        if other.size != inset.size:
            raise HarnessError(f"out-of-set set {name!r} has {other.size[0]}x{other.size[1]} "
                               f"images, the in-set ones are {inset.size[0]}x{inset.size[1]}: "
                               "resize them to one size")
    if not isinstance(how.shard_size, int) or how.shard_size < 1:
        raise HarnessError(f"shard_size must be an integer >= 1, got {how.shard_size!r}")
    min_map = check_grid(chosen, config)
    for measure in chosen:
        if min(inset.size) < measure.min_image:
            raise HarnessError(f"{measure.name} compares maps at image size with SSIM, which "
                               f"needs images of at least {measure.min_image}x"
                               f"{measure.min_image}; these are {inset.size[0]}x"
                               f"{inset.size[1]}: leave {measure.name} out or use larger images")
    family_of = _families(clfs, families, check="family" in needs)

    perts = perturbations(needs, how.noise_levels, TRANSFORMS, how.seed,
                          second_seed=config.explainer.seeded and "family" in needs,
                          twins=plan.sanity_twins(config, how.sanity_twins),
                          cascade=how.sanity_cascade)
    scheduler = Scheduler(clfs, inset, oos, config, how.seed, perts,
                          shard_images(how.shard_size, inset.size), how.cache)
    engine = how.engine or InProcessEngine({c.name: c for c in clfs})
    failed = scheduler.run(engine, how.keep_going, how.progress, how.on_unit)

    maps, true_labels = {}, {}
    for clf in clfs:
        if clf.name in failed:
            continue
        try:
            true_labels[clf.name] = _labels_for(clf, inset, labels)
        except HarnessError as exc:
            if not how.keep_going:
                raise
            failed[clf.name] = str(exc)
            continue
        maps[clf.name] = scheduler.model_maps(clf.name)
        h, w = maps[clf.name].clean.raw.shape[1:]
        if min(h, w) < min_map:  # a CAM's size is the model's, known only now
            del maps[clf.name]
            failed[clf.name] = (f"its {h}x{w} CAM maps are too small for "
                                f"{too_small(chosen, min_map)}")
            if not how.keep_going:
                raise HarnessError(f"model {clf.name}: {failed[clf.name]}")
            continue
        if how.on_model is not None:
            how.on_model(clf, maps[clf.name])

    keys = scheduler.image_keys(INSET)
    boot = Bootstrap(how.seed, keys)
    set_boots = {name: Bootstrap(how.seed, scheduler.image_keys(name)) for name in oos}
    common = provenance(inset, config, how.seed)
    records, per_image = [], []
    for clf in clfs:
        family = family_of.get(clf.name)
        member_names = [n for n in family_of if family_of[n] == family and n in maps] \
            if family else None
        members = [maps[n] for n in member_names] if family else None
        base = common | {"model": clf.name, "family": family,
                         "provider": scheduler.provider(clf), "model_sha256": clf.sha256,
                         "forward_passes": scheduler.passes(clf.name),
                         "flat_fraction": float(maps[clf.name].flat.mean())
                         if clf.name in maps else None,
                         "status": "ok" if clf.name in maps else f"failed: {failed[clf.name]}"}
        if clf.name not in maps:
            records += failed_records(base, chosen)
            continue
        results = [m.compute(MeasureInputs(maps[clf.name], members, member_names,
                                           true_labels[clf.name], masks, has_mask,
                                           inset.images, boot, set_boots)) for m in chosen]
        results.append(accuracy.compute(maps[clf.name].clean.predicted,
                                        true_labels[clf.name], boot))
        if clf.output_kind == "probabilities":
            results.append(saturation.compute(saturated(maps[clf.name].clean.target_prob,
                                                        clf.output_kind)))
        for result in filter(None, results):
            for stat in result.stats:
                records.append(base | dataclasses.asdict(stat) | {
                    "measure": result.measure, "higher_is_better": result.higher_is_better})
            if result.per_image is not None:
                per_image.append((clf.name, result.measure, result.per_image))
    spent = Spent(scheduler.computed_passes, scheduler.reused_maps, len(scheduler.units),
                  scheduler.cached_units, scheduler.computed_maps)
    return Scored(to_frame(records), per_image_frame(per_image, keys), spent, failed)


def provenance(inset: ImageSet, salience: SalienceConfig, seed: int) -> dict:
    """What every row of a run records about its inputs and software."""
    return versions() | {"image_set_hash": inset.hash, "salience_config": salience.to_json(),
                         "seed": seed}


def failed_records(base: dict, measures) -> list[dict]:
    """Null headline rows for a model that could not be scored; ``base`` holds its
    identity, provenance and ``status``."""
    return [base | {"measure": m.name, "statistic": "headline", "value": None, "ci_low": None,
                    "ci_high": None, "n": 0, "higher_is_better": m.higher_is_better}
            for m in measures]


def required_passes(n_images: int, measures=DEFAULT, salience: SalienceConfig | None = None,
                    out_of_set_sizes: Sequence[int] = (), noise_levels=NOISE_LEVELS,
                    in_family: bool = True, sanity_twins: int | None = None,
                    sanity_cascade: bool = False, map_side: int | None = None) -> int:
    """The minimum forward passes one model needs for these measures: per image set a
    clean pass per image plus its maps; the degradation control one pass per image; each
    of the sanity measure's randomised twins (and with ``sanity_cascade`` each step of
    the cascade but the last, which is the first twin) a clean pass and a map per image;
    a seeded method's explainer floor adds one more map. The faithfulness measures add
    their copies per image: deletion and insertion K + 1 each for the model's map and as
    many for a random one (K = the map's cells, at most 64), ROAD two per removal
    fraction for each map, faithfulness correlation one per subset plus the unhidden
    image. ``map_side``: the maps' side where it is not the settings' grid (a CAM's is
    its model's)."""
    config = salience or SalienceConfig()
    needs = frozenset().union(*(m.needs for m in get_measures(measures)))
    per_map = config.passes_per_image()
    sets = 1 + len(noise_levels) * ("noise" in needs) + len(TRANSFORMS) * (
        "transforms" in needs) + 2 * ("degradation" in needs)
    total = sets * n_images * (1 + per_map)
    if "degradation" in needs:  # the control: one pass per image, no map
        total += n_images
    if "twin" in needs:  # the randomised twins' clean maps (for a model with weights)
        twins = plan.sanity_twins(config, sanity_twins) + \
            (plan.CASCADE_STEPS - 1) * sanity_cascade
        total += twins * n_images * (1 + per_map)
    if "out_of_set" in needs:
        total += sum(m * (1 + per_map) for m in out_of_set_sizes)
    cells = (map_side or config.grid) ** 2
    total += n_images * sum(copies(c, cells) for c in CURVES if f"curve:{c}" in needs)
    if config.explainer.seeded and "family" in needs and in_family:
        total += n_images * per_map
    return total


def _as_image_set(images, what) -> ImageSet:
    if isinstance(images, ImageSet):
        return images
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or not len(arr):
        raise HarnessError(f"{what}: expected (N, H, W, 3) images, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
            raise HarnessError(f"{what}: float images must lie in [0, 1]")
        arr = to_uint8(arr)
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
        raise HarnessError(f"label {excerpt(missing[0])} of {inset.source} is not a class of model "
                           f"{clf.name} (classes: {', '.join(clf.spec.classes)})")
    return np.array([index[inset.label_names[i]] for i in inset.labels], np.int64)
