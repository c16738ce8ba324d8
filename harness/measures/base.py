"""What every measure shares: its inputs, its result rows, and bootstrap intervals.

A measure is a pure function over arrays (in its own module) plus a :class:`Measure`
that declares its name, direction, the salience it needs, and turns the arrays of a
:class:`MeasureInputs` into a :class:`MeasureResult`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from harness.maps import ModelMaps
from harness.stats.bootstrap import Bootstrap


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
        images: ``(N, H, W, 3)`` the in-set images (for the transforms ceiling).
        boot: the run's bootstrap resamples of the in-set images (every interval); it
            also knows the image keys and the seed that chance maps are drawn from.
        set_boots: out-of-set set name -> the resamples of that set's images.
    """

    maps: ModelMaps
    family: list[ModelMaps] | None = None
    family_names: list[str] | None = None
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    has_mask: np.ndarray | None = None
    images: np.ndarray | None = None
    boot: Bootstrap | None = None
    set_boots: dict[str, Bootstrap] = dataclasses.field(default_factory=dict)


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
    """A measure's rows for one model; ``stats[0]`` is the headline, the mean of
    ``per_image`` (``(N,)`` in-set values, NaN where an image gives none; None when the
    measure has no value for this model)."""

    measure: str
    higher_is_better: bool
    stats: tuple[Stat, ...]
    per_image: np.ndarray | None = None

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
            ``transforms``, ``degradation``, ``out_of_set``, ``family``, ``masks``,
            ``twin`` (the randomised twins' clean maps).
        compute: ``MeasureInputs -> MeasureResult``.
        question: one line saying what the measure asks.
        min_map: the smallest map side it can score (SSIM of grid maps needs its window).
        min_image: the smallest image side it can score (SSIM of maps at image size).
    """

    name: str
    higher_is_better: bool
    needs: frozenset[str]
    compute: Callable[[MeasureInputs], MeasureResult]
    question: str
    min_map: int = 1
    min_image: int = 1


def stat_name(kind: str, qualifier) -> str:
    """A detail's statistic name, ``kind@qualifier`` (``score_drop@object``,
    ``ssim@0.05``, ``ssim_with@faces-xent-2``); numbers are written with ``:g``."""
    if isinstance(qualifier, float):
        qualifier = f"{qualifier:g}"
    return f"{kind}@{qualifier}"


def split_stat_name(name: str) -> tuple[str, str | None]:
    """``kind@qualifier`` -> ``(kind, qualifier)``; ``(name, None)`` for a plain name."""
    kind, at, qualifier = name.partition("@")
    return (kind, qualifier) if at else (name, None)


def mean_stat(statistic: str, values, boot: Bootstrap | None) -> Stat:
    """Mean of per-image values (NaN = excluded) with its percentile bootstrap 95%
    interval from the run's resamples of these images (``boot``; None: no interval).

    Comparisons are studentised (:mod:`harness.stats.studentized`); a single value is
    not: its per-image values are often bounded with a point mass (SSIM at 1, a share
    of 0/1), where resamples without the rare other values have almost no spread and
    the studentised interval explodes (an fp16 variant's map SSIM, exactly 1 on most
    images, got a lower end of -1048)."""
    v = np.asarray(values, np.float64).reshape(-1)
    kept = v[~np.isnan(v)]
    if not len(kept):
        return Stat(statistic, None, None, None, 0)
    mean = float(kept.mean())
    if boot is None or len(kept) == 1:
        return Stat(statistic, mean, mean, mean, len(kept))
    low, high = boot.interval(v)
    return Stat(statistic, mean, low, high, len(kept))


def headline_result(name: str, higher: bool, per_image, boot: Bootstrap | None,
                    details=()) -> MeasureResult:
    """A result whose headline is the mean of ``per_image`` (kept for paired tests)."""
    values = np.asarray(per_image, np.float64).reshape(-1)
    return MeasureResult(name, higher, (mean_stat("headline", values, boot), *details),
                         values)


def plain_stat(statistic: str, value, n: int) -> Stat:
    """A value that is not a mean over images (no interval)."""
    value = None if value is None or not np.isfinite(value) else float(value)
    return Stat(statistic, value, None, None, n)


def masked(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``values`` as float64 with NaN where ``keep`` is False (excluded from means)."""
    return np.where(keep, np.asarray(values, np.float64), np.nan)
