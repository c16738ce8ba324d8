import numpy as np
import pytest
from onnx import TensorProto, helper

from harness import ModelSpec, OnnxClassifier
from harness.errors import HarnessError, NonFiniteOutput
from tests.onnx_models import linear_model, save

TWINS = {
    "nhwc": dict(layout="NHWC"),
    "bgr": dict(color="BGR"),
    "fixed_batch_1": dict(batch=1),
    "multi_output": dict(extra_output=True),
    "float16": dict(dtype=TensorProto.FLOAT16),
}


def _linear_logits(weights, bias, images):
    return np.einsum("khwc,nhwc->nk", weights, images) + np.asarray(bias)


def test_linear_model_outputs_by_hand(linear_path, linear_weights, images14):
    clf = OnnxClassifier(linear_path)
    assert clf.input_size == (14, 14) and clf.layout == "NCHW" and clf.output_kind == "logits"
    out = clf.forward(images14)
    np.testing.assert_allclose(out, _linear_logits(linear_weights, [0.1, -0.2], images14),
                               rtol=1e-5, atol=1e-4)
    assert clf.forward_passes == len(images14)


@pytest.mark.parametrize("twin", sorted(TWINS))
def test_twins_compute_the_same_function(tmp_path, linear_path, linear_weights, images14, twin):
    plain = OnnxClassifier(linear_path).forward(images14)
    path = linear_model(tmp_path / f"{twin}.onnx", linear_weights, bias=[0.1, -0.2],
                        **TWINS[twin])
    clf = OnnxClassifier(path, batch_size=2)
    tol = 5e-2 if twin == "float16" else 1e-4
    np.testing.assert_allclose(clf.forward(images14), plain, atol=tol)


def test_softmax_output_is_detected(tmp_path, linear_weights, images14):
    clf = OnnxClassifier(linear_model(tmp_path / "p.onnx", linear_weights, softmax=True))
    assert clf.output_kind == "probabilities"
    p = clf.predict_proba(images14)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)


def test_predict_proba_softmaxes_logits(linear_path, linear_weights, images14):
    z = _linear_logits(linear_weights, [0.1, -0.2], images14)
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(OnnxClassifier(linear_path).predict_proba(images14),
                               e / e.sum(1, keepdims=True), atol=1e-5)


def test_metadata_and_spec(tmp_path, linear_weights, images14):
    meta = {"harness.mean": "0.5,0.5,0.5", "harness.std": "0.25", "harness.classes": "real,fake",
            "harness.family": "lin"}
    clf = OnnxClassifier(linear_model(tmp_path / "m.onnx", linear_weights, metadata=meta))
    assert clf.classes == ("real", "fake") and clf.family == "lin"
    np.testing.assert_allclose(clf.forward(images14),
                               _linear_logits(linear_weights, [0, 0], (images14 - 0.5) / 0.25),
                               rtol=1e-4, atol=1e-3)
    spec = ModelSpec(classes=("a", "b"), family="other", name="renamed")
    clf = OnnxClassifier(tmp_path / "m.onnx", spec=spec)
    assert (clf.classes, clf.family, clf.name) == (("a", "b"), "other", "renamed")
    assert clf.mean.tolist() == [0.5, 0.5, 0.5]  # not in the spec: metadata still applies


def test_images_of_another_size_are_resized(linear_path, rng):
    from harness.numerics.filters import resize

    big = rng.random((3, 40, 30, 3)).astype(np.float32)
    clf = OnnxClassifier(linear_path)
    np.testing.assert_allclose(clf.forward(big), clf.forward(resize(big, (14, 14))), atol=1e-6)


def test_nan_rows_are_reported(tmp_path, images14):
    # logit = sqrt(mean(x) - 0.5): NaN for images darker than mid-grey.
    w = np.full((2, 14, 14, 3), 1.0 / (14 * 14 * 3), np.float32)
    clf = OnnxClassifier(linear_model(tmp_path / "nan.onnx", w, bias=[-0.5, -0.5], post="Sqrt"))
    x = images14.copy()
    x[[1, 3]] *= 0.2
    x[[0, 2, 4]] = np.clip(x[[0, 2, 4]] + 0.5, 0, 1)
    with pytest.raises(NonFiniteOutput) as err:
        clf.forward(x)
    assert err.value.rows.tolist() == [1, 3]


def _non_image_model(path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "vec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])])
    return save(graph, path)


def _dynamic_size_model(path):
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["g"]),
         helper.make_node("Flatten", ["g"], ["y"])], "dyn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    return save(graph, path)


@pytest.mark.parametrize("case,message", [
    ("missing", "no such model file"),
    ("garbage", "not an ONNX model"),
    ("vector", "not an image batch"),
    ("dynamic", "declare harness.input_size"),
])
def test_bad_models_get_one_clear_line(tmp_path, case, message):
    path = tmp_path / f"{case}.onnx"
    if case == "garbage":
        path.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    elif case == "vector":
        _non_image_model(path)
    elif case == "dynamic":
        _dynamic_size_model(path)
    with pytest.raises(HarnessError, match=message) as err:
        OnnxClassifier(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_dynamic_size_with_declared_size(tmp_path, rng):
    clf = OnnxClassifier(_dynamic_size_model(tmp_path / "d.onnx"), ModelSpec(input_size=(8, 8)))
    x = rng.random((2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(clf.forward(x), x.mean(axis=(1, 2)), atol=1e-6)


def test_bad_metadata_value(tmp_path, linear_weights):
    path = linear_model(tmp_path / "m.onnx", linear_weights, metadata={"harness.mean": "a,b,c"})
    with pytest.raises(HarnessError, match="harness.mean"):
        OnnxClassifier(path)


def test_cpu_provider_reported(linear_path):
    assert OnnxClassifier(linear_path).provider == "CPUExecutionProvider"


def test_cuda_sessions_compute_in_full_float32_and_reproducibly(monkeypatch):
    """TF32 would make scores depend on the card and cuDNN's timed search on the
    process; CUDA is asked for without either, and a CPU-only machine gets the CPU
    provider alone."""
    import onnxruntime

    import harness.model.session as session

    monkeypatch.setattr(session, "nvidia_gpu_visible", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "preload_dlls", lambda: None, raising=False)
    assert session.default_providers() == [
        ("CUDAExecutionProvider", {"use_tf32": "0", "cudnn_conv_algo_search": "HEURISTIC"}),
        "CPUExecutionProvider"]
    monkeypatch.setattr(session, "nvidia_gpu_visible", lambda: False)
    assert session.default_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("post", [None, "Sigmoid"])
def test_a_binary_detector_with_one_output_column_reads_as_two_classes(tmp_path, post):
    rng = np.random.default_rng(3)
    w = rng.normal(size=(1, 8, 8, 3)).astype(np.float32) / 20
    clf = OnnxClassifier(linear_model(tmp_path / "one.onnx", w, bias=[0.1], post=post))
    assert clf.num_classes == 2 and clf.single_logit
    assert clf.output_kind == ("probabilities" if post else "logits")
    x = rng.random((5, 8, 8, 3)).astype(np.float32)
    z = (w[0] * x).sum(axis=(1, 2, 3)) + 0.1
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(clf.predict_proba(x), np.stack([1 - p, p], 1), rtol=1e-5)
    expected = np.stack([1 - p, p], 1) if post else np.stack([-z / 2, z / 2], 1)
    np.testing.assert_allclose(clf.forward(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("opset,axis", [(17, 0), (17, -2), (11, 0)])
def test_a_softmax_over_the_batch_axis_is_refused(tmp_path, opset, axis):
    """Each image's scores would depend on its batch-mates: refused in one line."""
    import onnx

    path = linear_model(tmp_path / "m.onnx", np.ones((2, 4, 4, 3), np.float32), softmax=True)
    model = onnx.load(str(path))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    next(a for a in softmax.attribute if a.name == "axis").i = axis
    model.opset_import[0].version = opset
    onnx.save(model, str(path))
    with pytest.raises(HarnessError, match="normalises the output over the batch axis"):
        OnnxClassifier(path)
