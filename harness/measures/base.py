"""What every measure shares: its inputs, its result rows, and bootstrap intervals.

A measure is a pure function over arrays (in its own module) plus a :class:`Measure`
that declares its name, direction, the salience it needs, and turns the arrays of a
:class:`MeasureInputs` into a :class:`MeasureResult`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable

import numpy as np

BOOTSTRAP_RESAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Perturbed:
    """Maps and outputs of one model on perturbed copies of the in-set images.

    Attributes:
        raw: ``(N, g, g) float32`` raw maps, explained for the clean target class.
        target_score: ``(N,) float64`` score of the clean target class.
        target_prob: ``(N,) float64`` probability of the clean target class.
        predicted: ``(N,) int64`` class predicted on the perturbed image.
    """

    raw: np.ndarray
    target_score: np.ndarray
    target_prob: np.ndarray
    predicted: np.ndarray


@dataclasses.dataclass(frozen=True)
class ModelMaps:
    """Every map one model produced in a run, computed once and shared by measures.

    Attributes:
        clean: the in-set images themselves (``raw`` maps and outputs).
        q, flat, s_norm: ``normalize``/``scale`` of ``clean.raw``.
        q_up: ``(N, H, W) uint8`` clean maps upsampled to the image size.
        noisy: noise level -> maps of the noisy images.
        transformed: transform name -> maps of the transformed images.
        degraded: mode -> maps of the degraded images.
        out_of_set: set name -> ``(M, g, g)`` raw maps of that set.
        second_seed: RISE maps of the clean images from another mask seed, or None.
    """

    clean: Perturbed
    q: np.ndarray
    flat: np.ndarray
    s_norm: np.ndarray
    q_up: np.ndarray
    noisy: dict[float, Perturbed] = dataclasses.field(default_factory=dict)
    transformed: dict[str, Perturbed] = dataclasses.field(default_factory=dict)
    degraded: dict[str, Perturbed] = dataclasses.field(default_factory=dict)
    out_of_set: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    second_seed: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class MeasureInputs:
    """What a measure sees for one model.

    Attributes:
        maps: this model's maps.
        family: the maps of every model of its family (this one included), or None when
            the model has no family.
        family_names: the names of those models, in the same order.
        labels: ``(N,) int64`` true class per in-set image in the model's class order,
            or None.
        masks: ``(N, H, W) bool`` human maps, or None; ``has_mask`` says which are real.
        has_mask: ``(N,) bool``.
        rng: seeded generator for this (model, measure), for bootstrap intervals.
    """

    maps: ModelMaps
    family: list[ModelMaps] | None = None
    family_names: list[str] | None = None
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    has_mask: np.ndarray | None = None
    rng: np.random.Generator | None = None


@dataclasses.dataclass(frozen=True)
class Stat:
    """One row of a measure's result: the headline or a detail."""

    statistic: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0


@dataclasses.dataclass(frozen=True)
class MeasureResult:
    """A measure's rows for one model; ``stats[0]`` is the headline."""

    measure: str
    higher_is_better: bool
    stats: tuple[Stat, ...]

    @property
    def headline(self) -> Stat:
        return self.stats[0]


@dataclasses.dataclass(frozen=True)
class Measure:
    """A measure's declaration.

    Attributes:
        name: the ``measure`` column value.
        higher_is_better: the headline's direction.
        needs: which salience the runner must compute: any of ``clean``, ``noise``,
            ``transforms``, ``degradation``, ``out_of_set``, ``family``, ``masks``.
        compute: ``MeasureInputs -> MeasureResult``.
        question: one line saying what the measure asks.
        min_map: the smallest map side it can score (SSIM of grid maps needs its window).
    """

    name: str
    higher_is_better: bool
    needs: frozenset[str]
    compute: Callable[[MeasureInputs], MeasureResult]
    question: str
    min_map: int = 1


def mean_stat(statistic: str, values, rng: np.random.Generator | None) -> Stat:
    """Mean of per-image values (NaN = excluded) with a percentile bootstrap 95% interval
    over images (1000 resamples)."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[~np.isnan(v)]
    if not len(v):
        return Stat(statistic, None, None, None, 0)
    mean = float(v.mean())
    if rng is None or len(v) == 1:
        return Stat(statistic, mean, mean, mean, len(v))
    means = v[rng.integers(0, len(v), (BOOTSTRAP_RESAMPLES, len(v)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Stat(statistic, mean, float(low), float(high), len(v))


def plain_stat(statistic: str, value, n: int) -> Stat:
    """A value that is not a mean over images (no interval)."""
    value = None if value is None or not np.isfinite(value) else float(value)
    return Stat(statistic, value, None, None, n)


def measure_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator for one (model, measure) that does not depend on the order in which
    models and measures run."""
    key = [zlib.crc32(name.encode()) for name in names]
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values`` as float64 with NaN where ``keep`` is False (excluded from means)."""
    return np.where(keep, np.asarray(values, np.float64), np.nan)
