"""Incremental occlusion (harness.salience.incremental): the same maps as the full
recompute on residual, VGG, BatchNorm + MaxPool, MobileNetV3-style (squeeze-excitation,
channel Concat, Resize) and NHWC networks with a leading Transpose and tf2onnx-style
padding, every baseline and window; models it cannot serve run in full, with the reason;
a wrong incremental computation is refused by the self-check."""

import json

import numpy as np
import pytest

import tests.naive as naive
from harness import OnnxClassifier, occlusion
from harness.errors import HarnessError
from harness.maps import normalize
from harness.numerics.receptive import AxisMap, reaches, reads
from harness.salience import incremental
from harness.salience.batched import make_baseline
from harness.salience.occlusion import incremental_provenance
from harness.salience.scoring import class_scores
from harness.salience.settings import SalienceConfig
from tests.onnx_models import linear_model, mobilenet_model, residual_model, vgg_model

SIZE = 48
NETS = {
    "residual": lambda p: residual_model(p, SIZE, (8, 16), (1, 1)),
    "bottleneck-nhwc": lambda p: residual_model(p, SIZE, (8, 16), (2, 1), bottleneck=True,
                                                layout="NHWC"),
    "vgg-maxpool": lambda p: vgg_model(p, SIZE),
    "mobilenet-se": lambda p: mobilenet_model(p, SIZE),
    "mobilenet-tf2onnx-nhwc": lambda p: mobilenet_model(p, SIZE, layout="NHWC",
                                                        tf_padding=True),
}


@pytest.fixture
def deep(monkeypatch):
    """Plans that go as deep as the analysis allows: with host copies costing nothing,
    the tiny test networks split into many segments, so every operator is crossed."""
    monkeypatch.setattr(incremental, "_CALL_MACS", 0)
    monkeypatch.setattr(incremental, "_COPY_MACS", 0)


def _images(n=3, seed=1):
    return np.random.default_rng(seed).random((n, SIZE, SIZE, 3), np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_receptive_fields_match_their_definition(seed):
    rng = np.random.default_rng(seed)
    maps = [AxisMap.window(int(rng.integers(1, 6)), int(rng.integers(1, 4)),
                           int(rng.integers(0, 3)), int(rng.integers(1, 3))),
            AxisMap.shift(int(rng.integers(-2, 3))),
            AxisMap.upsample(int(rng.integers(2, 4)), 2), AxisMap()]
    for m in maps:
        size_in = int(rng.integers(5, 30))
        size_out = max(1, (size_in * m.den) // m.num)
        for _ in range(20):
            a, b = sorted(rng.integers(0, size_in + 1, 2))
            lo, hi = reaches(m, np.array([a]), np.array([b]), size_out)
            want = naive.reaches(m, a, b, size_in, size_out)
            assert (lo[0], hi[0]) == ((want[0], want[-1] + 1) if want else (0, 0)), (m, a, b)
            u, v = sorted(rng.integers(0, size_out + 1, 2))
            lo, hi = reads(m, np.array([u]), np.array([v]), size_in)
            want = naive.reads(m, u, v, size_in, size_out)
            assert (lo[0], hi[0]) == ((want[0], want[-1] + 1) if want else (0, 0)), (m, u, v)


@pytest.mark.parametrize("name", sorted(NETS))
def test_incremental_maps_are_the_full_recompute_maps(name, tmp_path, deep):
    model = OnnxClassifier(NETS[name](tmp_path / f"{name}.onnx"), batch_size=16)
    x = _images()
    for window in (1, 2):
        for baseline in ("blur", "mean", 0.5):
            full = occlusion(model, x, window=window, baseline=baseline, incremental="off")
            ours = occlusion(model, x, window=window, baseline=baseline, incremental="on")
            clean = class_scores(model.forward(x), model.output_kind,
                                 model.forward(x).argmax(1))
            scale = max(np.abs(clean).max(), np.abs(clean[:, None, None] - full).max())
            assert np.abs(ours - full).max() <= 1e-5 * scale, (window, baseline)
            same = normalize(ours)[0] == normalize(full)[0]
            assert same.mean() >= 0.99, (window, baseline, same.mean())
    assert "incremental" in model.execution.split("[")[1]
    plan = incremental.plan_for(model, None, (7, 1))
    assert len(plan.segments) >= 3, [s.stop for s in plan.segments]  # crosses the prefix


def test_the_maps_are_the_definitions_maps(tmp_path, deep):
    """Against the oracle that runs every occluded copy through the model on its own."""
    model = OnnxClassifier(NETS["mobilenet-tf2onnx-nhwc"](tmp_path / "m.onnx"))
    x = _images(2)
    targets = model.forward(x).argmax(1)
    want = naive.occlusion(model, x, 7, 2, make_baseline(x, "blur", 7), targets)
    got = occlusion(model, x, window=2, incremental="on")
    assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())


def test_the_maps_do_not_depend_on_the_batch_size(tmp_path, deep):
    model = OnnxClassifier(NETS["residual"](tmp_path / "r.onnx"))
    x = _images(3)
    a = occlusion(model, x, batch_size=5, incremental="on")
    b = occlusion(model, x, batch_size=64, incremental="on")
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_a_model_whose_first_operator_is_global_runs_in_full_with_the_reason(tmp_path):
    weights = np.random.default_rng(0).normal(size=(2, SIZE, SIZE, 3)).astype(np.float32)
    model = OnnxClassifier(linear_model(tmp_path / "lin.onnx", weights))
    x = _images(2)
    auto = occlusion(model, x)
    assert model.execution == model.provider  # no incremental marker
    np.testing.assert_array_equal(auto, occlusion(model, x, incremental="off"))
    record = incremental_provenance(model, SalienceConfig(), (SIZE, SIZE), model.execution)
    assert record["used"] is False and record["frontier"] is None
    assert "Flatten" in record["reason"]
    with pytest.raises(HarnessError, match="incremental occlusion cannot run: .*Flatten"):
        occlusion(model, x, incremental="on")
    with pytest.raises(ValueError, match="incremental must be"):
        occlusion(model, x, incremental="yes")


def test_auto_takes_it_where_it_pays_and_says_why_not_elsewhere(tmp_path):
    small = OnnxClassifier(residual_model(tmp_path / "small.onnx", 32, (8, 16), (1, 1)))
    x = np.random.default_rng(0).random((1, 32, 32, 3), np.float32)
    occlusion(small, x)
    record = incremental_provenance(small, SalienceConfig(), (32, 32), small.execution)
    assert not record["used"] and "below 1.3" in record["reason"]
    assert record["predicted_ratio"] < incremental.WORTH
    big = OnnxClassifier(vgg_model(tmp_path / "vgg.onnx", 96, (16, 32)))
    occlusion(big, np.random.default_rng(0).random((1, 96, 96, 3), np.float32))
    record = incremental_provenance(big, SalienceConfig(), (96, 96), big.execution)
    assert record["used"] and record["predicted_ratio"] >= incremental.WORTH
    assert record["frontier"] == record["segments"][-1] and record["reason"] is None
    resized = incremental_provenance(big, SalienceConfig(), (64, 64), big.provider)
    assert "resized" in resized["reason"]


def test_a_wrong_incremental_computation_is_refused_and_recomputed_in_full(tmp_path,
                                                                          monkeypatch):
    model = OnnxClassifier(vgg_model(tmp_path / "vgg.onnx", 96, (16, 32)))
    x = np.random.default_rng(0).random((2, 96, 96, 3), np.float32)
    full = occlusion(model, x, incremental="off")
    # a frontier missing the windows' changes: every copy would score as the clean image
    monkeypatch.setattr(incremental, "_frontier",
                        lambda plan, held, crops, img, win: held[plan.frontier][img])
    got = occlusion(model, x)
    np.testing.assert_array_equal(got, full)
    assert model.execution.endswith("[incremental-refused]")
    passes = model.forward_passes
    occlusion(model, x)  # refused once, not tried again
    assert model.forward_passes - passes == 2 * (1 + 49)
    record = incremental_provenance(model, SalienceConfig(), (96, 96), model.execution)
    assert not record["used"] and "self-check" in record["reason"]


def test_settings_flag_and_provenance(tmp_path):
    assert SalienceConfig(incremental="on").to_json() == SalienceConfig().to_json()
    with pytest.raises(HarnessError, match="incremental must be one of auto, on, off"):
        SalienceConfig.checked(incremental="always")
    from tests.test_run import invoke

    model = vgg_model(tmp_path / "vgg.onnx", 96, (16, 32))
    images = (np.random.default_rng(0).random((4, 96, 96, 3)) * 255).astype(np.uint8)
    np.savez(tmp_path / "data.npz", images=images)
    common = ["run", "--model", model, "--data", tmp_path / "data.npz", "--measures",
              "entropy", "--quiet"]
    res = invoke(*common, "--out", tmp_path / "on", "--incremental", "on")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "on" / "run.json").read_text())["incremental"]["vgg"]
    assert record["used"] and record["mode"] == "on" and record["frontier"]
    (tmp_path / "off.toml").write_text('[salience]\nincremental = "off"\n')
    res = invoke(*common, "--out", tmp_path / "off", "--config", tmp_path / "off.toml")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "off" / "run.json").read_text())["incremental"]["vgg"]
    assert not record["used"] and record["reason"] == "incremental = off"
    res = invoke(*common, "--out", tmp_path / "bad", "--incremental", "sometimes")
    assert res.exit_code == 2 and "sometimes" in res.output
    weights = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype(np.float32)
    flat = linear_model(tmp_path / "lin.onnx", weights)
    res = invoke("salience", flat, tmp_path / "data.npz", "--incremental", "on", "--out",
                 tmp_path / "maps.npz")
    assert res.exit_code == 2, res.output
    assert "incremental occlusion cannot run" in res.output and "Flatten" in res.output


def test_a_non_finite_output_names_the_image_it_came_from(tmp_path):
    """Image 2 is dark: the model's square root of its mean brightness less 0.3 is NaN.
    The first image is run (and checked) apart from the rest; the error still counts
    from the first image."""
    from onnx import TensorProto, helper, numpy_helper

    from harness.errors import NonFiniteOutput
    from tests.onnx_models import save

    inits = [numpy_helper.from_array(np.full((4, 3, 3, 3), 1 / 27, np.float32), "w"),
             numpy_helper.from_array(np.array(0.3, np.float32), "level"),
             numpy_helper.from_array(np.eye(2, 4, dtype=np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1] * 4),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Sub", ["f", "level"], ["d"]),
             helper.make_node("Sqrt", ["d"], ["s"]),
             helper.make_node("Gemm", ["s", "fc"], ["logits"], transB=1)]
    graph = helper.make_graph(
        nodes, "sqrt", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=inits)
    model = OnnxClassifier(save(graph, tmp_path / "sqrt.onnx"))
    x = 0.6 + 0.3 * _images(4)
    x[2] = 0.1
    with pytest.raises(NonFiniteOutput) as caught:
        occlusion(model, x, incremental="on")
    assert list(caught.value.rows) == [2]
