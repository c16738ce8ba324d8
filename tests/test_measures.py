import json
import shutil

import numpy as np
import polars as pl
import pytest

from harness import ModelSpec, OnnxClassifier
from harness.errors import HarnessError
from harness.measures import DEFAULT, MEASURES, get_measures
from harness.runner import evaluate, required_passes
from tests.onnx_models import linear_model

SIZE = 28  # 7 x 7 grid of 4 px cells
CENTRE = (slice(8, 20), slice(8, 20))  # the central 3 x 3 cells


def checkerboard():
    y, x = np.mgrid[:SIZE, :SIZE]
    return np.where((y + x) % 2 == 0, 1.0, -1.0).astype(np.float32)


def pattern_images(n=6, seed=0):
    """Grey images with noise and a pixel checkerboard everywhere: blurring a region
    removes the checkerboard there (and nothing else of note)."""
    rng = np.random.default_rng(seed)
    x = 0.5 + 0.05 * rng.standard_normal((n, SIZE, SIZE, 3)) + 0.3 * checkerboard()[..., None]
    return np.clip(x, 0, 1).astype(np.float32)


def model_from_weights(path, w0, **kwargs):
    """Two classes: z0 = sum w0 * x (per pixel, all channels), z1 = 0."""
    w = np.zeros((2, SIZE, SIZE, 3), np.float32)
    w[0] = np.asarray(w0, np.float32)[..., None] / 10
    return linear_model(path, w, **kwargs)


def centre_only():
    w = np.zeros((SIZE, SIZE), np.float32)
    w[CENTRE] = checkerboard()[CENTRE]
    return w


def outside_only():
    w = checkerboard().copy()
    w[CENTRE] = 0
    return w


def headline(frame, model, measure):
    row = frame.filter((pl.col("model") == model) & (pl.col("measure") == measure)
                       & (pl.col("statistic") == "headline"))
    assert len(row) == 1
    return row["value"][0]


def stat(frame, model, measure, statistic):
    return frame.filter((pl.col("model") == model) & (pl.col("measure") == measure)
                        & (pl.col("statistic") == statistic))["value"][0]


@pytest.fixture
def zoo(tmp_path):
    """Models whose salience is known by construction."""
    rng = np.random.default_rng(5)
    sym = rng.standard_normal((SIZE, SIZE))
    paths = {
        "centre": model_from_weights(tmp_path / "centre.onnx", centre_only()),
        "everywhere": model_from_weights(tmp_path / "everywhere.onnx", checkerboard()),
        "outside": model_from_weights(tmp_path / "outside.onnx", outside_only()),
        "symmetric": model_from_weights(tmp_path / "symmetric.onnx", sym + sym[:, ::-1]),
        "constant": model_from_weights(tmp_path / "constant.onnx", np.zeros((SIZE, SIZE))),
    }
    shutil.copy(paths["centre"], tmp_path / "centre_copy.onnx")
    paths["centre_copy"] = tmp_path / "centre_copy.onnx"
    return paths


def test_focused_model_has_positive_gap_and_lower_entropy(zoo):
    models = [OnnxClassifier(zoo["centre"]), OnnxClassifier(zoo["everywhere"])]
    frame = evaluate(models, pattern_images(), measures="entropy,degradation")
    assert headline(frame, "centre", "degradation") > 0.5
    assert stat(frame, "centre", "degradation", "score_drop@object") > \
        stat(frame, "centre", "degradation", "score_drop@background")
    assert headline(frame, "centre", "entropy") < headline(frame, "everywhere", "entropy")


def test_flip_symmetric_model_follows_the_flip(zoo):
    frame = evaluate([OnnxClassifier(zoo["symmetric"])],
                     np.random.default_rng(2).random((5, SIZE, SIZE, 3)), measures="transforms")
    assert stat(frame, "symmetric", "transforms", "ssim@hflip") == pytest.approx(1.0, abs=2e-3)
    assert stat(frame, "symmetric", "transforms", "unchanged@hflip") == 1.0


def test_two_copies_are_perfectly_stable_and_no_family_is_null(zoo):
    models = [OnnxClassifier(zoo["centre"], ModelSpec(family="twins")),
              OnnxClassifier(zoo["centre_copy"], ModelSpec(family="twins")),
              OnnxClassifier(zoo["everywhere"])]
    frame = evaluate(models, pattern_images(), measures=["stability"])
    assert headline(frame, "centre", "stability") == pytest.approx(1.0, abs=1e-12)
    assert stat(frame, "centre_copy", "stability", "vs_rest") == pytest.approx(1.0, abs=1e-12)
    assert headline(frame, "everywhere", "stability") is None


def test_agreement_with_human_maps(zoo):
    masks = np.zeros((6, SIZE, SIZE), bool)
    masks[:4][(slice(None),) + CENTRE] = True  # the last two images carry no mask
    models = [OnnxClassifier(zoo["centre"]), OnnxClassifier(zoo["outside"])]
    frame = evaluate(models, pattern_images(), masks=masks, measures="agreement")
    assert headline(frame, "centre", "agreement") > 3
    assert headline(frame, "outside", "agreement") < 1
    assert frame.filter((pl.col("measure") == "agreement") & (pl.col("statistic") == "headline")
                        )["n"].to_list() == [4, 4]


def test_flat_maps_are_counted_not_scored(zoo):
    frame = evaluate([OnnxClassifier(zoo["constant"])], pattern_images(),
                     measures="entropy,transforms")
    assert stat(frame, "constant", "entropy", "flat_fraction") == 1.0
    assert headline(frame, "constant", "entropy") is None
    assert headline(frame, "constant", "transforms") is None


def test_all_measures_pass_count_and_determinism(zoo):
    models = [OnnxClassifier(zoo[n], ModelSpec(family="f" if n.startswith("centre") else None))
              for n in ("centre", "centre_copy", "everywhere")]
    images = pattern_images(4)
    oos = {"noise": np.random.default_rng(9).random((3, SIZE, SIZE, 3))}
    masks = np.zeros((4, SIZE, SIZE), bool)
    masks[:, 8:20, 8:20] = True
    labels = np.array([0, 0, 1, 1])
    a = evaluate(models, images, labels=labels, out_of_set=oos, masks=masks, seed=3)
    b = evaluate([OnnxClassifier(m.path, m.spec) for m in models], images, labels=labels,
                 out_of_set=oos, masks=masks, seed=3)
    assert a.equals(b)
    assert set(a["measure"]) == set(DEFAULT) | {"accuracy"}  # the labels give accuracy
    assert a["forward_passes"].unique().to_list() == [required_passes(4, out_of_set_sizes=[3])]
    assert a.schema["value"] == pl.Float64 and a.schema["n"] == pl.Int64
    c = evaluate(models, images, labels=labels, out_of_set=oos, masks=masks, seed=4)
    assert not a["ci_low"].equals(c["ci_low"])  # the seed drives the bootstrap


def test_rise_reports_its_floor(zoo):
    from harness.salience.settings import SalienceConfig

    config = SalienceConfig(method="rise", n_masks=30)
    models = [OnnxClassifier(zoo[n], ModelSpec(family="f")) for n in ("centre", "centre_copy")]
    frame = evaluate(models, pattern_images(3), measures="stability", salience=config)
    floor = stat(frame, "centre", "stability", "explainer_floor")
    assert 0 < floor < 1
    assert frame["forward_passes"][0] == required_passes(3, "stability", config)


@pytest.mark.parametrize("case,message", [
    ("family_of_one", "family 'lonely' has one model"),
    ("oos_size", "out-of-set set 'big' has 32x32 images"),
    ("labels", "3 labels for 6 images"),
    ("measure", "unknown measure 'entropie'; did you mean entropy"),
])
def test_bad_input(zoo, case, message):
    models = [OnnxClassifier(zoo["centre"], ModelSpec(family="lonely" if case ==
                                                      "family_of_one" else None))]
    kwargs = {}
    if case == "oos_size":
        kwargs["out_of_set"] = {"big": np.zeros((2, 32, 32, 3), np.uint8)}
    if case == "labels":
        kwargs["labels"] = np.array([0, 1, 0])
    if case == "measure":
        kwargs["measures"] = "entropie"
    with pytest.raises(HarnessError, match=message):
        evaluate(models, pattern_images(), **kwargs)


def test_get_measures_order_and_directions():
    chosen = get_measures("degradation, entropy")
    assert [m.name for m in chosen] == ["degradation", "entropy"]
    assert not MEASURES["entropy"].higher_is_better
    assert all(MEASURES[m].higher_is_better for m in MEASURES if m not in ("entropy", "deletion"))
    assert not MEASURES["deletion"].higher_is_better


def test_zero_fraction_counts_zero_cells_of_non_flat_maps():
    from harness.measures.entropy import zero_fraction

    q = np.zeros((3, 7, 7), np.uint8)
    q[0, :2] = 255  # 14 of 49 cells lit
    q[1] = 200
    q[1, 0, 0] = 0
    flat = np.array([False, False, True])
    out = zero_fraction(q, flat)
    assert out[:2] == pytest.approx([35 / 49, 1 / 49]) and np.isnan(out[2])


def _binomial_pmf(n, p):
    from math import comb

    return np.array([comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)])


def test_entropy_chance_matches_its_analytic_expectation():
    """Uniform cells, min-max normalised and quantised: the minimum lands on 0, the
    maximum alone on 255, and the other 47 cells of a 7 x 7 map fall i.i.d. uniformly
    into the 255 values 0..254. So with f(c) = (c / 49) log2(c / 49) and B ~ Bin(47,
    1/255), E[H] = -(E f(1 + B) + f(1) + 254 E f(B)), normalised by log2 49."""
    from harness.measures import entropy
    from harness.stats.bootstrap import Bootstrap

    def f(c):
        c = np.asarray(c, float)
        return np.where(c > 0, c / 49 * np.log2(np.maximum(c, 1) / 49), 0.0)

    pmf = _binomial_pmf(47, 1 / 255)
    k = np.arange(48)
    expected = -((pmf * f(1 + k)).sum() + f(1) + 254 * (pmf * f(k)).sum()) / np.log2(49)
    values = entropy.chance(Bootstrap(0, [f"img{i}" for i in range(3000)]), (7, 7))
    se = values.std() / np.sqrt(len(values))
    assert abs(values.mean() - expected) < 4 * se + 1e-9, (values.mean(), expected)
    assert 0.95 < expected < 1


def test_chance_levels_of_the_other_measures(zoo):
    models = [OnnxClassifier(zoo[n], ModelSpec(family="f")) for n in ("centre", "centre_copy")]
    images = pattern_images(6)
    masks = np.zeros((6, SIZE, SIZE), bool)
    masks[:, 8:20, 8:20] = True
    frame = evaluate(models, images, masks=masks, measures="out_of_set,transforms,stability,"
                     "agreement", seed=2)
    chance = {m: stat(frame, "centre", m, "chance") for m in
              ("out_of_set", "transforms", "stability", "agreement")}
    assert abs(chance["transforms"]) < 0.1 and abs(chance["stability"]) < 0.1
    assert abs(chance["agreement"] - 1) < 0.15
    assert abs(chance["out_of_set"]) < 0.1  # SSIM 1 at level 0, about 0 beyond
    again = evaluate(models, images, masks=masks, measures="transforms", seed=2)
    assert stat(again, "centre", "transforms", "chance") == chance["transforms"]


def test_transforms_ceiling_is_one_at_pixel_grid_and_falls_with_coarser_grids():
    from harness.maps import normalize_upsampled
    from harness.measures.chance import equivariant_maps
    from harness.measures.transforms import ceiling, follow_all
    from harness.numerics.perturb import TRANSFORMS, transform

    images = (np.random.default_rng(0).random((4, 28, 28, 3)) * 255).astype(np.uint8)
    exact = [t for t in TRANSFORMS if "shift" not in t]
    q_up, flat = normalize_upsampled(equivariant_maps(images, (28, 28)), (28, 28))
    moved = {t: equivariant_maps(transform(t, images), (28, 28)) for t in exact}
    for name, values in follow_all(q_up, flat, moved).items():
        assert (values == 1.0).all(), name  # flips and quarter turns: exactly equivariant
    means = [ceiling(images, (g, g), {t: (g, g) for t in TRANSFORMS}).mean()
             for g in (28, 14, 7)]
    assert means[0] > means[1] > means[2] and means[0] > 0.9


def _degradation_of(clf, x, raw, seed=0):
    """The degradation measure of ``clf`` guided by the given maps ``raw`` instead of its
    own, each mode's images made as a run makes them."""
    from harness.execution.plan import image_keys
    from harness.execution.worker import shuffled_maps
    from harness.maps import ModelMaps, Perturbed, normalize, normalize_upsampled, scale
    from harness.measures import degradation
    from harness.measures.base import MeasureInputs
    from harness.numerics.perturb import degrade
    from harness.numerics.pixels import to_uint8
    from harness.salience.scoring import class_scores
    from harness.stats.bootstrap import Bootstrap

    targets = clf.forward(x).argmax(axis=1)

    def outputs(images, maps):
        out = clf.forward(images)
        return Perturbed(maps, class_scores(out, clf.output_kind, targets, "log_odds"),
                         class_scores(out, clf.output_kind, targets, "probability"),
                         out.argmax(axis=1))

    keys = image_keys(to_uint8(x))
    q, flat = normalize(raw)
    q_up = normalize_upsampled(raw, x.shape[1:3])[0]
    degraded = {mode: outputs(degrade(x, q_up, mode), raw) for mode in ("object", "background")}
    degraded["control"] = outputs(degrade(x, shuffled_maps(raw, keys, seed, x.shape[1:3]),
                                          "object"), np.zeros((len(x), 0, 0), np.float32))
    maps = ModelMaps(outputs(x, raw), q, flat, scale(raw)[0], q_up, degraded=degraded)
    result = degradation.compute(MeasureInputs(maps, boot=Bootstrap(seed, keys)))
    return {s.statistic: s for s in result.stats}


def test_degradation_gap_is_against_a_random_blur_of_the_same_area(zoo):
    """A model that reads only the centre gets a clearly positive gap. For a model whose
    evidence is spread evenly over the image (the checkerboard everywhere), where the
    blur goes does not matter: guided by a focused map (one bright cell) or a broad one
    (all cells bright but one), its gap is within noise of 0, while the paper's object -
    background gap calls it unfaithful or faithful by the map's area alone."""
    frame = evaluate([OnnxClassifier(zoo["centre"])], pattern_images(12, seed=3),
                     measures="degradation", seed=1)
    assert frame.filter(pl.col("statistic") == "headline")["ci_low"][0] > 0.5
    even = OnnxClassifier(zoo["everywhere"])
    x = pattern_images(12, seed=4)
    rng = np.random.default_rng(0)
    focused = np.zeros((12, 7, 7), np.float32)
    focused[np.arange(12), rng.integers(0, 7, 12), rng.integers(0, 7, 12)] = 1.0
    for raw, paper_sign in ((focused, -1), (1.0 - focused, 1)):
        stats = _degradation_of(even, x, raw)
        gap, paper = stats["headline"], stats["paper_gap"]
        assert gap.ci_low < 0 < gap.ci_high, (paper_sign, gap)
        assert min(paper_sign * paper.ci_low, paper_sign * paper.ci_high) > 0, paper


def test_target_own_explains_the_perturbed_images_own_class(zoo):
    """With target = "own", a perturbed image whose prediction flips is explained for
    its new class; scores stay those of the clean class, and the setting is recorded."""
    from harness.salience.settings import SalienceConfig

    model = OnnxClassifier(zoo["centre"])
    images = pattern_images(6)
    clean = evaluate([model], images, measures="transforms", seed=0)
    own = evaluate([model], images, measures="transforms", seed=0,
                   salience=SalienceConfig(target="own"))
    assert json.loads(own["salience_config"][0])["target"] == "own"
    assert "target" not in json.loads(clean["salience_config"][0])  # the default: as before
    # a flip inverts the centre's checkerboard, so every prediction changes; a shift none
    for name, unchanged in (("hflip", 0.0), ("shift_right", 1.0)):
        assert stat(own, "centre", "transforms", f"unchanged@{name}") == unchanged
        ours, before = (stat(f, "centre", "transforms", f"ssim@{name}") for f in (own, clean))
        assert (ours == before) == (unchanged == 1.0), name
    with pytest.raises(ValueError, match="target must be one of clean, own, or a class"):
        SalienceConfig(target=" ")


def test_a_class_target_explains_and_scores_that_class_on_every_image(zoo):
    """``target = "0"`` and ``"1"`` on a two-class model: every map and every score is
    that class's, so the two runs' log-odds and raw occlusion maps are each other's
    negatives; predictions stay the model's; a class the model lacks is refused."""
    from harness.runner import Evaluation, score
    from harness.salience.settings import SalienceConfig

    model = OnnxClassifier(zoo["centre"])
    images = pattern_images(6)
    seen = {}
    for target in ("0", "1"):
        how = Evaluation(measures="entropy", salience=SalienceConfig(target=target),
                         on_model=lambda clf, maps, t=target: seen.__setitem__(t, maps))
        score([model], images, how)
    zero, one = seen["0"].clean, seen["1"].clean
    np.testing.assert_allclose(zero.target_score, -one.target_score, atol=1e-5)
    np.testing.assert_allclose(zero.raw, -one.raw, atol=1e-4)
    np.testing.assert_array_equal(zero.predicted, one.predicted)
    assert SalienceConfig(target=model.classes[1]).class_target(model.classes) == 1
    with pytest.raises(HarnessError, match="target 'face' is not a class of this model"):
        SalienceConfig(target="face").class_target(model.classes)


def test_agreements_chance_level_takes_a_chunk_of_images_without_human_maps():
    """The chance level is computed 128 images at a time; a chunk where no image has a
    human map (a 300-image set with maps only for some) used to crash the run."""
    from harness.measures.agreement import chance
    from harness.measures.chance import Images

    images = Images(0, [f"{i:064x}" for i in range(3)])
    out = chance(images, (7, 7), np.zeros((3, 32, 32), bool), np.zeros(3, bool))
    assert out.shape == (3,) and np.isnan(out).all()
