"""Grad-CAM's head differentiation: every operator's vector-Jacobian product against
central finite differences (float64), and whole heads of the kinds deployed CNNs ship,
built as ONNX graphs, against ONNX Runtime's forward pass and finite differences."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from harness import OnnxClassifier, cam
from harness.errors import NoCamHead
from harness.numerics.head_ops import OPS
from harness.salience.head import find_head
from tests.naive import central_difference

R = np.random.default_rng(7)


def _away_from_kinks(shape, low=0.2, high=2.0):
    """Values whose magnitude keeps them off a ReLU's or a clip's kink."""
    return R.uniform(low, high, shape) * R.choice([-1.0, 1.0], shape)


# op -> (attributes, inputs, which inputs to differentiate)
CASES = {
    "Identity": ({}, [R.normal(size=(2, 3))], [0]),
    "Cast": ({"to": TensorProto.FLOAT}, [R.normal(size=(2, 3))], [0]),
    "Dropout": ({}, [R.normal(size=(2, 3))], [0]),
    "Flatten": ({"axis": 1}, [R.normal(size=(2, 3, 1, 1))], [0]),
    "Reshape": ({}, [R.normal(size=(2, 3, 1, 1)), np.array([0, -1])], [0]),
    "Squeeze": ({}, [R.normal(size=(2, 3, 1, 1)), np.array([2, 3])], [0]),
    "Unsqueeze": ({}, [R.normal(size=(2, 3)), np.array([2, 3])], [0]),
    "Transpose": ({"perm": (0, 2, 3, 1)}, [R.normal(size=(2, 3, 2, 2))], [0]),
    "GlobalAveragePool": ({}, [R.normal(size=(2, 3, 4, 5))], [0]),
    "AveragePool": ({"kernel_shape": (4, 5)}, [R.normal(size=(2, 3, 4, 5))], [0]),
    "ReduceMean": ({"axes": (2, 3), "keepdims": 0}, [R.normal(size=(2, 3, 4, 5))], [0]),
    "Gemm": ({"transB": 1, "alpha": 0.5, "beta": 2.0},
             [R.normal(size=(2, 3)), R.normal(size=(4, 3)), R.normal(size=(4,))], [0, 1, 2]),
    "MatMul": ({}, [R.normal(size=(2, 3)), R.normal(size=(3, 4))], [0, 1]),
    "Conv": ({}, [R.normal(size=(2, 3, 1, 1)), R.normal(size=(4, 3, 1, 1)),
                  R.normal(size=(4,))], [0, 1, 2]),
    "Add": ({}, [R.normal(size=(2, 3)), R.normal(size=(3,))], [0, 1]),
    "Sub": ({}, [R.normal(size=(2, 3)), R.normal(size=(2, 1))], [0, 1]),
    "Mul": ({}, [R.normal(size=(2, 3)), R.normal(size=(2, 3))], [0, 1]),
    "Div": ({}, [R.normal(size=(2, 3)), R.uniform(0.5, 2.0, (1, 3))], [0, 1]),
    "Pow": ({}, [R.uniform(0.5, 2.0, (2, 3)), np.array(2.0)], [0]),
    "Relu": ({}, [_away_from_kinks((2, 3))], [0]),
    "LeakyRelu": ({"alpha": 0.1}, [_away_from_kinks((2, 3))], [0]),
    "Clip": ({}, [R.uniform(-0.9, 0.9, (2, 5)) * 3, np.array(-1.0), np.array(1.0)], [0]),
    "HardSigmoid": ({}, [R.uniform(-2.0, 2.0, (2, 5))], [0]),
    "HardSwish": ({}, [np.array([[-4.0, -2.5, -0.7, 0.4, 2.2, 3.6]])], [0]),
    "Sigmoid": ({}, [R.normal(size=(2, 3))], [0]),
    "Tanh": ({}, [R.normal(size=(2, 3))], [0]),
    "Erf": ({}, [R.normal(size=(2, 3))], [0]),
    "Sqrt": ({}, [R.uniform(0.5, 2.0, (2, 3))], [0]),
    "Gelu": ({}, [R.normal(size=(2, 3))], [0]),
    "BatchNormalization": ({"epsilon": 1e-3}, [R.normal(size=(2, 3, 1, 1)), R.normal(size=3),
                                               R.normal(size=3), R.normal(size=3),
                                               R.uniform(0.5, 2.0, 3)], [0]),
    "LayerNormalization": ({"axis": -1}, [R.normal(size=(2, 5)), R.normal(size=5),
                                          R.normal(size=5)], [0, 1, 2]),
    "Softmax": ({"axis": -1}, [R.normal(size=(2, 4))], [0]),
    "LogSoftmax": ({"axis": -1}, [R.normal(size=(2, 4))], [0]),
    # opsets 1 to 12: over every axis from `axis` (default 1) at once
    "Softmax-1": ({}, [R.normal(size=(2, 3, 2, 2))], [0]),
    "LogSoftmax-1": ({"axis": 2}, [R.normal(size=(2, 3, 2, 2))], [0]),
    "Slice": ({}, [R.normal(size=(2, 3, 5, 5)), np.array([1, 4]), np.array([4, 0]),
                   np.array([2, 3]), np.array([1, -2])], [0]),
    "Pad": ({}, [R.normal(size=(2, 3, 4, 4)), np.array([0, 0, 1, -1, 0, 0, 2, 1])], [0]),
}


def test_every_supported_op_has_a_case():
    assert set(CASES) == set(OPS)


@pytest.mark.parametrize("op", sorted(CASES))
def test_vector_jacobian_product_matches_central_differences(op):
    attrs, inputs, which = CASES[op]
    forward, backward = OPS[op]
    inputs = [np.asarray(x, np.float64) if x.dtype.kind == "f" else x for x in inputs]
    out = forward(attrs, *inputs)
    g = R.normal(size=np.shape(out))
    grads = backward(attrs, inputs, out, g)
    for k in which:
        expected = central_difference(lambda *xs: forward(attrs, *xs), inputs, k, g)
        np.testing.assert_allclose(grads[k], expected, rtol=1e-6, atol=1e-7,
                                   err_msg=f"{op} input {k}")


def test_tanh_gelu_matches_central_differences():
    forward, backward = OPS["Gelu"]
    x = R.normal(size=(2, 3))
    g = R.normal(size=(2, 3))
    attrs = {"approximate": "tanh"}
    expected = central_difference(lambda v: forward(attrs, v), [x], 0, g)
    np.testing.assert_allclose(backward(attrs, [x], forward(attrs, x), g)[0], expected,
                               rtol=1e-6)


# -- whole heads as ONNX graphs ---------------------------------------------------------

C, K, S = 6, 3, 4  # channels, classes, map side


def _head_model(path, body, inits, extra_inputs=()):
    """A model: image (N, 3, S, S) -> 1x1 conv -> Relu -> A (N, C, S, S) -> ``body``
    (nodes reading "A", ending in "logits")."""
    conv = numpy_helper.from_array(R.normal(size=(C, 3, 1, 1)).astype(np.float32), "conv_w")
    nodes = [helper.make_node("Conv", ["image", "conv_w"], ["c"]),
             helper.make_node("Relu", ["c"], ["A"]), *body]
    graph = helper.make_graph(
        nodes, "head",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, S, S])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", K])],
        initializer=[conv, *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array, np.float32), name)


def _mobilenet_v3(path):
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p"]),
        helper.make_node("Conv", ["p", "w1", "b1"], ["h"]),
        helper.make_node("HardSwish", ["h"], ["hs"]),
        helper.make_node("Dropout", ["hs"], ["d"]),
        helper.make_node("Flatten", ["d"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["logits"], transB=1)],
        [_const("w1", R.normal(size=(8, C, 1, 1))), _const("b1", R.normal(size=8)),
         _const("w2", R.normal(size=(K, 8))), _const("b2", R.normal(size=K))])


def _efficientnet_silu(path):
    return _head_model(path, [
        helper.make_node("Conv", ["A", "w0"], ["e"]),
        helper.make_node("Sigmoid", ["e"], ["s"]),
        helper.make_node("Mul", ["e", "s"], ["silu"]),  # the feature map is silu(e)
        helper.make_node("ReduceMean", ["silu", "axes"], ["p"], keepdims=0),
        helper.make_node("MatMul", ["p", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["logits"])],
        [_const("w0", R.normal(size=(C, C, 1, 1))),
         numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
         _const("w", R.normal(size=(C, K))), _const("b", R.normal(size=K))])


def _convnext_layernorm(path):
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("LayerNormalization", ["f", "g", "beta"], ["n"], epsilon=1e-6),
        helper.make_node("Gemm", ["n", "w", "b"], ["logits"], transB=1)],
        [_const("g", R.normal(size=C)), _const("beta", R.normal(size=C)),
         _const("w", R.normal(size=(K, C))), _const("b", R.normal(size=K))])


def _decomposed_layernorm_gelu(path):
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("ReduceMean", ["f", "last"], ["mu"]),
        helper.make_node("Sub", ["f", "mu"], ["dev"]),
        helper.make_node("Pow", ["dev", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq", "last"], ["var"]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["dev", "sd"], ["n"]),
        helper.make_node("MatMul", ["n", "w1"], ["h"]),
        helper.make_node("Div", ["h", "root2"], ["hs"]),
        helper.make_node("Erf", ["hs"], ["er"]),
        helper.make_node("Add", ["er", "one"], ["er1"]),
        helper.make_node("Mul", ["h", "er1"], ["hg"]),
        helper.make_node("Mul", ["hg", "half"], ["gelu"]),
        helper.make_node("Gemm", ["gelu", "w2"], ["logits"])],
        [numpy_helper.from_array(np.array([-1], np.int64), "last"), _const("two", 2.0),
         _const("eps", 1e-5), _const("root2", np.sqrt(2.0)), _const("one", 1.0),
         _const("half", 0.5), _const("w1", R.normal(size=(C, 8))),
         _const("w2", R.normal(size=(8, K)))])


def _vgg_no_pool(path):
    return _head_model(path, [
        helper.make_node("Flatten", ["A"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"], transB=1)],
        [_const("w1", R.normal(size=(10, C * S * S)) / 4), _const("b1", R.normal(size=10)),
         _const("w2", R.normal(size=(K, 10))), _const("b2", R.normal(size=K))])


def _batchnorm_leaky_softmax(path):
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p"]),
        helper.make_node("BatchNormalization", ["p", "sc", "bi", "mean", "var"], ["bn"]),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.1),
        helper.make_node("Squeeze", ["lr", "sq"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["z"], transB=1),
        helper.make_node("Softmax", ["z"], ["logits"], axis=1)],
        [_const("sc", R.normal(size=C)), _const("bi", R.normal(size=C)),
         _const("mean", R.normal(size=C)), _const("var", R.uniform(0.5, 2, C)),
         numpy_helper.from_array(np.array([2, 3], np.int64), "sq"),
         _const("w", R.normal(size=(K, C)))])


def _a_read_twice(path):
    """A reaches the score by two paths (average and a scaled mean): the gradient adds."""
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p1"]),
        helper.make_node("ReduceMean", ["A", "axes"], ["p2"], keepdims=1),
        helper.make_node("Tanh", ["p2"], ["t"]),
        helper.make_node("Mul", ["p1", "t"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)],
        [numpy_helper.from_array(np.array([2, 3], np.int64), "axes"),
         _const("w", R.normal(size=(K, C)))])


def _kernel_on_a_pooled_map(path):
    """A 3x3 convolution, padded, on the pooled 1 x 1 map: only its centre tap acts."""
    return _head_model(path, [
        helper.make_node("GlobalAveragePool", ["A"], ["p"]),
        helper.make_node("Conv", ["p", "k3", "kb"], ["h"], pads=[1] * 4),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)],
        [_const("k3", R.normal(size=(8, C, 3, 3))), _const("kb", R.normal(size=8)),
         _const("w", R.normal(size=(K, 8)))])


HEADS = {"a_read_twice": _a_read_twice, "kernel_on_a_pooled_map": _kernel_on_a_pooled_map,
         "mobilenet_v3": _mobilenet_v3,
         "efficientnet_silu": _efficientnet_silu,
         "convnext_layernorm": _convnext_layernorm,
         "decomposed_layernorm_gelu": _decomposed_layernorm_gelu, "vgg_no_pool": _vgg_no_pool,
         "batchnorm_leaky_softmax": _batchnorm_leaky_softmax}


def _feature_and_logits(path, x, feature):
    """The feature map and the logits (before a final softmax) from ONNX Runtime."""
    model = onnx.load(str(path))
    names = [feature] + (["z"] if any("z" in n.output for n in model.graph.node) else [])
    for name in names:
        model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()],
                      session.run(None, {"image": x}), strict=True))
    return values[feature], values.get("z", values["logits"])


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_whole_heads_agree_with_onnx_runtime_and_finite_differences(tmp_path, kind):
    path = HEADS[kind](tmp_path / f"{kind}.onnx")
    head = _find(onnx.load(str(path)), "logits")
    # the last spatial map: the SiLU of a convolution of A in that head
    assert head.feature == ("silu" if kind == "efficientnet_silu" else "A")
    x = R.random((3, 3, S, S)).astype(np.float32)
    a, logits = _feature_and_logits(path, x, head.feature)
    a = a.astype(np.float64)
    targets = np.array([0, 1, 2])
    grad = head.gradient(a, targets)
    # the head's own forward pass reproduces ONNX Runtime's scores
    score = _numpy_score(head, a)
    np.testing.assert_allclose(score, logits, rtol=1e-4, atol=1e-4)
    # and its gradient is the derivative of that forward pass
    g = np.zeros_like(score)
    g[np.arange(3), targets] = 1.0
    expected = central_difference(lambda v: _numpy_score(head, v), [a], 0, g)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)


def _find(model, output, layer=None):
    """find_head with the shapes of a run of ``model`` on one image."""
    session = ort.InferenceSession(_exposing_all(model).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    x = R.random((1, 3, S, S)).astype(np.float32)
    names = [o.name for o in session.get_outputs()]
    tensors = dict(zip(names, session.run(names, {"image": x}), strict=True))
    tensors["image"] = x
    return find_head(model, output, tensors, "image", "NCHW", layer=layer)


def _exposing_all(model):
    from copy import deepcopy

    from harness.model.session import tensor_types

    model = deepcopy(model)
    types = tensor_types(model)
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name in types and name not in present:
                model.graph.output.append(helper.make_tensor_value_info(name, types[name], None))
    return model


def _numpy_score(head, a):
    return head.values(a)[head.score]


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_cam_runs_on_every_head_kind_for_predicted_and_given_classes(tmp_path, kind):
    clf = OnnxClassifier(HEADS[kind](tmp_path / f"{kind}.onnx"), batch_size=4)
    x = R.random((7, S, S, 3)).astype(np.float32)
    for target in (None, 1):
        maps = cam(clf, x, target=target)
        assert maps.shape == (7, S, S) and np.isfinite(maps).all()
        one_by_one = np.concatenate([cam(clf, x[i:i + 1], target=target) for i in range(7)])
        np.testing.assert_allclose(maps, one_by_one, rtol=1e-5, atol=1e-6)


def test_a_head_reading_two_feature_maps_is_refused(tmp_path):
    path = _head_model(tmp_path / "two.onnx", [
        helper.make_node("Sigmoid", ["c"], ["B"]),
        helper.make_node("GlobalAveragePool", ["A"], ["pa"]),
        helper.make_node("GlobalAveragePool", ["B"], ["pb"]),
        helper.make_node("Add", ["pa", "pb"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)],
        [_const("w", R.normal(size=(K, C)))])
    with pytest.raises(NoCamHead, match=r"reads 2 feature maps \(A, B\)"):
        _find(onnx.load(str(path)), "logits")


def test_a_named_layer_moves_the_map_and_keys_the_cache(tmp_path):
    from harness.salience.settings import SalienceConfig

    path = _efficientnet_silu(tmp_path / "silu.onnx")
    model = onnx.load(str(path))
    head = _find(model, "logits", layer="A")  # before the 1x1 conv and the SiLU
    assert head.feature == "A" and [n.op_type for n in head.nodes][:3] == ["Conv", "Sigmoid",
                                                                          "Mul"]
    x = R.random((3, 3, S, S)).astype(np.float32)
    a, _ = _feature_and_logits(path, x, "A")
    a = a.astype(np.float64)
    targets = np.array([2, 0, 1])
    g = np.zeros((3, K))
    g[np.arange(3), targets] = 1.0
    expected = central_difference(lambda v: _numpy_score(head, v), [a], 0, g)
    np.testing.assert_allclose(head.gradient(a, targets), expected, rtol=1e-5, atol=1e-7)
    clf = OnnxClassifier(path)
    pixels = x.transpose(0, 2, 3, 1)
    assert not np.allclose(cam(clf, pixels, layer="A"), cam(clf, pixels))
    with pytest.raises(NoCamHead, match="the graph has no tensor named 'nowhere'"):
        _find(model, "logits", layer="nowhere")
    with pytest.raises(NoCamHead, match="is a 3x3 convolution on a feature map"):
        _find(_with_3x3(model, tmp_path), "logits", layer="c")
    keys = {SalienceConfig(method="cam").to_json(),
            SalienceConfig(method="cam", layer="A").to_json()}
    assert len(keys) == 2 and '"layer": "A"' in max(keys, key=len)


def _with_3x3(model, tmp_path):
    """The model with a 3x3 convolution between its first conv and A."""
    from copy import deepcopy

    model = deepcopy(model)
    relu = next(n for n in model.graph.node if n.output[0] == "A")
    relu.input[0] = "c3"
    model.graph.initializer.append(_const("k3", R.normal(size=(C, C, 3, 3))))
    model.graph.node.insert(1, helper.make_node("Conv", ["c", "k3"], ["c3"], pads=[1] * 4))
    return model


def test_a_single_sigmoid_output_is_differentiated_through_its_logit(tmp_path):
    """A binary detector's one column: class 1 is explained by +z, class 0 by -z."""
    conv = numpy_helper.from_array(R.normal(size=(C, 3, 1, 1)).astype(np.float32), "conv_w")
    nodes = [helper.make_node("Conv", ["image", "conv_w"], ["c"]),
             helper.make_node("Relu", ["c"], ["A"]),
             helper.make_node("GlobalAveragePool", ["A"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["z"], transB=1),
             helper.make_node("Sigmoid", ["z"], ["prob"])]
    graph = helper.make_graph(
        nodes, "binary",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, S, S])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", 1])],
        initializer=[conv, _const("w", R.normal(size=(1, C)))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "binary.onnx"))
    clf = OnnxClassifier(tmp_path / "binary.onnx")
    assert clf.output_kind == "probabilities" and grad_head_of(clf).score == "z"
    x = R.random((4, S, S, 3)).astype(np.float32)
    face, other = cam(clf, x, target=1), cam(clf, x, target=0)
    np.testing.assert_allclose(other, -face, rtol=1e-6)
    w = numpy_helper.to_array(model.graph.initializer[1])[0]
    feats = np.maximum(np.einsum("kc,nhwc->nkhw", numpy_helper.to_array(conv)[:, :, 0, 0], x),
                       0)
    # dz/dA_k summed over the map is w_k; class 1 takes half of +z
    np.testing.assert_allclose(face, 0.5 * np.einsum("k,nkhw->nhw", w, feats), rtol=1e-4,
                               atol=1e-6)


def grad_head_of(clf):
    from harness.salience.cam import grad_head

    return grad_head(clf)
