from pathlib import Path

import numpy as np
import pytest

from harness import OnnxClassifier, cam
from harness.errors import HarnessError
from harness.runner import evaluate, required_passes
from harness.salience.settings import SalienceConfig
from tests.onnx_models import cam_model, linear_model


def _expected(images, conv_w, fc_w, targets):
    feats = np.maximum(np.einsum("kc,nhwc->nkhw", conv_w[:, :, 0, 0], images), 0)
    return np.einsum("nk,nkhw->nhw", fc_w[targets], feats)


@pytest.mark.parametrize("head,pool,between", [
    ("gemm", "gap", ()),
    ("gemm_t0", "gap", ("flatten",)),
    ("matmul_add", "gap", ("reshape",)),
    ("gemm", "reducemean", ("squeeze",)),
    ("matmul_add", "avgpool", ("flatten",)),
])
def test_head_is_found_and_maps_are_exact(tmp_path, rng, head, pool, between):
    path, conv_w, fc_w = cam_model(tmp_path / "m.onnx", head, pool, between)
    clf = OnnxClassifier(path)
    x = rng.random((5, 8, 8, 3)).astype(np.float32)
    maps = cam(clf, x)
    assert clf.forward_passes == 5
    targets = clf.forward(x).argmax(1)
    np.testing.assert_allclose(maps, _expected(x, conv_w, fc_w, targets), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cam(clf, x, target=2), _expected(x, conv_w, fc_w, [2] * 5),
                               rtol=1e-5, atol=1e-5)


def test_a_two_layer_head_is_differentiated_exactly(tmp_path, rng):
    import onnx
    from onnx import numpy_helper

    path, conv_w, fc_w = cam_model(tmp_path / "two.onnx", two_linear=True)
    hidden = next(numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
                  if t.name == "hidden")
    clf = OnnxClassifier(path)
    x = rng.random((4, 8, 8, 3)).astype(np.float32)
    maps = cam(clf, x)
    feats = np.maximum(np.einsum("kc,nhwc->nkhw", conv_w[:, :, 0, 0], x), 0)
    h = feats.mean(axis=(2, 3)) @ hidden
    targets = clf.forward(x).argmax(1)
    # dlogit/dpooled through ReLU and the hidden layer; summed over the 8 x 8 positions
    alpha = (fc_w[targets] * (h > 0)) @ hidden.T
    np.testing.assert_allclose(maps, np.einsum("nk,nkhw->nhw", alpha, feats), rtol=1e-4,
                               atol=1e-5)


def test_model_without_feature_maps_is_refused(tmp_path):
    path = linear_model(tmp_path / "lin.onnx", np.ones((2, 8, 8, 3), np.float32))
    with pytest.raises(HarnessError, match="reaches the model's input 'image' without passing "
                                           "a feature map.*--method occlusion"):
        cam(OnnxClassifier(path), np.zeros((1, 8, 8, 3), np.float32))


def test_a_head_with_an_op_it_cannot_differentiate_is_refused_naming_it(tmp_path):
    import onnx
    from onnx import helper

    path, _, _ = cam_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    model.graph.node.insert(list(model.graph.node).index(relu) + 1, helper.make_node(
        "MaxPool", ["feat"], ["maxed"], kernel_shape=[8, 8], name="head_maxpool"))
    pool = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    pool.input[0] = "maxed"
    onnx.save(model, str(tmp_path / "maxpool.onnx"))
    with pytest.raises(HarnessError, match="node 'head_maxpool' is a MaxPool, which the head "
                                           "differentiation does not support.*--method occlusion"):
        cam(OnnxClassifier(tmp_path / "maxpool.onnx"), np.zeros((1, 8, 8, 3), np.float32))


def test_file_on_disk_is_not_changed(tmp_path, rng):
    path, _, _ = cam_model(tmp_path / "m.onnx")
    before = path.read_bytes()
    cam(OnnxClassifier(path), rng.random((2, 8, 8, 3)).astype(np.float32))
    assert path.read_bytes() == before


def test_zoo_models_run_every_measure_with_cam():
    from harness.inputs.images import load_image_set
    from harness.inputs.zoo import builtin_manifest, read_manifest

    zoo = read_manifest(builtin_manifest())
    models = [OnnxClassifier(m.path, m.spec) for m in zoo.models[:2]]  # one family's seeds
    data = load_image_set(zoo.data, split="test").subset(np.arange(6))
    oos = {p.stem: load_image_set(p) for p in zoo.out_of_set}
    scores = evaluate(models, data, out_of_set=oos, salience=SalienceConfig(method="cam"))
    heads = scores.filter(scores["statistic"] == "headline")
    # the randomised twin's CAMs of the model's class may all be flat on six images
    assert heads.filter(heads["measure"] != "sanity")["value"].is_not_null().all()
    assert set(heads["measure"]) == {"accuracy", "entropy", "out_of_set", "transforms",
                                     "stability", "degradation", "agreement", "sanity"}
    passes = required_passes(6, salience=SalienceConfig(method="cam"),
                             out_of_set_sizes=[len(v) for v in oos.values()])
    # one pass per image and perturbation, control and each of CAM's 50 twins
    assert passes == (22 + 1 + 50) * 6 + 15
    assert scores["forward_passes"].unique().to_list() == [passes]


def test_cam_maps_too_small_for_ssim_fail_that_model(tmp_path):
    """A CAM's size is the model's: one of 6 x 6 cannot feed the SSIM measures, so that
    model fails with the reason (or the run stops without keep_going); entropy is fine."""
    path = cam_model(tmp_path / "small.onnx", size=6)[0]
    images = np.random.default_rng(0).random((3, 6, 6, 3)).astype(np.float32)
    config = SalienceConfig(method="cam")
    scores = evaluate([OnnxClassifier(path)], images, salience=config,
                      measures="entropy,degradation", keep_going=True)
    assert set(scores["status"]) == {"failed: its 6x6 CAM maps are too small for degradation "
                                     "(their SSIM needs maps of at least 7x7)"}
    with pytest.raises(HarnessError, match="model small: its 6x6 CAM maps are too small"):
        evaluate([OnnxClassifier(path)], images, salience=config, measures="degradation")
    ok = evaluate([OnnxClassifier(path)], images, salience=config, measures="entropy")
    assert set(ok["status"]) == {"ok"}


def test_weights_in_external_data_work_from_any_working_directory(tmp_path, rng, monkeypatch):
    import onnx

    (tmp_path / "model").mkdir()
    path, _, _ = cam_model(tmp_path / "model" / "cam.onnx")
    external = tmp_path / "model" / "external.onnx"
    onnx.save_model(onnx.load(str(path)), str(external), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="external.onnx.data",
                    size_threshold=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    x = rng.random((3, 8, 8, 3)).astype(np.float32)
    maps = cam(OnnxClassifier(Path("..") / "model" / "external.onnx"), x)
    np.testing.assert_allclose(maps, cam(OnnxClassifier(path), x), rtol=1e-6, atol=1e-6)


def test_explain_head_prints_what_is_differentiated(tmp_path):
    from click.testing import CliRunner

    from harness.cli import cli

    path, _, _ = cam_model(tmp_path / "m.onnx", "matmul_add", "gap", ("reshape",))
    res = CliRunner().invoke(cli, ["salience", str(path), "--method", "cam", "--explain-head"])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == ("A = 'feat' -> GlobalAveragePool -> Shape -> Gather -> Concat "
                                  "-> Reshape -> MatMul -> Add -> score 'logits'")
    res = CliRunner().invoke(cli, ["salience", str(path), "--explain-head"])
    assert res.exit_code == 2 and "--explain-head shows the head of --method cam" in res.output
