import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness import (
    OnnxClassifier,
    normalize,
    normalize_upsampled,
    occlusion,
    rise,
    rise_masks,
    upsample,
)
from harness.errors import NonFiniteOutput
from harness.salience.batched import make_baseline
from harness.salience.occlusion import _fill_occluded, window_boxes
from tests import naive
from tests.onnx_models import linear_model
from tests.test_model import TWINS


def _hand_occlusion(weights, images, baselines, grid):
    """For a linear two-class model the log-odds drop of a cell is the weight difference
    of the explained class against the other, dotted with (image - baseline) over it."""
    z = np.einsum("khwc,nhwc->nk", weights, images)
    t = z.argmax(1)
    diff = weights[t] - weights[1 - t]
    contrib = (diff * (images - baselines)).sum(-1)
    n, h, w = contrib.shape
    return contrib.reshape(n, grid, h // grid, grid, w // grid).sum((2, 4))


@pytest.mark.parametrize("baseline", [0.5, "blur", "mean"])
def test_linear_model_map_by_hand(linear_path, linear_weights, images14, baseline):
    maps = occlusion(OnnxClassifier(linear_path), images14, grid=7, baseline=baseline)
    base = make_baseline(images14, baseline, 7)
    np.testing.assert_allclose(maps, _hand_occlusion(linear_weights, images14, base, 7),
                               rtol=1e-4, atol=1e-4)


def test_pass_count(linear_path, images14):
    clf = OnnxClassifier(linear_path)
    occlusion(clf, images14, grid=7)
    assert clf.forward_passes == 5 * (49 + 1)
    clf.forward_passes = 0
    occlusion(clf, images14, grid=7, window=2, clean=clf.forward(images14))
    assert clf.forward_passes == 5 + 5 * 36


@pytest.mark.parametrize("grid,window,baseline", [(5, 2, "mean"), (7, 3, 0.0), (4, 1, "blur")])
def test_occlusion_matches_naive(linear_path, rng, grid, window, baseline):
    # 20 px images for a 14 px model: the pixel-space path with resizing, and uneven cells.
    clf = OnnxClassifier(linear_path, batch_size=7)
    x = rng.random((3, 20, 20, 3)).astype(np.float32)
    ours = occlusion(clf, x, grid=grid, window=window, baseline=baseline)
    targets = clf.forward(x).argmax(1)
    ref = naive.occlusion(clf, x, grid, window, make_baseline(x, baseline, grid), targets)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_maps_do_not_depend_on_batch_size(linear_path, images14, method):
    clf = OnnxClassifier(linear_path)
    run = (lambda b: occlusion(clf, images14, window=2, batch_size=b)) if method == "occlusion" \
        else (lambda b: rise(clf, images14, n_masks=40, batch_size=b))
    ref = run(len(images14) * 49)
    for b in (1, 3, 64):
        np.testing.assert_allclose(run(b), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_twins_give_the_same_maps(tmp_path, linear_path, linear_weights, images14, twin):
    ref = occlusion(OnnxClassifier(linear_path), images14)
    clf = OnnxClassifier(linear_model(tmp_path / f"{twin}.onnx", linear_weights,
                                      bias=[0.1, -0.2], **TWINS[twin]), batch_size=16)
    tol = 0.1 if twin == "float16" else 1e-4
    np.testing.assert_allclose(occlusion(clf, images14), ref, atol=tol)


def test_probability_model_gives_same_log_odds(tmp_path, linear_weights, images14):
    # Small weights keep p away from the 1e-7 clip, where the two definitions agree.
    w = linear_weights * 0.05
    logits = OnnxClassifier(linear_model(tmp_path / "z.onnx", w))
    probs = OnnxClassifier(linear_model(tmp_path / "p.onnx", w, softmax=True))
    np.testing.assert_allclose(occlusion(probs, images14), occlusion(logits, images14),
                               atol=1e-4)


def test_target_class_is_explained(linear_path, linear_weights, images14):
    clf = OnnxClassifier(linear_path)
    chosen = occlusion(clf, images14, target=0, score="logit", baseline=0.0)
    contrib = (linear_weights[0] * images14).sum(-1).reshape(5, 7, 2, 7, 2).sum((2, 4))
    np.testing.assert_allclose(chosen, contrib, rtol=1e-4, atol=1e-4)


def test_nan_images_are_named(tmp_path, images14):
    w = np.full((2, 14, 14, 3), 1.0 / (14 * 14 * 3), np.float32)
    clf = OnnxClassifier(linear_model(tmp_path / "nan.onnx", w, bias=[-0.3, -0.3], post="Sqrt"))
    x = np.full_like(images14, 0.6)
    x[4] = 0.302  # clean is fine; occluding any cell with black pushes the mean below 0.3
    with pytest.raises(NonFiniteOutput) as err:
        occlusion(clf, x, baseline=0.0)
    assert err.value.rows.tolist() == [4]


def test_rise_matches_naive(linear_path, rng):
    clf = OnnxClassifier(linear_path, batch_size=5)
    x = rng.random((2, 14, 14, 3)).astype(np.float32)
    bank = rise_masks((14, 14), n_masks=12, cell=3, p_keep=0.5, seed=7)
    ours = rise(clf, x, grid=7, masks=bank, baseline=0.25)
    targets = clf.forward(x).argmax(1)
    ref = naive.rise(clf, x, bank, np.full_like(x, 0.25), targets, grid=7)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_rise_seeded(linear_path, images14):
    clf = OnnxClassifier(linear_path)
    a = rise(clf, images14, n_masks=30, seed=3)
    b = rise(clf, images14, n_masks=30, seed=3)
    c = rise(clf, images14, n_masks=30, seed=4)
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)
    assert rise_masks((14, 14), 30, seed=3).hash == rise_masks((14, 14), 30, seed=3).hash
    assert rise_masks((14, 14), 30, seed=3).hash != rise_masks((14, 14), 30, seed=4).hash


def test_rise_with_target_skips_the_clean_pass(linear_path, images14):
    clf = OnnxClassifier(linear_path)
    rise(clf, images14, n_masks=10, target=1)
    assert clf.forward_passes == 5 * 10


def test_normalize_matches_naive(rng):
    raw = rng.normal(size=(6, 7, 7))
    raw[2] = 0.3  # flat
    raw[3] = -1.0  # flat after ReLU
    raw[4, 0, 0] += 1e-9  # below the flat threshold
    q, flat = normalize(raw)
    ref_q, ref_flat = naive.normalize(raw)
    assert q.dtype == np.uint8 and np.array_equal(q, ref_q)
    assert flat.tolist() == ref_flat.tolist() == [False, False, True, True, False, False]


def test_upsample(rng):
    s = rng.random((2, 7, 7)).astype(np.float32)
    up = upsample(s, (28, 21))
    assert up.shape == (2, 28, 21)
    np.testing.assert_allclose(up[1], naive.bilinear_upsample(s[1].astype(float), 28, 21),
                               atol=1e-6)
    q, flat = normalize_upsampled(np.where(s > 0.5, s, 0), (28, 28))
    assert q.shape == (2, 28, 28) and q.dtype == np.uint8 and not flat.any()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 15)), min_size=1, max_size=12),
       st.booleans())
def test_incremental_fill_equals_direct(sequence, channels_first):
    """Patching a slot's previous copy gives the same buffer as building it afresh."""
    rng = np.random.default_rng(0)
    src = rng.random((3, 12, 12, 3)).astype(np.float32)
    base = rng.random((3, 12, 12, 3)).astype(np.float32)
    if channels_first:
        src, base = (np.ascontiguousarray(a.transpose(0, 3, 1, 2)) for a in (src, base))
    boxes = window_boxes(12, 12, 4, 1)
    out = np.zeros((1,) + src.shape[1:], np.float32)
    prev_img, prev_box = np.array([-1]), np.array([-1])
    for img, box in sequence:
        _fill_occluded(src, base, np.array([img]), np.array([box]), prev_img, prev_box, boxes,
                       out, channels_first)
        prev_img[0], prev_box[0] = img, box
        expected = src[img].copy()
        y0, y1, x0, x1 = boxes[box]
        if channels_first:
            expected[:, y0:y1, x0:x1] = base[img, :, y0:y1, x0:x1]
        else:
            expected[y0:y1, x0:x1] = base[img, y0:y1, x0:x1]
        assert np.array_equal(out[0], expected)


def test_baseline_subtracted_rise_converges_to_the_linear_ground_truth(tmp_path):
    """For a model whose log-odds are linear in the pixels, a cell's contribution is
    what occluding it costs (the occlusion map). RISE with scores centred on their mean
    converges to it as masks are added, and a constant shift of every score (here a
    bias that makes the target's log-odds negative for every mask, which left the old
    uncentred map negative everywhere, hence flat after the ReLU) changes nothing."""
    from harness.maps import normalize
    from tests.onnx_models import linear_model

    yy, xx = np.mgrid[0:28, 0:28]
    bump = np.exp(-((yy - 9) ** 2 + (xx - 18) ** 2) / (2 * 6.0 ** 2))
    w = np.zeros((2, 28, 28, 3), np.float32)
    w[0] = (0.3 * bump - 0.05)[..., None]  # contributions of both signs, smooth in space
    x = (0.8 + 0.1 * np.random.default_rng(0).random((2, 28, 28, 3))).astype(np.float32)
    clf = OnnxClassifier(linear_model(tmp_path / "lin.onnx", w, bias=[3.0, 0.0]))
    truth = occlusion(clf, x, grid=7, baseline=0.0, target=0)

    def agreement(n_masks, model=clf):
        maps = rise(model, x, n_masks=n_masks, grid=7, baseline=0.0, seed=1, target=0)
        return maps, min(np.corrcoef(t.ravel(), m.ravel())[0, 1]
                         for t, m in zip(truth, maps, strict=True))

    few, at_250 = agreement(250)
    maps, at_4000 = agreement(4000)
    assert at_250 < at_4000 and at_4000 > 0.95
    shifted = OnnxClassifier(linear_model(tmp_path / "neg.onnx", w, bias=[-500.0, 0.0]))
    negative, _ = agreement(4000, shifted)
    np.testing.assert_allclose(negative, maps, rtol=1e-3, atol=1e-3 * np.abs(maps).max())
    assert not normalize(negative)[1].any()  # no flat map
