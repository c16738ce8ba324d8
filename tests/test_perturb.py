import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from harness.numerics.perturb import (
    NOISE_LEVELS,
    TRANSFORMS,
    degrade,
    inverse,
    salt_and_pepper,
    shift_pixels,
    transform,
)


def test_twelve_transforms_and_step():
    assert len(TRANSFORMS) == 12 and len(set(TRANSFORMS)) == 12
    assert shift_pixels(224) == 16 and shift_pixels(64) == 5
    assert NOISE_LEVELS == (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 1.00)


def test_shift_moves_content_and_replicates_edges():
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5)
    right = transform("shift_right", x, 2)
    assert np.array_equal(right[0, :, 2:], x[0, :, :3])
    assert np.array_equal(right[0, :, 0], x[0, :, 0]) and np.array_equal(right[0, :, 1], x[0, :, 0])
    up = transform("shift_up", x, 1)
    assert np.array_equal(up[0, :4], x[0, 1:]) and np.array_equal(up[0, 4], x[0, 4])


def test_rotations_follow_numpy():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    assert np.array_equal(transform("rot90_cw", x)[0], np.rot90(x[0], -1))
    assert np.array_equal(transform("rot90_ccw", x)[0], np.rot90(x[0], 1))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 2), st.integers(9, 20), st.integers(9, 20))),
       st.sampled_from(TRANSFORMS), st.integers(1, 4))
def test_transform_then_inverse_returns_the_map(maps, name, t):
    back, sign = inverse(name)
    restored = transform(back, transform(name, maps, t), sign * t)
    if name.startswith("shift"):
        # away from the replicated border the content comes back exactly
        assert np.array_equal(restored[:, t:-t, t:-t], maps[:, t:-t, t:-t])
    else:
        assert np.array_equal(restored, maps)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(TRANSFORMS))
def test_images_and_maps_move_alike(name):
    rng = np.random.default_rng(0)
    img = rng.random((2, 12, 12, 3)).astype(np.float32)
    assert np.array_equal(transform(name, img)[..., 1], transform(name, img[..., 1]))


def test_noise_levels(rng):
    x = rng.uniform(0.1, 0.9, (3, 16, 16, 3)).astype(np.float32)
    assert np.array_equal(salt_and_pepper(x, 0.0, np.random.default_rng(1)), x)
    full = salt_and_pepper(x, 1.0, np.random.default_rng(1))
    assert np.isin(full, [0.0, 1.0]).all()
    assert 0.45 < full.mean() < 0.55  # half salt, half pepper
    a = salt_and_pepper(x, 0.25, np.random.default_rng(7))
    b = salt_and_pepper(x, 0.25, np.random.default_rng(7))
    assert np.array_equal(a, b) and 0.2 < (a != x).mean() < 0.3
    with pytest.raises(ValueError):
        salt_and_pepper(x, 1.5, np.random.default_rng(0))


def test_background_blur_of_full_salience_changes_nothing(rng):
    x = rng.random((2, 32, 32, 3)).astype(np.float32)
    assert np.array_equal(degrade(x, np.full((2, 32, 32), 255, np.uint8), "background"), x)
    # object mode of the same map blurs everything as much as it can
    blurred = degrade(x, np.full((2, 32, 32), 255, np.uint8), "object")
    assert blurred.std() < x.std() / 2


def test_degradation_blurs_where_it_should(rng):
    x = rng.random((1, 64, 64, 3)).astype(np.float32)
    q = np.zeros((1, 64, 64), np.uint8)
    q[0, 20:44, 20:44] = 255  # the model looked at the centre
    background = degrade(x, q, "background")
    obj = degrade(x, q, "object")
    centre, corner = (slice(28, 36), slice(28, 36)), (slice(0, 8), slice(0, 8))
    assert np.array_equal(background[0][centre], x[0][centre])  # kept sharp
    assert not np.allclose(background[0][corner], x[0][corner])  # blurred
    assert np.array_equal(obj[0][corner], x[0][corner])
    assert not np.allclose(obj[0][centre], x[0][centre])


@pytest.mark.parametrize("size,mode", [(28, "object"), (64, "background"), (64, "object"),
                                       (96, "background")])
def test_degrade_matches_naive(rng, size, mode):
    from tests import naive

    x = rng.random((2, size, size, 3)).astype(np.float32)
    small = rng.random((2, 7, 7))
    from harness import normalize_upsampled

    q_up = normalize_upsampled(small, (size, size))[0]
    np.testing.assert_allclose(degrade(x, q_up, mode), naive.degrade(x, q_up, mode), atol=2e-5)


def test_degraded_images_stay_in_pixel_range():
    x = np.ones((1, 64, 64, 3), np.float32)
    x[:, ::2] = 0.999999
    q = np.zeros((1, 64, 64), np.uint8)
    q[0, 20:40, 20:40] = 255
    for mode in ("object", "background"):
        out = degrade(x, q, mode)
        assert out.min() >= 0.0 and out.max() <= 1.0
