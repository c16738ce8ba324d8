"""Repeated confidence intervals that stay valid when they are looked at after every
shard of images (docs/measures.md, "Sequential evaluation").

A group-sequential design: the looks are planned (every ``look`` images up to the
budget), the two-sided error ``alpha`` is spent over them by the Lan-DeMets spending
function of O'Brien-Fleming type, alpha(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)) at
information fraction t = images / budget, and the critical value of each look is the
one that spends exactly alpha(t_k) - alpha(t_{k-1}) given that no earlier look crossed
(the recursion of Armitage, McPherson and Rowe, computed on a grid). O'Brien-Fleming
spending asks for overwhelming evidence early and gives almost the fixed-n critical
value at the budget.

The statistic is the mean of the per-image values, studentised, and corrected for
skewness by Hall's (1992) monotone cubic transformation, which the interval inverts in
closed form: on strongly skewed differences the plain t statistic's tails are lopsided
and a sequential test on it rejects a true null far more often on one side. No bound on
the values is needed, so it serves log-odds drops as well as SSIMs.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

_STEP = 0.005  # grid step of the Brownian motion B(t), t in [0, 1]
_REACH = 9.0  # the grid spans +-_REACH; B(1) has SD 1


def spent(t, alpha: float) -> np.ndarray:
    """The two-sided error spent by information fraction ``t`` (O'Brien-Fleming type)."""
    t = np.asarray(t, np.float64)
    normal = NormalDist()
    z = normal.inv_cdf(1.0 - alpha / 2.0)
    return np.array([2.0 - 2.0 * normal.cdf(z / math.sqrt(x)) if x > 0 else 0.0
                     for x in t.reshape(-1)]).reshape(t.shape)


def boundaries(times, alpha: float) -> np.ndarray:
    """Critical values of the standardised statistic at looks at information fractions
    ``times`` (increasing, in (0, 1]): look k rejects when |Z_k| >= b_k, and the chance
    that any look rejects under the null is ``alpha`` when the last time is 1. A look
    that may spend nothing gets ``inf``."""
    times = np.asarray(times, np.float64)
    if len(times) == 0 or np.any(np.diff(times) <= 0) or times[0] <= 0 or times[-1] > 1:
        raise ValueError("look times must increase within (0, 1]")
    budget = np.diff(np.r_[0.0, spent(times, alpha)])
    x = np.arange(-_REACH, _REACH + _STEP / 2, _STEP)
    mass = None  # the sub-density of B(t) on the paths no look has stopped, times _STEP
    out = np.empty(len(times))
    previous, crossed = 0.0, 0.0
    for k, t in enumerate(times):
        dt = t - previous
        if mass is None:
            mass = np.exp(-x * x / (2 * t)) / math.sqrt(2 * math.pi * t) * _STEP
        else:
            half = int(math.ceil(8 * math.sqrt(dt) / _STEP))
            offsets = np.arange(-half, half + 1) * _STEP
            kernel = np.exp(-offsets ** 2 / (2 * dt)) / math.sqrt(2 * math.pi * dt) * _STEP
            mass = np.convolve(mass, kernel, mode="same")
        edge = _crossing(x, mass, budget[k])
        out[k] = edge / math.sqrt(t)
        # the paths inside the boundary go on; a cell the boundary cuts keeps the share
        # of its mass inside (the interpolation _crossing assumed)
        kept = mass * np.clip((edge - (np.abs(x) - _STEP / 2)) / _STEP, 0.0, 1.0)
        crossed += float(mass.sum() - kept.sum())
        mass, previous = kept, t
    # the grid's own check: the paths its boundaries stop must carry the error spent
    # (a boundary that spent the wrong amount would give verdicts at another level)
    if abs(crossed - budget.sum()) > 0.02 * budget.sum() + 1e-12:
        raise ValueError(f"the boundaries spend {crossed:.3g} where {budget.sum():.3g} was "
                         "planned: the grid is too coarse for these looks")
    return out


def _crossing(x, mass, target: float) -> float:
    """The c with mass(|x| >= c) = target, interpolated between grid cells."""
    if target <= 1e-15:
        return math.inf
    half = len(x) // 2  # x[half] == 0
    folded = mass[half:].copy()
    folded[1:] += mass[:half][::-1]
    tail = np.cumsum(folded[::-1])[::-1]  # tail[i]: mass at |x| >= x[half + i]
    if tail[0] <= target:  # more to spend than the paths left carry: the grid failed
        raise ValueError("the boundaries cannot spend the planned error on the paths left")
    i = int(np.flatnonzero(tail > target)[-1])  # tail[i] > target >= tail[i + 1]
    if i + 1 >= len(tail):
        return math.inf
    # grid point x_i carries the mass of the cell [x_i - step/2, x_i + step/2)
    fraction = (tail[i] - target) / (tail[i] - tail[i + 1])
    return float(x[half + i] - _STEP / 2 + fraction * _STEP)


def moments(values: np.ndarray) -> tuple[int, float, float, float]:
    """``(n, mean, sd, skewness)`` of the values that are not NaN (sd with n - 1)."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    n = len(v)
    if n < 2:
        return n, float(v.mean()) if n else math.nan, math.nan, math.nan
    mean = float(v.mean())
    centred = v - mean
    m2 = float((centred ** 2).mean())
    sd = math.sqrt(m2 * n / (n - 1))
    skew = float((centred ** 3).mean()) / sd ** 3 if sd > 0 else 0.0
    return n, mean, sd, skew


def interval(n, mean, sd, skew, critical):
    """Hall's skewness-corrected interval for the mean at ``critical`` (vectorised over
    its arguments): the means m for which |sqrt(n) g((mean - m) / sd)| < critical, with
    g(u) = u + skew u^2 / 3 + skew^2 u^3 / 27 + skew / (6 n). A sample without spread
    gives the point; an infinite critical value, the whole line."""
    n, mean, sd, skew, critical = np.broadcast_arrays(
        *(np.asarray(a, np.float64) for a in (n, mean, sd, skew, critical)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        bias = skew / (6 * n)
        edge = critical / np.sqrt(n)
        u = np.stack([_g_inverse(-edge - bias, skew), _g_inverse(edge - bias, skew)])
        low, high = mean - sd * u[1], mean - sd * u[0]
    spread = sd > 0
    low = np.where(spread, low, mean)
    high = np.where(spread, high, mean)
    low = np.where(np.isinf(critical), -np.inf, low)
    high = np.where(np.isinf(critical), np.inf, high)
    return low, high


def _g_inverse(y, skew):
    """u with u + skew u^2 / 3 + skew^2 u^3 / 27 = y: (1 + skew u / 3)^3 = 1 + skew y."""
    small = np.abs(skew) < 1e-8
    safe = np.where(small, 1.0, skew)
    return np.where(small, y, 3.0 / safe * (np.cbrt(1.0 + safe * y) - 1.0))
