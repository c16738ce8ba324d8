"""What salience hands to the measures: a model's maps of the in-set images and of
their perturbed copies (:class:`Perturbed`, :class:`ModelMaps`), and the normalisation
every measure shares (docs/measures.md): ReLU, min-max to [0, 1], 8-bit quantisation,
flat-map detection, and bilinear upsampling for pixel-level use."""

from __future__ import annotations

import dataclasses

import numpy as np

from harness.numerics.filters import resize

FLAT_RANGE = 1e-8
_CHUNK = 256


def scale(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ReLU then min-max per map.

    Args:
        maps: ``(N, h, w)`` raw maps.

    Returns:
        ``(S_norm, flat)``: ``(N, h, w) float32 in [0, 1]`` and ``(N,) bool``, True where
        the ReLU'd map's max - min is below 1e-8 (it carries no explanation; its S_norm
        is all zeros and measures exclude it).
    """
    s_norm, flat = _scale64(maps)
    return s_norm.astype(np.float32), flat


def _scale64(maps):
    s = np.maximum(np.asarray(maps, np.float64), 0.0)
    lo = s.min(axis=(1, 2), keepdims=True)
    span = s.max(axis=(1, 2), keepdims=True) - lo
    flat = span[:, 0, 0] < FLAT_RANGE
    return np.where(span >= FLAT_RANGE, (s - lo) / np.where(flat[:, None, None], 1.0, span),
                    0.0), flat


def quantize(s_norm: np.ndarray) -> np.ndarray:
    """``floor(255 * S_norm)`` as uint8, for maps already in [0, 1]."""
    return np.floor(255.0 * np.clip(np.asarray(s_norm, np.float64), 0.0, 1.0)).astype(np.uint8)


def normalize(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw maps -> ``(Q, flat)``: ``(N, h, w) uint8`` 8-bit maps and the ``(N,) bool``
    flat-map mask (flat maps quantise to all zeros). Computed in float64 so a value on
    a quantisation boundary lands as the definition says."""
    s_norm, flat = _scale64(maps)
    return quantize(s_norm), flat


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling (half-pixel centres, edges clamped) of ``(N, h, w)`` maps to
    ``size = (H, W)`` -> ``(N, H, W) float32``."""
    m = np.asarray(maps, np.float32)
    return resize(m[..., None], size)[..., 0]


def normalize_upsampled(maps: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Raw grid maps -> pixel-level 8-bit maps ``(N, H, W) uint8`` and the flat mask:
    ReLU and min-max on the grid, bilinear upsampling, then quantisation (no second
    min-max, so the pixel map keeps the grid map's scale)."""
    s_norm, flat = scale(maps)
    out = np.empty((len(s_norm), *size), np.uint8)
    # a few hundred maps at a time: the float temporaries of a whole large set at image
    # size would dwarf everything else a run holds
    for start in range(0, len(s_norm), _CHUNK):
        out[start:start + _CHUNK] = quantize(upsample(s_norm[start:start + _CHUNK], size))
    return out, flat


@dataclasses.dataclass(frozen=True)
class Perturbed:
    """Maps and outputs of one model on perturbed copies of the in-set images.

    Attributes:
        raw: ``(N, g, g) float32`` raw maps, explained for the clean target class (the
            clean image's prediction, or the class the settings name); for a
            faithfulness curve, the scores of its copies instead (its other fields are
            then NaN and -1: a curve has no map, class or score of its own).
        target_score: ``(N,) float64`` score of that class.
        target_prob: ``(N,) float64`` probability of that class.
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
        degraded: mode -> maps of the degraded images (``control``: outputs only, its
            ``raw`` is ``(N, 0, 0)``).
        out_of_set: set name -> ``(M, g, g)`` raw maps of that set.
        second_seed: RISE maps of the clean images from another mask seed, or None.
        twins: each randomised twin's maps of the clean images (a twin's ``raw`` is
            ``(N, 0, 0)`` when the model has no weights to randomise); empty when the
            sanity measure is not run.
        cascade: step ``(j, J)`` -> the maps of the twin whose top j/J weight tensors
            are redrawn (steps 1 to J - 1; step J is the first twin); empty unless asked.
        curves: a faithfulness curve's name -> its copies' scores as ``raw``
            (``(N, rows, P)``, see :func:`harness.salience.curves.curve`); empty unless a
            faithfulness measure is run.
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
    twins: tuple[Perturbed, ...] = ()
    cascade: dict[tuple[int, int], Perturbed] = dataclasses.field(default_factory=dict)
    curves: dict[str, Perturbed] = dataclasses.field(default_factory=dict)
