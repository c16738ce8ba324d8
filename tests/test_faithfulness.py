"""The faithfulness measures (deletion, insertion, ROAD, faithfulness correlation) against
their definitions in tests/naive.py, ROAD's imputation against a direct sparse solve, and
a linear model whose answers are known by hand."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from harness import OnnxClassifier
from harness.errors import HarnessError
from harness.measures import FAITHFULNESS, get_measures
from harness.numerics.imputation import impute
from harness.runner import Evaluation, required_passes, score
from harness.salience.batched import make_baseline
from harness.salience.curves import random_maps, rng_for
from harness.salience.settings import SalienceConfig
from tests import naive
from tests.onnx_models import cnn_model, linear_model


def per_image(scored, measure):
    frame = scored.per_image.filter(scored.per_image["measure"] == measure)
    return frame["value"].to_numpy()


def test_imputation_solves_the_linear_system(rng):
    images = rng.random((7, 19, 23, 3)).astype(np.float32)
    removed = np.zeros((7, 19, 23), bool)
    removed[0, 5:12, 4:20] = True  # an inner block
    removed[1] = rng.random((19, 23)) < 0.9  # scattered, most of the image
    removed[2, :, :11] = True  # touching three borders
    removed[3, 0, 0] = True  # one corner pixel
    removed[4, ::2, ::2] = True  # single pixels that no coarser grid merges at first
    removed[5, 1:-1, 1:-1] = True  # everything but a one-pixel frame
    removed[6, 1, 1] = True  # a lone pixel between coarse points: singular coarse grids
    out = impute(images, removed)
    for i in range(7):
        np.testing.assert_allclose(out[i], naive.impute(images[i], removed[i]), atol=1e-4)
    assert np.array_equal(out[~removed], images[~removed])  # kept pixels untouched
    noise = rng.normal(0, 0.01, images.shape).astype(np.float32)  # a field per image
    noisy = impute(images, removed, noise)
    np.testing.assert_allclose(noisy[removed], out[removed] + noise[removed], atol=1e-6)
    assert np.array_equal(noisy[~removed], images[~removed])
    # copies of one image, each with its own mask, read the image and its noise field
    copies = impute(images[[5, 1]], removed[[1, 5, 1]], noise[[5, 1]], source=[1, 0, 1])
    for copy, i in zip(copies, [1, 5, 1], strict=True):
        np.testing.assert_array_equal(copy, noisy[i])
    with pytest.raises(ValueError, match="every pixel removed"):
        impute(images[:1], np.ones((1, 19, 23), bool))
    with pytest.raises(ValueError, match="not the images'"):
        impute(images, removed, noise[1:])
    with pytest.raises(ValueError, match="not within the 7 images"):
        impute(images, removed, source=[0, 1, 2, 3, 4, 5, 7])
    # a solve that cannot reach its tolerance (0: rounding leaves an error) refuses
    with pytest.raises(ArithmeticError, match="imputation of copy 0 stopped with an estimated"):
        impute(images[1:2], removed[1:2], tolerance=0.0)


# odd and even sizes (an odd row's last pair ends on the padding), regions on every border
_BOUNDED = textwrap.dedent("""
    import numpy as np
    from harness.numerics.imputation import impute
    rng = np.random.default_rng(0)
    for h, w in ((19, 23), (20, 22), (9, 11)):
        masks = np.zeros((4, h, w), bool)
        masks[0, h // 3:, w // 2:] = True
        masks[1, :, :w // 3] = True
        masks[2] = rng.random((h, w)) < 0.9
        masks[3, 1:-1, 1:-1] = True
        impute(rng.random((4, h, w, 3)).astype(np.float32), masks)
    print("inside")
""")


@pytest.mark.slow
def test_imputation_kernels_stay_inside_their_arrays(tmp_path):
    """The kernels index by hand, where a read one past a row goes unnoticed when what
    it reads is multiplied by zero: in a fresh process with Numba's bounds checks on
    (and a cache of its own), every index is checked."""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", _BOUNDED], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0 and "inside" in done.stdout, done.stderr[-2000:]


def test_ranks_break_ties_by_the_seeded_permutation():
    """Ranks equal the definition (value down, ties in a seeded permutation's order)
    with no ties, with many, and with NaN, whichever sort they take."""
    from harness.numerics import faithfulness as fa

    values = np.random.default_rng(0).standard_normal(5000)
    for case in (values, np.round(values, 1), np.where(values > 1, np.nan, values)):
        for seed in range(3):
            order = naive.rank_order(case, np.random.default_rng(seed))
            ranks = fa.ranks(case, np.random.default_rng(seed))
            assert np.array_equal(ranks[order], np.arange(case.size))


def test_imputation_holds_its_tolerance_on_a_full_size_image(rng):
    """The error bound the solve stops on is an estimate: on ROAD's copies of a 224 px
    image (large regions, where a small residual can hide a large error) the error
    against a direct solve stays within the 1e-4 the docs promise, a few times the
    tolerance."""
    from harness.maps import upsample
    from harness.numerics import faithfulness as fa
    from harness.numerics.imputation import TOLERANCE

    image = rng.random((1, 224, 224, 3)).astype(np.float32)
    ranks = fa.ranks(upsample(rng.standard_normal((1, 7, 7)), (224, 224))[0], rng)
    removed = fa.road_removed(ranks, (224, 224))[[0, 4, 8, 13]]
    out = impute(image, removed, source=np.zeros(len(removed), np.int64))
    for i, mask in enumerate(removed):
        error = np.abs(out[i] - naive.impute(image[0], mask)).max()
        assert error < min(1e-4, 3 * TOLERANCE), (i, error)


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A small CNN scored on every faithfulness measure, with its clean maps."""
    path = cnn_model(tmp_path_factory.mktemp("cnn") / "cnn.onnx", size=30, seed=3)
    x = np.random.default_rng(7).integers(0, 256, (3, 30, 30, 3), np.uint8) / np.float32(255)
    kept = {}
    scored = score([str(path)], x, Evaluation(measures="faithfulness", seed=5,
                                              on_model=lambda clf, m: kept.update(maps=m)))
    return OnnxClassifier(path), x, kept["maps"], scored


def test_measures_equal_their_definitions(cnn_run):
    from harness.execution.plan import image_hashes
    from harness.numerics.pixels import to_uint8

    clf, x, maps, scored = cnn_run
    hashes = image_hashes(to_uint8(x))
    targets = maps.clean.predicted
    blur = make_baseline(x, "blur", 7)
    chance = random_maps((7, 7), hashes, 5)
    for measure, chance_of, oracle in [
        ("deletion", "deletion", lambda i, m, order: naive.area(naive.cell_curve(
            clf, x[i], blur[i], m, order, targets[i]))),
        ("insertion", "insertion", lambda i, m, order: naive.area(naive.cell_curve(
            clf, x[i], blur[i], m, order, targets[i], insertion=True))),
    ]:
        expected = [oracle(i, maps.clean.raw[i], rng_for(5, hashes[i], "order"))
                    for i in range(len(x))]
        np.testing.assert_allclose(per_image(scored, measure), expected, rtol=1e-5, atol=1e-5)
        random = [oracle(i, chance[i], rng_for(5, hashes[i], "order/chance"))
                  for i in range(len(x))]
        rows = scored.scores.filter((scored.scores["measure"] == chance_of) &
                                    (scored.scores["statistic"] == "chance"))
        assert rows["value"][0] == pytest.approx(np.mean(random), abs=1e-5)
    expected = [naive.faithfulness_correlation(clf, x[i], blur[i], maps.clean.raw[i],
                                               rng_for(5, hashes[i], "subsets"), targets[i])
                for i in range(len(x))]
    np.testing.assert_allclose(per_image(scored, "faithfulness_correlation"), expected,
                               atol=1e-5)
    expected = []
    for i in range(len(x)):
        s = naive.road(clf, x[i], maps.clean.raw[i], rng_for(5, hashes[i], "road-order"),
                       rng_for(5, hashes[i], "road-noise"), targets[i])
        expected.append(np.mean(s[9:] - s[:9]))
    np.testing.assert_allclose(per_image(scored, "road"), expected, atol=1e-4)


def test_passes_are_counted_and_the_batch_does_not_matter(cnn_run, tmp_path):
    clf, x, _, scored = cnn_run
    assert scored.scores["forward_passes"][0] == required_passes(3, "faithfulness")
    assert required_passes(3, "deletion") - required_passes(3, "entropy") == 3 * 2 * 50
    assert required_passes(3, "road") - required_passes(3, "entropy") == 3 * 2 * 18
    assert required_passes(3, "faithfulness_correlation") - \
        required_passes(3, "entropy") == 3 * 33
    small = score([clf.path], x, Evaluation(measures="faithfulness", seed=5,
                                            salience=SalienceConfig(batch_size=7)))
    for measure in FAITHFULNESS:
        np.testing.assert_allclose(per_image(small, measure), per_image(scored, measure),
                                   rtol=1e-5, atol=1e-6)


def test_a_linear_model_reads_as_its_weights_say(tmp_path, rng):
    """Two classes, z0 = w . x, z1 = 0: the log-odds are linear in the pixels, so the
    occlusion map is each cell's exact share of a drop, any subset's drop is the sum of
    its cells' (faithfulness correlation 1), and the cells it ranks first are those
    whose loss costs most (deletion below chance, insertion and ROAD above)."""
    w = np.zeros((2, 28, 28, 3), np.float32)
    w[0, 8:20, 8:20] = rng.standard_normal((12, 12, 3)) * 0.5  # evidence in the centre
    path = linear_model(tmp_path / "linear.onnx", w)
    x = rng.integers(0, 256, (6, 28, 28, 3), np.uint8)
    scored = score([str(path)], x, Evaluation(measures="faithfulness", seed=1))
    np.testing.assert_allclose(per_image(scored, "faithfulness_correlation"), 1.0, atol=1e-5)
    rows = scored.scores.filter(scored.scores["statistic"].is_in(["headline", "chance"]))
    value = {(r["measure"], r["statistic"]): r["value"] for r in rows.iter_rows(named=True)}
    assert value[("deletion", "headline")] < value[("deletion", "chance")]
    assert value[("insertion", "headline")] > value[("insertion", "chance")]
    assert value[("road", "headline")] > max(0.0, value[("road", "chance")])


def test_the_group_names_all_four_and_a_typo_is_one_line():
    assert [m.name for m in get_measures("faithfulness")] == list(FAITHFULNESS)
    assert [m.name for m in get_measures("road,faithfulness")] == \
        ["road", "deletion", "insertion", "faithfulness_correlation"]
    with pytest.raises(HarnessError, match=r"did you mean deletion\?"):
        get_measures("deletoin")


def test_occlusion_maps_are_more_faithful_than_random_and_intensity_maps_on_the_zoo():
    """Every zoo model's own occlusion maps against, on the same images and copies'
    settings, random maps (the chance level) and the map of each image's grey intensity
    (which knows the image but not the model): separably better on every measure, by the
    paired bootstrap-t test of the run's statistics, Holm-adjusted over the measures,
    comparisons and models."""
    from harness import occlusion
    from harness.execution.plan import image_hashes
    from harness.inputs.zoo import builtin_manifest, read_manifest
    from harness.measures.deletion import auc
    from harness.measures.faithfulness_correlation import correlations
    from harness.measures.road import gap
    from harness.numerics.filters import cell_means
    from harness.numerics.pixels import to_float
    from harness.salience.curves import curve
    from harness.stats.bootstrap import Bootstrap
    from harness.stats.paired import holm, paired

    zoo = read_manifest(builtin_manifest())
    data = np.load(zoo.data)
    images = data["images"][data["split"] == "test"][:20]
    hashes = image_hashes(images)
    x = to_float(images)
    intensity = cell_means(x.mean(axis=3), (7, 7))
    boot = Bootstrap(0, hashes)
    config = SalienceConfig()
    better = {"deletion": -1.0, "insertion": 1.0, "road": 1.0, "faithcorr": 1.0}
    value = {"deletion": lambda s: auc(s[:, 0]), "insertion": lambda s: auc(s[:, 0]),
             "road": lambda s: gap(s[:, 0]), "faithcorr": lambda s: correlations(s)[0]}
    p_values, worst = [], {}
    for entry in zoo.models:
        clf = OnnxClassifier(entry.path, entry.spec)
        raw = occlusion(clf, x)
        targets = clf.forward(x).argmax(axis=1)
        diffs = []
        for kind, sign in better.items():
            scores = {name: curve(clf, x, maps, hashes, 0, config, targets, what)
                      for name, maps, what in [("own", raw, kind), ("intensity", intensity, kind),
                                               ("chance", raw, f"{kind}/chance")]
                      if what != "faithcorr/chance"}
            own = value[kind](scores["own"])
            chance = correlations(scores["own"])[1] if kind == "faithcorr" else \
                value[kind](scores["chance"])
            diffs += [sign * (own - chance), sign * (own - value[kind](scores["intensity"]))]
        result = paired(np.stack(diffs, axis=1), boot)
        p_values.append(np.where(result.diff > 0, result.p_value, 1.0))
        worst[entry.name] = float(result.diff.min())
    adjusted = holm(np.concatenate(p_values))
    assert (adjusted < 0.05).all(), (adjusted.reshape(len(zoo.models), -1).round(3), worst)
