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
