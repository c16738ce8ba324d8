"""The plan of a run: units of work (one model on one shard of images), the
perturbations each needs, and the identities that key the cache.

A run is split into units (model x shard of the in-set images, model x shard of each
out-of-set set) so that it can be cached, resumed after a kill and spread over a
cluster. Inside a unit the work is grouped by :class:`Perturbation`; each group is one
batched explanation of the shard's images, so the same unit always computes the same
bytes, whichever engine runs it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np

from harness.maps import Perturbed
from harness.salience.curves import CURVES, copies
from harness.salience.settings import SalienceConfig

INSET = "in-set"
# control: the object blur guided by the clean map with its cells shuffled (the same
# amount of blur in random places); only its outputs are needed, not a map
DEGRADE_MODES = ("object", "background", "control")
# Images per unit of work (model x shard): small enough that a killed run loses little
# and a cluster has units to balance, large enough that batches stay full.
DEFAULT_SHARD = 64
# ... and never more pixels than that many 224 x 224 images: a unit's perturbed copies
# are held at once, so large images get smaller units.
SHARD_PIXELS = DEFAULT_SHARD * 224 * 224


def shard_images(shard_size: int, size: tuple[int, int]) -> int:
    """Images per unit: ``shard_size``, or fewer so a unit stays within
    :data:`SHARD_PIXELS`."""
    return max(1, min(shard_size, SHARD_PIXELS // (size[0] * size[1])))


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """What is done to the images before they are explained.

    Attributes:
        kind: ``clean`` (nothing), ``noise`` (salt and pepper), ``transform``,
            ``degrade`` (blur guided by the clean map; mode ``control`` is scored but
            not explained), ``second_seed`` (the clean images, explained with the
            method's next seed), ``twin`` (the clean images, explained by one of the
            model's randomised twins for the model's class), ``cascade`` (the same,
            by a twin whose weights are redrawn from the output down to a depth) or
            ``curve`` (the copies a faithfulness measure scores, guided by the clean
            map or a random one: scored, not explained).
        arg: the noise level, the transform's name, the degradation mode, the twin's
            index (None for the first, so its cache key is the one a single twin had),
            the cascade's step as ``"j/J"``, or the curve's name
            (:data:`harness.salience.curves.CURVES`).
        seed: for ``noise`` and ``twin``, the run seed its pixels or weights are drawn
            from.
    """

    kind: str
    arg: float | str | None = None
    seed: int | None = None

    @property
    def explained(self) -> bool:
        """Whether its images get maps (else only the model's outputs are kept)."""
        return not (self.kind == "degrade" and self.arg == "control") and self.kind != "curve"

    def passes(self, per_map: int, cells: int) -> int:
        """Forward passes per image: a pass and the method's map (``per_map`` passes) when
        explained, one pass when only scored, a curve's copies over maps of ``cells``."""
        if self.kind == "curve":
            return copies(self.arg, cells)
        return 1 + per_map if self.explained else 1

    @property
    def key(self) -> str:
        """Its name in cache keys (stable across versions: a new name is a cache miss)."""
        if self.kind == "noise":
            return f"noise@{float(self.arg)!r}/seed={self.seed}"
        if self.kind in ("transform", "degrade", "curve"):
            return f"{self.kind}:{self.arg}"
        if self.kind == "twin":  # the twin's own maps: its weights come from the seed
            index = f"/twin={self.arg}" if self.arg else ""
            return f"randomised-twin/seed={self.seed}{index}"
        if self.kind == "cascade":  # arg "j/J": the top j/J of the weights redrawn
            return f"randomised-cascade/seed={self.seed}/step={self.arg}"
        return {"clean": "clean", "second_seed": "rise_seed+1"}[self.kind]


def cascade_step(arg: str) -> tuple[int, int]:
    """A cascade perturbation's ``"j/J"`` as ``(j, J)``."""
    step, steps = arg.split("/")
    return int(step), int(steps)


CLEAN = Perturbation("clean")
SECOND_SEED = Perturbation("second_seed")
# Randomised twins per model for the sanity measure: one twin's draw moved a model's
# value by about 0.09 (SD over twins), so the mean of K moves by 0.09 / sqrt(K). A CAM
# twin costs one pass per image, a perturbation method's a whole map (50 passes at 7 x 7
# occlusion): docs/measures.md, "sanity", gives the spread each default leaves.
TWINS = {"cam": 50}
TWINS_DEFAULT = 10


def sanity_twins(salience, requested: int | None = None) -> int:
    """How many randomised twins the sanity measure draws: ``requested``, or the
    method's default (:data:`TWINS`)."""
    return requested if requested is not None else TWINS.get(salience.method, TWINS_DEFAULT)


# The cascading test's steps: step j of J redraws the top j/J of a model's weight
# tensors; the last step is the first twin itself, so J - 1 more maps per image.
CASCADE_STEPS = 5


def perturbations(needs: frozenset, noise_levels, transforms, seed: int,
                  second_seed: bool, twins: int = TWINS_DEFAULT,
                  cascade: bool = False) -> list[Perturbation]:
    """The perturbations of the in-set images that the needed measures read, in order
    (each randomised twin's clean maps count as one, and each step of the cascade)."""
    out = [CLEAN]
    if "noise" in needs:
        out += [Perturbation("noise", float(a), seed) for a in noise_levels]
    if "transforms" in needs:
        out += [Perturbation("transform", t) for t in transforms]
    if "degradation" in needs:
        out += [Perturbation("degrade", m) for m in DEGRADE_MODES]
    out += [Perturbation("curve", c) for c in CURVES if f"curve:{c}" in needs]
    if second_seed:
        out.append(SECOND_SEED)
    if "twin" in needs:
        out += [Perturbation("twin", k or None, seed) for k in range(twins)]
        if cascade:
            out += [Perturbation("cascade", f"{j}/{CASCADE_STEPS}", seed)
                    for j in range(1, CASCADE_STEPS)]
    return out


def image_hashes(images: np.ndarray) -> list[str]:
    """sha256 of each ``(H, W, 3) uint8`` image's shape and pixels."""
    return [hashlib.sha256(repr(im.shape).encode() + im.tobytes()).hexdigest()
            for im in images]


def image_keys(images: np.ndarray) -> list[str]:
    """One distinct key per image: its content hash, with ``:2``, ``:3``... for the
    second and later copies of an image that appears more than once."""
    return distinct_keys(image_hashes(images))


def distinct_keys(hashes: list[str]) -> list[str]:
    """:func:`image_keys` from the images' hashes, already computed."""
    seen: dict[str, int] = {}
    keys = []
    for h in hashes:
        seen[h] = seen.get(h, 0) + 1
        keys.append(h if seen[h] == 1 else f"{h}:{seen[h]}")
    return keys


def model_identity(clf) -> str:
    """What decides a model's maps besides the image: the file and the preprocessing it
    is run with (a manifest may override the file's metadata). Names, families and
    class names do not change a map, so they are left out. A model pinned to a provider
    (a comparison across providers) adds it: its maps must be that provider's."""
    spec = dataclasses.asdict(clf.spec)
    for key in ("family", "name", "classes"):
        spec.pop(key)
    pinned = [clf.pinned] if clf.pinned else []
    text = json.dumps([clf.sha256, spec, *pinned], sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


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
    todo: list[Perturbation]
    clean: Perturbed | None
    salience: SalienceConfig
    seed: int


@dataclasses.dataclass(frozen=True)
class Group:
    """One perturbation of a shard: its maps and outputs, and the forward passes each
    image cost."""

    maps: Perturbed
    passes: int
