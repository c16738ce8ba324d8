import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.ndimage import gaussian_filter

from harness.numerics.filters import gaussian_blur, resize, to_model_input


def _pil_resize(img, size):
    """Pillow's float resize, channel by channel: an independent implementation of the
    same triangle filter (antialiased when shrinking)."""
    chans = [np.asarray(Image.fromarray(img[..., c], mode="F").resize(
        (size[1], size[0]), Image.Resampling.BILINEAR)) for c in range(img.shape[-1])]
    return np.stack(chans, -1)


@pytest.mark.parametrize("src,dst", [((14, 14), (224, 224)), ((7, 7), (64, 48)),
                                     ((250, 180), (64, 64)), ((64, 64), (25, 31))])
def test_resize_matches_pillow(rng, src, dst):
    img = rng.random(src + (3,)).astype(np.float32)
    ours = resize(img[None], dst)[0]
    np.testing.assert_allclose(ours, _pil_resize(img, dst), atol=2e-5)


def test_resize_same_size_is_identity(rng):
    img = rng.random((2, 9, 11, 3)).astype(np.float32)
    assert np.array_equal(resize(img, (9, 11)), img)


@pytest.mark.parametrize("sigma", [0.7, 2.0, (4.5, 1.5), 10.0])
def test_gaussian_matches_scipy(rng, sigma):
    img = rng.random((2, 40, 33, 3)).astype(np.float32)
    sy, sx = (sigma, sigma) if np.isscalar(sigma) else sigma
    ref = np.stack([gaussian_filter(i, (sy, sx, 0), mode="reflect", truncate=4.0) for i in img])
    np.testing.assert_allclose(gaussian_blur(img, sigma), ref, atol=1e-5)


@pytest.mark.parametrize("color", ["RGB", "BGR", "L"])
@pytest.mark.parametrize("channels_first", [True, False])
def test_to_model_input_matches_numpy(rng, color, channels_first):
    x = rng.random((3, 5, 6, 3)).astype(np.float32)
    c = 1 if color == "L" else 3
    mean, std = rng.random(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    ref = {"RGB": x, "BGR": x[..., ::-1],
           "L": (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]}[color]
    ref = (ref - mean) / std
    if channels_first:
        ref = ref.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(to_model_input(x, color, mean, std, channels_first), ref,
                               rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.integers(1, 40), st.integers(1, 40))
def test_resize_preserves_constants(h, w, oh, ow):
    img = np.full((1, h, w, 3), 0.37, np.float32)
    np.testing.assert_allclose(resize(img, (oh, ow)), 0.37, atol=1e-6)
