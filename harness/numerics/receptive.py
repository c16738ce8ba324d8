"""Receptive fields along one spatial axis, for incremental occlusion.

A local operator's output position ``o`` reads the input positions
``floor(o * num / den) - lo .. floor(o * num / den) + hi`` (an :class:`AxisMap`): a
convolution or pooling window, a padding shift, an integer upsampling with its halo,
or a pointwise operator. Two questions are asked of it, for many windows at once:
which outputs can change when a range of inputs changes (:func:`reaches`), and which
inputs a range of outputs reads (:func:`reads`). Ranges are half-open ``[a, b)``
``int64`` arrays, one entry per window; ``a >= b`` is empty.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import numpy as np


@dataclasses.dataclass(frozen=True)
class AxisMap:
    """Output ``o`` reads inputs ``floor(o * num / den) - lo .. floor(o * num / den) + hi``
    (both ends included)."""

    num: int = 1
    den: int = 1
    lo: int = 0
    hi: int = 0

    @classmethod
    def window(cls, kernel: int, stride: int, pad: int, dilation: int) -> AxisMap:
        """A convolution or pooling window: output ``o`` reads
        ``o * stride - pad .. o * stride - pad + dilation * (kernel - 1)``."""
        return cls(stride, 1, pad, dilation * (kernel - 1) - pad)

    @classmethod
    def shift(cls, pad: int) -> AxisMap:
        """A padding of ``pad`` positions at the start (negative: a crop)."""
        return cls(1, 1, pad, -pad)

    @classmethod
    def upsample(cls, factor: int, halo: int) -> AxisMap:
        """An integer upsampling by ``factor`` whose outputs read up to ``halo`` inputs
        either side of the one they fall in (interpolation)."""
        return cls(1, factor, halo, halo)

    @property
    def factor(self) -> Fraction:
        """Input positions per output position."""
        return Fraction(self.num, self.den)


def _first_output_at_least(m: AxisMap, t: np.ndarray) -> np.ndarray:
    """The smallest ``o`` with ``floor(o * num / den) >= t``."""
    return -((-t * m.den) // m.num)


def _last_output_at_most(m: AxisMap, t: np.ndarray) -> np.ndarray:
    """The largest ``o`` with ``floor(o * num / den) <= t``."""
    return -((-(t + 1) * m.den) // m.num) - 1


def reaches(m: AxisMap, a: np.ndarray, b: np.ndarray, size_out: int):
    """The outputs ``[a', b')`` that read any input in ``[a, b)``, within
    ``[0, size_out)``; empty in, empty out."""
    lo = np.maximum(_first_output_at_least(m, a - m.hi), 0)
    hi = np.minimum(_last_output_at_most(m, b - 1 + m.lo) + 1, size_out)
    empty = (a >= b) | (lo >= hi)
    return np.where(empty, 0, lo), np.where(empty, 0, hi)


def reads(m: AxisMap, u: np.ndarray, v: np.ndarray, size_in: int):
    """The inputs ``[a, b)`` that outputs ``[u, v)`` read, within ``[0, size_in)``;
    empty in, empty out."""
    lo = np.maximum((u * m.num) // m.den - m.lo, 0)
    hi = np.minimum(((v - 1) * m.num) // m.den + m.hi + 1, size_in)
    empty = (u >= v) | (lo >= hi)
    return np.where(empty, 0, lo), np.where(empty, 0, hi)


def union(a1: np.ndarray, b1: np.ndarray, a2: np.ndarray, b2: np.ndarray):
    """The smallest range holding both ranges (an empty one adds nothing)."""
    e1, e2 = a1 >= b1, a2 >= b2
    a = np.where(e1, a2, np.where(e2, a1, np.minimum(a1, a2)))
    b = np.where(e1, b2, np.where(e2, b1, np.maximum(b1, b2)))
    return a, b


def crops(a: np.ndarray, b: np.ndarray, align: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window's crop ``(start, length)`` holding ``[a, b)``: the start rounded down
    to a multiple of ``align`` (so a strided operator reads the positions it reads in
    the full tensor), the end where the range ends. An empty range gets the crop
    ``[0, align)``, which nothing is read from."""
    empty = a >= b
    start = np.where(empty, 0, (a // align) * align)
    return start, np.where(empty, align, b - start)
