"""Units of work: one model on one shard of images, and the maps that shard needs.

A run is split into units (model x shard of the in-set images, model x shard of each
out-of-set set) so that it can be cached, resumed after a kill and spread over a
cluster. Inside a unit the work is grouped by perturbation; each group is one batched
explanation of the shard's images, so the same unit always computes the same bytes,
whichever engine runs it.

Perturbations are named by strings, which also go into the cache keys:
``clean``, ``noise@<level>/seed=<seed>``, ``transform:<name>``, ``degrade:<mode>`` and
``rise_seed+1`` (RISE's second mask seed, the explainer floor of measure d).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from harness.errors import HarnessError
from harness.measures.base import Perturbed
from harness.model import NonFiniteOutput, OnnxClassifier
from harness.perturb import TRANSFORMS, degrade, salt_and_pepper, transform
from harness.salience.config import SalienceConfig, explain, explain_with_outputs
from harness.salience.normalize import normalize_upsampled
from harness.salience.scoring import class_scores

CLEAN = "clean"
SECOND_SEED = "rise_seed+1"
DEGRADE_MODES = ("object", "background")
INSET = "in-set"


def noise_name(level: float, seed: int) -> str:
    return f"noise@{float(level)!r}/seed={seed}"


def perturbations(needs: frozenset, noise_levels, seed: int, second_seed: bool) -> list[str]:
    """The perturbations of the in-set images that the needed measures read, in order."""
    names = [CLEAN]
    if "noise" in needs:
        names += [noise_name(a, seed) for a in noise_levels]
    if "transforms" in needs:
        names += [f"transform:{t}" for t in TRANSFORMS]
    if "degradation" in needs:
        names += [f"degrade:{m}" for m in DEGRADE_MODES]
    if second_seed:
        names.append(SECOND_SEED)
    return names


def image_hashes(images: np.ndarray) -> list[str]:
    """sha256 of each ``(H, W, 3) uint8`` image's shape and pixels."""
    return [hashlib.sha256(repr(im.shape).encode() + im.tobytes()).hexdigest()
            for im in images]


def model_identity(clf: OnnxClassifier) -> str:
    """What decides a model's maps besides the image: the file and the preprocessing it
    is run with (a manifest may override the file's metadata). Names, families and
    class names do not change a map, so they are left out."""
    spec = dataclasses.asdict(clf.spec)
    for key in ("family", "name", "classes"):
        spec.pop(key)
    text = json.dumps([clf.sha256, spec], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def noisy_image(image: np.ndarray, level: float, seed: int, image_hash: str) -> np.ndarray:
    """The run's salt-and-pepper copy of one ``(H, W, 3) float32`` image. The noise is
    drawn from the run seed, the level and the image's own hash, so it is the same
    whichever shard, order or machine the image is explained in."""
    key = (1, int(round(float(level) * 1e9)), int(image_hash[:16], 16))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    return salt_and_pepper(image[None], float(level), rng)[0]


@dataclasses.dataclass(frozen=True)
class Unit:
    """One model on images ``start:stop`` of ``part`` (:data:`INSET` or an out-of-set
    set's name)."""

    model: str
    part: str
    start: int
    stop: int

    @property
    def id(self) -> str:
        return f"{self.model}|{self.part}|{self.start}:{self.stop}"


def split_units(model: str, part: str, n: int, shard_size: int) -> list[Unit]:
    return [Unit(model, part, s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


@dataclasses.dataclass(frozen=True)
class Task:
    """What a worker needs to compute a unit's missing groups.

    Attributes:
        unit: which unit.
        images: ``(n, H, W, 3) uint8`` the shard's images.
        hashes: their :func:`image_hashes`.
        todo: the perturbations to compute, in order.
        clean: the shard's clean maps when they come from the cache and ``todo`` holds
            groups that depend on them (explained class, guided blur); else None.
        salience: the salience settings.
        seed: the run seed.
    """

    unit: Unit
    images: np.ndarray
    hashes: list[str]
    todo: list[str]
    clean: Perturbed | None
    salience: SalienceConfig
    seed: int


@dataclasses.dataclass(frozen=True)
class Group:
    """One perturbation of a shard: its maps and outputs, and the forward passes each
    image cost."""

    maps: Perturbed
    passes: int


def compute(clf: OnnxClassifier, task: Task) -> dict[str, Group]:
    """Compute ``task.todo`` for ``task.images`` with ``clf``.

    Raises:
        HarnessError: the model failed (non-finite output, timeout); image numbers in
            the message count from the start of the whole set.
    """
    try:
        return _compute(clf, task)
    except NonFiniteOutput as exc:
        # re-raised as a plain HarnessError: it names images of the whole set and
        # pickles (a cluster worker sends it back)
        raise HarnessError(exc.describe(exc.rows + task.unit.start)) from None


def _compute(clf, task: Task) -> dict[str, Group]:
    config, n = task.salience, len(task.images)
    x = task.images.astype(np.float32) / np.float32(255.0)
    out = {}
    if CLEAN in task.todo:
        out[CLEAN] = _group(clf, n, _maps_of, clf, x, None, config)
    clean = out[CLEAN].maps if CLEAN in out else task.clean
    q_up = None  # the clean maps at image size, which guide the blur
    for name in task.todo:
        if name == CLEAN:
            continue
        if name == SECOND_SEED:
            out[name] = _group(clf, n, _second_seed, clf, x, clean.predicted, config)
            continue
        if name.startswith("degrade:") and q_up is None:
            q_up = normalize_upsampled(clean.raw, x.shape[1:3])[0]
        images = _perturbed(name, x, task.hashes, task.seed, q_up)
        out[name] = _group(clf, n, _maps_of, clf, images, clean.predicted, config)
    return out


def _perturbed(name: str, x, hashes, seed: int, q_up) -> np.ndarray:
    """The images of perturbation ``name`` (not ``clean``)."""
    kind, _, arg = name.partition(":")
    if kind == "transform":
        return transform(arg, x)
    if kind == "degrade":
        return degrade(x, q_up, arg)
    if name.startswith("noise@"):
        level = float(name[len("noise@"):].split("/", 1)[0])
        return np.stack([noisy_image(im, level, seed, h) for im, h in zip(x, hashes, strict=True)])
    raise ValueError(f"unknown perturbation {name!r}")


def _group(clf, n: int, make, *args) -> Group:
    """``make(*args)``'s maps with the passes per image they cost."""
    before = clf.forward_passes
    maps = make(*args)
    return Group(maps, (clf.forward_passes - before) // n)


def _maps_of(clf, images, targets, config) -> Perturbed:
    """Maps of ``images`` explained for ``targets`` (None: the predicted classes), with
    the log-odds and probability of those classes and the predictions."""
    out, raw = explain_with_outputs(clf, images, config, target=targets)
    targets = out.argmax(axis=1) if targets is None else targets
    return Perturbed(raw, class_scores(out, clf.output_kind, targets, "log_odds"),
                     class_scores(out, clf.output_kind, targets, "probability"),
                     out.argmax(axis=1))


def _second_seed(clf, x, targets, config) -> Perturbed:
    """RISE maps from the next mask seed; only the maps are read (explainer floor)."""
    raw = explain(clf, x, config, target=targets, clean=None, seed=config.seed + 1)
    n = len(x)
    return Perturbed(raw, np.full(n, np.nan), np.full(n, np.nan), np.asarray(targets, np.int64))
