"""Grad-CAM's heads that compute something else: each is rebuilt from its description
and either refused in one line or mapped correctly, i.e. equal to a Grad-CAM whose
gradient is a finite difference of ONNX Runtime running the head alone (tests/naive.py),
taken on the tensor that is a map of the image."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness import OnnxClassifier, cam
from harness.errors import NoCamHead
from harness.runner import evaluate
from harness.salience.settings import SalienceConfig
from tests.naive import grad_cam_fd

R = np.random.default_rng(11)
C, K, H, W = 4, 3, 6, 8  # channels, classes, and a map that is not square
_WRITTEN: dict = {}  # path -> bytes of every file a test wrote itself


@pytest.fixture(autouse=True)
def _nothing_else_changes(tmp_path):
    """After each test: the files it wrote are byte-identical, and nothing else appeared
    outside the folders it named (out/, cache/)."""
    _WRITTEN.clear()
    yield
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.relative_to(tmp_path).parts[0] not in ("out", "cache"):
            assert path in _WRITTEN, f"{path} appeared"
            assert path.read_bytes() == _WRITTEN[path], f"{path} changed"


def _const(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype), name)


def _split_model(path, head, inits, opset=17, conv_w=None, value_info=()):
    """image (N, 3, H, W) -> 1x1 conv -> Relu -> A (N, C, H, W) -> ``head`` -> logits.
    Returns the path and ``score(a)``: ONNX Runtime running the head alone from A."""
    conv_w = R.normal(size=(C, 3, 1, 1)) if conv_w is None else conv_w
    body = [helper.make_node("Conv", ["image", "conv_w"], ["c"]),
            helper.make_node("Relu", ["c"], ["A"])]
    ir = 6 if opset < 13 else 9

    def graph(nodes, source, shape, extra=(), kind=TensorProto.FLOAT):
        weights = [t if t.data_type != TensorProto.FLOAT or kind == TensorProto.FLOAT else
                   numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name)
                   for t in inits]
        return helper.make_graph(
            nodes, "m", [helper.make_tensor_value_info(source, kind, shape)],
            [helper.make_tensor_value_info("logits", kind, ["N", K])],
            initializer=list(extra) + weights, value_info=list(value_info))

    def save(g, where):
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir
        onnx.save(model, str(where))
        _WRITTEN[where] = where.read_bytes()
        return model

    save(graph(body + head, "image", ["N", 3, H, W], [_const("conv_w", conv_w)]), path)
    # the head alone, in float64: the oracle's finite differences stay exact
    head_model = save(graph(head, "A", ["N", C, H, W], kind=TensorProto.DOUBLE),
                      path.with_suffix(".head.onnx"))
    session = ort.InferenceSession(head_model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return path, lambda a: session.run(["logits"], {"A": a.astype(np.float64)})[0]


def _feature(path, x):
    """A as ONNX Runtime computes it, (N, C, H, W)."""
    model = onnx.load(str(path))
    model.graph.output.append(helper.make_tensor_value_info("A", TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["A"], {"image": x.transpose(0, 3, 1, 2)})[0]


def _pool(source, out):
    """Global average pooling, as ReduceMean (ONNX Runtime has it in float64 too)."""
    return helper.make_node("ReduceMean", [source], [out], axes=[2, 3], keepdims=1)


def _gemm(inputs_width, name="fc"):
    return [_const(f"{name}_w", R.normal(size=(K, inputs_width))),
            _const(f"{name}_b", R.normal(size=K))]


def _assert_correct(path, score, target=None):
    x = R.random((3, H, W, 3)).astype(np.float32)
    clf = OnnxClassifier(path)
    maps = cam(clf, x, target=target)
    targets = clf.forward(x).argmax(1) if target is None else [target] * 3
    expected = grad_cam_fd(score, _feature(path, x), targets)
    assert maps.shape == expected.shape == (3, H, W)
    np.testing.assert_allclose(maps, expected, atol=1e-3 * np.abs(expected).max(), rtol=0)


FLAT = [helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]


@pytest.mark.parametrize("case,head,width", [
    # (c) Keras / tf2onnx: NHWC, flattened, one dense layer
    ("nhwc_flatten", [helper.make_node("Transpose", ["A"], ["t"], perm=[0, 2, 3, 1])], C * H * W),
    # (d) height and width swapped before the flatten: the map is swapped back
    ("hw_swap", [helper.make_node("Transpose", ["A"], ["t"], perm=[0, 1, 3, 2])], C * H * W),
    # (e) a reshape into NHWC's shape scrambles positions: A itself is weighed
    ("reshape_nhwc", [helper.make_node("Reshape", ["A", "nhwc"], ["r"]),
                      helper.make_node("ReduceMean", ["r"], ["t"], axes=[1, 2], keepdims=0)],
     C),
    # (e) a crop of the map: A itself is weighed, through the crop
    ("crop", [helper.make_node("Slice", ["A", "starts", "ends", "axes"], ["s"]),
              _pool("s", "t")], C),
    # (e) a padded map: A itself is weighed, through the pad
    ("pad", [helper.make_node("Pad", ["A", "pads"], ["p"]),
             _pool("p", "t")], C),
])
def test_layout_ops_after_the_feature_map_give_the_right_map(tmp_path, case, head, width):
    inits = _gemm(width) + [_const("nhwc", [-1, H, W, C], np.int64),
                            _const("starts", [1, 2], np.int64), _const("ends", [-1, -2], np.int64),
                            _const("axes", [2, 3], np.int64),
                            _const("pads", [0, 0, 1, 2, 0, 0, 1, 0], np.int64)]
    path, score = _split_model(tmp_path / f"{case}.onnx", head + FLAT, inits)
    _assert_correct(path, score)
    _assert_correct(path, score, target=2)
    if case == "nhwc_flatten":  # `harness run` once ended in a traceback on this head
        x = R.random((3, H, W, 3)).astype(np.float32)
        scores = evaluate([OnnxClassifier(path)], x, salience=SalienceConfig(method="cam"),
                          measures="entropy")
        assert set(scores["status"]) == {"ok"}


def test_an_nhwc_head_describes_its_axes(tmp_path):
    from harness.salience.cam import grad_head

    path, _ = _split_model(tmp_path / "nhwc.onnx", [
        helper.make_node("Transpose", ["A"], ["t"], perm=[0, 2, 3, 1])] + FLAT, _gemm(C * H * W))
    head = grad_head(OnnxClassifier(path))
    assert head.feature == "t" and head.axes == (1, 2, 3)
    assert "(height, width, channel axes 1, 2, 3)" in head.describe()


def test_a_softmax_of_opset_11_is_computed_as_opset_11_defines_it(tmp_path):
    """(a) Opset 11's Softmax normalises over every axis from `axis` on at once."""
    head = [helper.make_node("Softmax", ["A"], ["sm"], axis=1),
            _pool("sm", "t")] + FLAT
    path, score = _split_model(tmp_path / "opset11.onnx", head, _gemm(C), opset=11)
    _assert_correct(path, score)


def test_an_operator_read_otherwise_than_onnx_runtime_is_refused_naming_its_node(
        tmp_path, monkeypatch):
    """A head op whose meaning the harness would get wrong: the forward check refuses
    the model, naming the first node where the head parts from ONNX Runtime."""
    from harness.numerics import head_ops

    head = [helper.make_node("Softmax", ["A"], ["sm"], axis=1, name="mid_softmax"),
            _pool("sm", "t")] + FLAT
    path, _ = _split_model(tmp_path / "opset11.onnx", head, _gemm(C), opset=11)
    # read opset 11's Softmax with opset 13's meaning, as the harness once did
    monkeypatch.setitem(head_ops.OPS, "Softmax-1", head_ops.OPS["Softmax"])
    with pytest.raises(NoCamHead) as caught:
        cam(OnnxClassifier(path), R.random((2, H, W, 3)).astype(np.float32))
    message = str(caught.value)
    assert "\n" not in message
    assert "does not reproduce the model" in message and "'mid_softmax' (Softmax)" in message


def test_a_gradient_that_does_not_exist_refuses_the_model(tmp_path):
    """(b) A channel masked to zero, then Relu -> Sqrt after the pooling: the analytic
    derivative is 0.5 / sqrt(0); the model is refused, never mapped with NaN."""
    conv_w = R.normal(size=(C, 3, 1, 1))
    conv_w[0] = 0.0
    head = [_pool("A", "p"),
            helper.make_node("Relu", ["p"], ["pr"]),
            helper.make_node("Sqrt", ["pr"], ["t"], name="root")] + FLAT
    path, _ = _split_model(tmp_path / "sqrt.onnx", head, _gemm(C), conv_w=conv_w)
    x = R.random((4, H, W, 3)).astype(np.float32)
    with pytest.raises(NoCamHead, match=r"gradient is not finite \(from node 'root' \(Sqrt\)\)"):
        cam(OnnxClassifier(path), x)
    scores = evaluate([OnnxClassifier(path)], x, salience=SalienceConfig(method="cam"),
                      measures="entropy", keep_going=True)
    status = set(scores["status"])
    assert len(status) == 1 and status.pop().startswith("failed: ")
    assert scores.filter(scores["statistic"] == "headline")["value"].is_null().all()
    # parity once read SSIM 1.0000 [1, 1] between two NaN maps; now nothing is compared
    from harness.errors import HarnessError
    from harness.inputs.settings import build_config
    from harness.parity import parity

    np.savez(tmp_path / "x.npz", images=(x * 255).astype(np.uint8))
    _WRITTEN[tmp_path / "x.npz"] = (tmp_path / "x.npz").read_bytes()
    config = build_config(models=(path,), data=tmp_path / "x.npz", out=tmp_path / "out",
                          cache=tmp_path / "cache", **{"salience.method": "cam"})
    with pytest.raises(HarnessError, match="every comparison failed.*not finite"):
        parity(config, variants=("fp16",))


def test_a_kink_the_random_direction_crosses_is_caught_by_the_finite_difference(
        tmp_path, monkeypatch):
    """(ii) A derivative the head computes wrongly (here: Relu's made 1 everywhere) is
    caught by the central difference along a random direction."""
    from harness.numerics import head_ops

    head = [_pool("A", "p"),
            helper.make_node("Sub", ["p", "shift"], ["ps"]),
            helper.make_node("Relu", ["ps"], ["t"])] + FLAT
    path, _ = _split_model(tmp_path / "relu.onnx", head,
                           _gemm(C) + [_const("shift", np.full((1, C, 1, 1), 0.3))])
    monkeypatch.setitem(head_ops.OPS, "Relu", (head_ops.OPS["Relu"][0],
                                               head_ops._identity_back))
    with pytest.raises(NoCamHead, match="gradient disagrees with a finite difference"):
        cam(OnnxClassifier(path), R.random((4, H, W, 3)).astype(np.float32))


def test_a_value_info_that_lies_about_a_shape_changes_nothing(tmp_path):
    """(f) The file says A is (N, C, 1, 1); the graph computes (N, C, H, W)."""
    lie = [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["N", C, 1, 1])]
    head = [_pool("A", "t")] + FLAT
    path, score = _split_model(tmp_path / "lie.onnx", head, _gemm(C), value_info=lie)
    _assert_correct(path, score)


def test_a_feature_map_too_large_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MAX_CAM_FEATURE", str(C * H * W - 1))
    path, _ = _split_model(tmp_path / "big.onnx", [
        _pool("A", "t")] + FLAT, _gemm(C))
    with pytest.raises(NoCamHead, match=rf"'A' has {C * H * W} values per image, above "
                                        "HARNESS_MAX_CAM_FEATURE"):
        cam(OnnxClassifier(path), R.random((1, H, W, 3)).astype(np.float32))


def test_the_checks_run_once_per_head_and_the_file_is_untouched(tmp_path):
    import hashlib

    path, score = _split_model(tmp_path / "m.onnx", [
        _pool("A", "t")] + FLAT, _gemm(C))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    clf = OnnxClassifier(path)
    x = R.random((2, H, W, 3)).astype(np.float32)
    cam(clf, x)
    assert clf.__dict__["_cam_checked"] == {None}
    cam(clf, x)
    assert clf.forward_passes == 4  # the shape probe is not a map's pass
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before


def test_a_channels_last_block_keeps_the_map_of_positions(tmp_path):
    """ConvNeXt's blocks run LayerNorm and a linear layer over the channels of an NHWC
    map: positions stay where they were, so the map after them is still the image's."""
    from harness.salience.cam import grad_head

    head = [helper.make_node("Transpose", ["A"], ["t0"], perm=[0, 2, 3, 1]),
            helper.make_node("LayerNormalization", ["t0", "ln_s", "ln_b"], ["t1"], axis=-1),
            helper.make_node("MatMul", ["t1", "mix"], ["t"])] + FLAT
    inits = _gemm(C * H * W) + [_const("ln_s", np.ones(C)), _const("ln_b", np.zeros(C)),
                                _const("mix", R.normal(size=(C, C)))]
    path, _ = _split_model(tmp_path / "convnext.onnx", head, inits)
    clf = OnnxClassifier(path)
    found = grad_head(clf)
    assert found.feature == "t" and found.axes == (1, 2, 3)
    maps = cam(clf, R.random((2, H, W, 3)).astype(np.float32))
    assert maps.shape == (2, H, W) and np.isfinite(maps).all()
