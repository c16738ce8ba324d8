"""The sanity measure: a model against its randomised twin (Adebayo et al. 2018)."""

import hashlib

import numpy as np
import onnx
import polars as pl
import pytest
from onnx import TensorProto, helper

from harness import ModelSpec, OnnxClassifier, evaluate
from harness.model.twin import randomise, randomised_twin
from harness.salience.settings import SalienceConfig
from tests.onnx_models import cnn_model, save
from tests.test_measures import pattern_images


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sanity(frame, model, statistic="headline"):
    return frame.filter((pl.col("model") == model) & (pl.col("measure") == "sanity")
                        & (pl.col("statistic") == statistic))["value"][0]


def weightless_model(path):
    """Two logits from fixed operations only: the mean brightness and its negative."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
         helper.make_node("Neg", ["m1"], ["n1"]),
         helper.make_node("Concat", ["m1", "n1"], ["y"], axis=1)],
        "weightless", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    return save(graph, path)


def test_a_model_without_weights_gets_no_value_with_the_reason(tmp_path):
    model = OnnxClassifier(weightless_model(tmp_path / "fixed.onnx"))
    frame = evaluate([model], pattern_images(4), measures="sanity")
    assert _sanity(frame, "fixed") is None
    assert _sanity(frame, "fixed", "randomised_tensors") == 0
    assert frame["forward_passes"][0] == 4 * (1 + 49)  # no twin, no twin's maps


def test_cnn_against_its_twin_file_untouched_and_reproducible(tmp_path):
    path = cnn_model(tmp_path / "cnn.onnx", size=28, widths=(8, 16), seed=3)
    before = _sha(path)
    images = np.random.default_rng(0).random((6, 28, 28, 3)).astype(np.float32)
    frames = [evaluate([OnnxClassifier(path, ModelSpec(name="cnn"))], images,
                       measures="sanity", seed=5) for _ in range(2)]
    value = _sanity(frames[0], "cnn")
    # a random CNN against another draw of random weights: unrelated maps, SSIM near 0
    assert 0.5 < value < 1.5
    assert frames[0].equals(frames[1])  # the twin is drawn from the seed
    other = evaluate([OnnxClassifier(path, ModelSpec(name="cnn"))], images, measures="sanity",
                     seed=6)
    assert _sanity(other, "cnn") != value
    assert _sha(path) == before


def test_twin_redraws_weights_only_and_reads_external_data(tmp_path):
    path = cnn_model(tmp_path / "cnn.onnx", size=28, widths=(8, 16), seed=3)
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.data", size_threshold=0)
    files = [tmp_path / "ext.onnx", tmp_path / "ext.data"]
    before = [_sha(f) for f in files]
    clf = OnnxClassifier(files[0])
    twin = randomised_twin(clf, seed=0)
    assert twin is randomised_twin(clf, seed=0)  # built once
    x = pattern_images(3)
    assert not np.allclose(twin.forward(x), clf.forward(x))
    assert [_sha(f) for f in files] == before
    copy = onnx.load(str(path))
    n = randomise(copy, seed=0)
    weights = [i for i in proto.graph.initializer if len(i.dims) >= 2]
    assert n == len(weights) > 0
    kept = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    for init in copy.graph.initializer:
        redrawn = onnx.numpy_helper.to_array(init)
        if len(init.dims) < 2:
            np.testing.assert_array_equal(redrawn, kept[init.name])  # biases kept
        else:
            assert not np.array_equal(redrawn, kept[init.name])
            assert redrawn.std() == pytest.approx(kept[init.name].std(), rel=0.3)


def test_cam_twin_has_its_own_feature_maps(tmp_path):
    from tests.onnx_models import cam_model

    path = cam_model(tmp_path / "cam.onnx", size=28, channels=8, classes=2)[0]
    images = np.random.default_rng(1).random((4, 28, 28, 3)).astype(np.float32)
    frame = evaluate([OnnxClassifier(path)], images, measures="sanity",
                     salience=SalienceConfig(method="cam"))
    assert _sanity(frame, "cam") > 0


# -- the Spearman sanity measure -----------------------------------------------------


def test_spearman_of_maps_equals_scipys_with_ties(rng):
    from scipy.stats import spearmanr

    from harness.numerics.similarity import spearman

    a = rng.integers(0, 5, (20, 7, 7)).astype(np.float32)  # many ties
    b = a + rng.normal(0, 1.5, a.shape)
    want = [spearmanr(x.ravel(), y.ravel()).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(spearman(a, b), want, atol=1e-12)
    constant = spearman(a[:2], np.zeros((2, 7, 7)))
    assert np.isnan(constant).all()  # a constant map has no ranking to compare


def test_a_twin_that_keeps_the_weights_scores_zero(tmp_path, monkeypatch):
    """The hook: twins whose weights are the model's own give the model's maps, |rho| = 1
    on every image, so the headline is 0 and so is every twin's value."""
    import harness.model.twin as twin

    monkeypatch.setattr(twin, "randomise", lambda proto, seed, index=0: 1)
    path = cnn_model(tmp_path / "cnn.onnx", size=28, widths=(8, 16), seed=3)
    images = np.random.default_rng(0).random((6, 28, 28, 3)).astype(np.float32)
    frame = evaluate([OnnxClassifier(path, ModelSpec(name="cnn"))], images,
                     measures="sanity", sanity_twins=3)
    assert _sanity(frame, "cnn") == pytest.approx(0.0, abs=1e-12)
    assert [_sanity(frame, "cnn", f"twin@{k}") for k in range(3)] == pytest.approx([0, 0, 0])


def intensity_model(path):
    """A detector of the zoo's input whose class score is the image's summed intensity
    times a learned scale: its occlusion maps are the image's, whatever the weights."""
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["image", "axes"], ["s"], keepdims=0),
         helper.make_node("Unsqueeze", ["s", "one"], ["s1"]),
         helper.make_node("MatMul", ["s1", "w"], ["logits"])],
        "intensity", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                    ["N", 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1]),
         helper.make_tensor("w", TensorProto.FLOAT, [1, 2], [0.01, -0.01])])
    return save(graph, path, {"harness.mean": "0.5,0.5,0.5", "harness.std": "0.25,0.25,0.25",
                              "harness.classes": "face,non_face", "harness.output": "logits"})


def test_every_zoo_model_is_separably_above_a_model_whose_maps_ignore_its_weights(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.inputs.zoo import builtin_manifest

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["run", "--zoo", str(builtin_manifest()),
                                   "--model", str(intensity_model(tmp_path / "i.onnx")),
                                   "--measures", "sanity", "--limit", "30", "--sanity-twins",
                                   "3", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(out / "scores.parquet")
    assert _sanity(scores, "i") < 0.02  # near 0: its maps are the image's
    pairs = pl.read_parquet(out / "pairs.parquet").filter(
        (pl.col("measure") == "sanity") & ((pl.col("model_a") == "i") | (pl.col("model_b") == "i")))
    assert len(pairs) == 15
    for r in pairs.iter_rows(named=True):
        zoo_above = r["diff"] > 0 if r["model_b"] == "i" else r["diff"] < 0
        assert zoo_above and r["p_adjusted"] < 0.05, r


def test_the_cascade_redraws_from_the_output_down_and_ends_at_the_first_twin(tmp_path):
    """--sanity cascade: step j of 5 redraws the top ceil(4 j / 5) of a CNN's 4 weight
    tensors (latest first), leaving the rest; step 5 is the first twin, so its value is
    twin@0's; the cascade's 4 more maps an image are counted before the run."""
    from harness.model.twin import weight_order
    from harness.runner import required_passes

    path = cnn_model(tmp_path / "cnn.onnx", size=28, widths=(8, 16, 16), seed=3)
    proto = onnx.load(str(path))
    order = weight_order(proto)
    assert len(order) == 4
    graph_order = [n.input[1] for n in proto.graph.node if len(n.input) > 1
                   and n.input[1] in order]
    assert order == graph_order[::-1]  # the classifier's weights first
    redrawn = onnx.load(str(path))
    assert randomise(redrawn, 5, 0, top=1) == 1
    changed = [a.name for a, b in zip(proto.graph.initializer, redrawn.graph.initializer,
                                      strict=True) if a.raw_data != b.raw_data]
    assert changed == [order[0]]
    images = np.random.default_rng(0).random((5, 28, 28, 3)).astype(np.float32)
    frame = evaluate([OnnxClassifier(path, ModelSpec(name="cnn"))], images,
                     measures="sanity", seed=5, sanity_twins=2, sanity_cascade=True)
    steps = [_sanity(frame, "cnn", f"cascade@{j}/5") for j in range(1, 6)]
    assert steps[-1] == _sanity(frame, "cnn", "twin@0")
    assert all(0.0 <= v <= 1.0 for v in steps) and steps[0] < steps[-1]
    config = SalienceConfig()
    assert frame["forward_passes"][0] == required_passes(5, "sanity", config, sanity_twins=2,
                                                         sanity_cascade=True)
    assert required_passes(5, "sanity", config, sanity_twins=2, sanity_cascade=True) - \
        required_passes(5, "sanity", config, sanity_twins=2) == 4 * 5 * (1 + 49)


def test_sanity_cascade_from_the_command_line_is_drawn_in_the_report(cnn_zoo, tmp_path):
    from tests.test_run import invoke

    out = tmp_path / "run"
    res = invoke("run", "--zoo", cnn_zoo, "--measures", "sanity", "--sanity", "cascade",
                 "--sanity-twins", 2, "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    stats = set(pl.read_parquet(out / "scores.parquet")["statistic"].to_list())
    assert {f"cascade@{j}/5" for j in range(1, 6)} <= stats
    assert invoke("report", out).exit_code == 0
    assert "Sanity, layer by layer" in (out / "report.html").read_text()
    res = invoke("run", "--zoo", cnn_zoo, "--sanity", "layers", "--out", tmp_path / "x")
    assert res.exit_code == 2 and "'layers' is not one of 'twins', 'cascade'" in res.output
