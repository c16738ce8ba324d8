import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import wasserstein_distance
from skimage.measure import shannon_entropy
from skimage.metrics import structural_similarity

from harness.numerics.similarity import entropy, spatial_entropy, ssim, wasserstein_1d


@pytest.mark.parametrize("size", [7, 8, 14, 224])
def test_ssim_matches_skimage(rng, size):
    a = rng.integers(0, 256, (4, size, size), np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-60, 60, a.shape), 0, 255).astype(np.uint8)
    b[0] = rng.integers(0, 256, (size, size))  # unrelated pair too
    ref = [structural_similarity(x, y, data_range=255) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ssim(a, b), ref, atol=1e-6)


def test_ssim_single_pair_and_shape_errors(rng):
    a = rng.integers(0, 256, (7, 9), np.uint8)
    assert isinstance(ssim(a, a), float)
    with pytest.raises(ValueError):
        ssim(a, a[:, :8])
    with pytest.raises(ValueError):
        ssim(a[:6], a[:6])


def test_entropy_matches_skimage(rng):
    q = rng.integers(0, 256, (5, 7, 7), np.uint8)
    q[1] = rng.integers(0, 4, (7, 7))
    ref = [shannon_entropy(m) / math.log2(49) for m in q]
    np.testing.assert_allclose(entropy(q), ref, atol=1e-9)
    big = rng.integers(0, 256, (2, 30, 30), np.uint8)  # 900 cells: normalised by log2(256)
    np.testing.assert_allclose(entropy(big), [shannon_entropy(m) / 8 for m in big], atol=1e-9)


def test_entropy_reference_values():
    distinct = np.arange(49, dtype=np.uint8).reshape(1, 7, 7) * 5
    assert entropy(distinct)[0] == pytest.approx(1.0, abs=1e-12)
    two = np.zeros((1, 8, 8), np.uint8)
    two[0, :4] = 255  # half 0s, half 255s: exactly one bit
    assert entropy(two)[0] == pytest.approx(math.log2(2) / math.log2(64), abs=1e-12)
    seven = np.zeros((1, 7, 7), np.uint8)
    seven[0].flat[:24] = 255  # 24 / 25 split on 49 cells: just under one bit
    p = 24 / 49
    bits = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert entropy(seven)[0] == pytest.approx(bits / math.log2(49), abs=1e-12)
    assert entropy(seven)[0] == pytest.approx(math.log2(2) / math.log2(49), abs=1e-3)
    assert entropy(np.full((1, 7, 7), 9, np.uint8))[0] == 0.0


def test_spatial_entropy():
    uniform = np.ones((1, 7, 7))
    spike = np.zeros((1, 7, 7))
    spike[0, 3, 3] = 1
    np.testing.assert_allclose(spatial_entropy(np.concatenate([uniform, spike])), [1.0, 0.0])
    assert np.isnan(spatial_entropy(np.zeros((1, 7, 7))))[0]


def test_wasserstein_matches_scipy(rng):
    u, v = rng.random(31), rng.normal(size=17)
    assert wasserstein_1d(u, v) == pytest.approx(wasserstein_distance(u, v), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 3), st.integers(7, 16), st.integers(7, 16))))
def test_identical_maps_have_ssim_one(q):
    np.testing.assert_allclose(ssim(q, q), 1.0, atol=1e-12)
