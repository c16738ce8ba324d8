"""Computing one unit of work: a shard's maps for each perturbation it lacks.

Perturbed images depend only on the image, the run seed and the perturbation, so every
model sees the same ones wherever its units run.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.errors import NonFiniteOutput
from harness.execution.plan import CLEAN, SECOND_SEED, Group, Perturbation, Task, cascade_step
from harness.maps import Perturbed, normalize_upsampled
from harness.model.twin import randomised_twin
from harness.numerics.perturb import degrade, salt_and_pepper, transform
from harness.numerics.pixels import to_float
from harness.salience.curves import curve
from harness.salience.scoring import class_scores


def noisy_image(image: np.ndarray, level: float, seed: int, image_hash: str) -> np.ndarray:
    """The run's salt-and-pepper copy of one ``(H, W, 3) float32`` image. The noise is
    drawn from the run seed, the level and the image's own hash, so it is the same
    whichever shard, order or machine the image is explained in."""
    key = (1, int(round(float(level) * 1e9)), int(image_hash[:16], 16))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    return salt_and_pepper(image[None], float(level), rng)[0]


def compute(clf, task: Task) -> dict[Perturbation, Group]:
    """Compute ``task.todo`` for ``task.images`` with ``clf``.

    Raises:
        HarnessError: the model failed (non-finite output, timeout); image numbers in
            the message count from the start of the whole set.
    """
    try:
        return _compute(clf, task)
    except NonFiniteOutput as exc:
        raise exc.remapped(np.arange(task.unit.start, task.unit.stop)) from None


def _compute(clf, task: Task) -> dict[Perturbation, Group]:
    config, n = task.salience, len(task.images)
    x = to_float(task.images)
    fixed = config.class_target(clf.classes)
    fixed = None if fixed is None else np.full(n, fixed, np.int64)
    out = {}
    if CLEAN in task.todo:
        out[CLEAN] = _group(clf, n, _maps_of, clf, x, fixed, config)
    clean = out[CLEAN].maps if CLEAN in out else task.clean
    explained = clean.predicted if fixed is None else fixed  # what every map explains
    q_up = None  # the clean maps at image size, which guide the blur
    for pert in task.todo:
        if pert == CLEAN:
            continue
        if pert == SECOND_SEED:
            out[pert] = _group(clf, n, _second_seed, clf, x, explained, config)
            continue
        if pert.kind in ("twin", "cascade"):
            out[pert] = _twin_group(clf, x, explained, config, pert)
            continue
        if pert.kind == "curve":
            out[pert] = _group(clf, n, _curve_of, clf, x, clean.raw, task, explained, pert.arg)
            continue
        if pert.kind == "degrade" and q_up is None:
            q_up = normalize_upsampled(clean.raw, x.shape[1:3])[0]
        if not pert.explained:
            images = degrade(x, shuffled_maps(clean.raw, task.hashes, task.seed, x.shape[1:3]),
                             "object")
            out[pert] = _group(clf, n, _outputs_of, clf, images, explained, config)
            continue
        images = perturbed_images(pert, x, task.hashes, task.seed, q_up)
        out[pert] = _group(clf, n, _maps_of, clf, images, explained, config)
    return out


def shuffled_maps(raw: np.ndarray, hashes, seed: int, size: tuple[int, int]) -> np.ndarray:
    """The clean grid maps with their cells shuffled (a permutation per image, drawn
    from the run seed and the image's hash), at image size: the degradation control
    blurs as much as the map does, in random places."""
    out = np.empty_like(raw)
    for i, (m, h) in enumerate(zip(raw, hashes, strict=True)):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, int(h[:16], 16))))
        out[i] = m.reshape(-1)[rng.permutation(m.size)].reshape(m.shape)
    return normalize_upsampled(out, size)[0]


def perturbed_images(pert: Perturbation, x, hashes, seed: int, q_up) -> np.ndarray:
    """The images of ``pert`` (not ``clean``): ``x`` ``(n, H, W, 3) float32``; ``q_up``
    the clean maps at image size for a degradation."""
    if pert.kind == "transform":
        return transform(pert.arg, x)
    if pert.kind == "degrade":
        return degrade(x, q_up, pert.arg)
    if pert.kind == "noise":
        return np.stack([noisy_image(im, pert.arg, seed, h)
                         for im, h in zip(x, hashes, strict=True)])
    raise ValueError(f"no images for perturbation {pert}")


def _group(clf, n: int, make, *args) -> Group:
    """``make(*args)``'s maps with the passes per image they cost."""
    before = clf.forward_passes
    maps = make(*args)
    return Group(maps, (clf.forward_passes - before) // n)


def _maps_of(clf, images, targets, config) -> Perturbed:
    """Maps of ``images`` with the log-odds and probability of ``targets`` (the clean
    images' classes, or the class the settings name; None for the clean images
    themselves: their predictions) and the predictions. The maps explain ``targets``, or
    with ``target = "own"`` each image's own predicted class."""
    explained = None if config.target == "own" else targets
    out, raw = config.explainer.explain_with_outputs(clf, images, config, target=explained)
    targets = out.argmax(axis=1) if targets is None else targets
    return Perturbed(raw, class_scores(out, clf.output_kind, targets, "log_odds"),
                     class_scores(out, clf.output_kind, targets, "probability"),
                     out.argmax(axis=1))


def _twin_group(clf, x, targets, config, pert) -> Group:
    """A randomised twin's maps of the clean images (twin ``pert.arg``, or the cascade's
    step ``pert.arg``), explaining the model's own class (``targets``); a model without
    weight tensors has no twin: an empty group."""
    twin = randomised_twin(clf, pert.seed, pert.arg or 0) if pert.kind == "twin" else \
        randomised_twin(clf, pert.seed, step=cascade_step(pert.arg))
    if twin is None:
        n = len(x)
        return Group(Perturbed(np.zeros((n, 0, 0), np.float32), np.full(n, np.nan),
                               np.full(n, np.nan), np.full(n, -1, np.int64)), 0)
    return _group(twin, len(x), _maps_of, twin, x, targets,
                  dataclasses.replace(config, target="clean"))


def _curve_of(clf, x, raw, task, targets, what) -> Perturbed:
    """The scores of a faithfulness curve's copies, as ``raw`` (see
    :func:`harness.salience.curves.curve`); no map, so no class or score of its own."""
    scores = curve(clf, x, raw, task.hashes, task.seed, task.salience, targets, what)
    n = len(x)
    return Perturbed(scores, np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int64))


def _outputs_of(clf, images, targets, config) -> Perturbed:
    """The model's outputs on ``images`` for ``targets``, without a map (one pass each).
    When the method's map comes with the pass (CAM), the pass goes through the same
    session as every other, so no second session (and its memory arena) is opened."""
    if config.passes_per_image() == 0:
        out, _ = config.explainer.explain_with_outputs(clf, images, config, target=targets)
    else:
        out = clf.forward(images)
    empty = np.zeros((len(images), 0, 0), np.float32)
    return Perturbed(empty, class_scores(out, clf.output_kind, targets, "log_odds"),
                     class_scores(out, clf.output_kind, targets, "probability"),
                     out.argmax(axis=1))


def _second_seed(clf, x, targets, config) -> Perturbed:
    """Maps from the method's next seed; only the maps are read (explainer floor)."""
    next_seed = dataclasses.replace(config, seed=config.seed + 1)
    raw = config.explainer.explain(clf, x, next_seed, target=targets)
    n = len(x)
    return Perturbed(raw, np.full(n, np.nan), np.full(n, np.nan), np.asarray(targets, np.int64))
