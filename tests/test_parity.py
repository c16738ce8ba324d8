"""Deployment parity: a model against its variants, built in memory."""

import hashlib
import json
import tempfile

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from harness import OnnxClassifier
from harness.cli import cli
from harness.errors import HarnessError
from harness.execution.cache import SalienceCache
from harness.inputs.settings import build_config
from harness.model.variants import fp16, int8_dynamic
from harness.parity import PROBE_IMAGES, parity
from harness.results.parity import drift
from harness.runner import evaluate
from harness.stats.bootstrap import Bootstrap
from harness.stats.paired import paired
from tests.onnx_models import cnn_model

N_IMAGES = 24


@pytest.fixture
def study(tmp_path):
    """A small CNN and 24 labelled 32 px images, the first half with human maps."""
    (tmp_path / "models").mkdir()
    model = cnn_model(tmp_path / "models" / "cnn.onnx", size=32, widths=(8, 8), seed=5,
                      metadata={"harness.classes": "face,other"})
    gen = np.random.default_rng(11)
    data = tmp_path / "data.npz"
    masks = np.zeros((N_IMAGES, 32, 32), bool)
    masks[:N_IMAGES // 2, 8:24, 8:24] = True
    np.savez(data, images=(gen.random((N_IMAGES, 32, 32, 3)) * 255).astype(np.uint8),
             labels=np.array(["face", "other"] * (N_IMAGES // 2)), masks=masks)
    return model, data


def _config(tmp_path, model, data, **kwargs):
    return build_config(models=(model,), data=data, out=tmp_path / "out",
                        cache=tmp_path / "cache", **kwargs)


def _row(frame, variant, statistic):
    return frame.filter((pl.col("variant") == variant)
                        & (pl.col("statistic") == statistic)).row(0, named=True)


def flip_sign(proto, calibration):
    """A planted change: the first convolution's weights with their sign flipped."""
    init = next(i for i in proto.graph.initializer if i.name == "c0.w")
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    return proto


def negate_logits(proto, calibration):
    """Every prediction flipped: the classifier's weights and bias negated."""
    for init in proto.graph.initializer:
        if init.name.startswith("fc."):
            init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    return proto


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fp16_of_a_small_cnn_keeps_its_decisions_and_its_maps(tmp_path, study):
    model, data = study
    done = parity(_config(tmp_path, model, data), variants=("fp16",))
    agreement = _row(done.parity, "fp16", "agreement")
    ssim = _row(done.parity, "fp16", "ssim")
    assert agreement["value"] == 1.0 and agreement["n"] == N_IMAGES
    assert ssim["value"] > 0.99 and ssim["ci_low"] > 0.98
    assert _row(done.parity, "fp16", "score_change")["value"] < 0.01
    assert done.parity["provider"].drop_nulls().unique().to_list() == ["CPUExecutionProvider"]


def test_a_planted_sign_flip_is_detected_and_separable_from_fp16(tmp_path, study):
    model, data = study
    done = parity(_config(tmp_path, model, data),
                  variants={"fp16": fp16,
                            "planted": flip_sign})
    half, planted = _row(done.parity, "fp16", "ssim"), _row(done.parity, "planted", "ssim")
    assert planted["ci_high"] < half["ci_low"], (planted, half)
    assert planted["value"] < 0.9
    # its scores move too, separably and far beyond FP16's rounding
    shift, rounding = (_row(done.parity, v, "score_shift") for v in ("planted", "fp16"))
    assert shift["p_adjusted"] < 0.05
    assert min(abs(shift["ci_low"]), abs(shift["ci_high"])) > 100 * max(
        abs(rounding["ci_low"]), abs(rounding["ci_high"]))
    # the same drop as a paired test of the per-image SSIM, planted against fp16
    per_image = pl.read_parquet(tmp_path / "out" / "per_image.parquet").filter(
        pl.col("measure") == "parity.ssim")
    keys = per_image["image"].unique(maintain_order=True).to_list()

    def column(name):
        rows = per_image.filter(pl.col("model") == name)
        return np.array(rows.sort(pl.col("image").replace_strict(
            {k: i for i, k in enumerate(keys)}))["value"].fill_null(np.nan).to_list())

    test = paired(column("cnn@planted") - column("cnn@fp16"), Bootstrap(0, keys))
    assert test.p_value[0] < 0.05 and test.ci_high[0] < 0


def test_the_score_of_a_flipped_prediction_is_read_for_the_models_class(tmp_path, study):
    model, data = study
    done = parity(_config(tmp_path, model, data), variants={"negated": negate_logits})
    assert _row(done.parity, "negated", "agreement")["value"] == 0.0
    # the flipped images' scores re-read, after the probe of the batch (8 alone, 8 together)
    assert done.info["extra_passes"] == N_IMAGES + 2 * PROBE_IMAGES
    clf = OnnxClassifier(model)
    images = np.load(data)["images"]
    z = clf.forward(images).astype(np.float64)
    log_odds = np.abs(z[:, 0] - z[:, 1])  # of the predicted class
    # negated logits: the model's class has log-odds -s on the variant, a shift of -2 s
    shift = _row(done.parity, "negated", "score_shift")
    assert shift["value"] == pytest.approx(-2 * log_odds.mean(), rel=1e-4)
    assert shift["p_adjusted"] < 0.05
    assert _row(done.parity, "negated", "score_change")["value"] == pytest.approx(
        2 * log_odds.mean(), rel=1e-4)


def test_a_variant_whose_outputs_depend_on_the_batch_runs_one_image_at_a_time(tmp_path,
                                                                              study):
    model, data = study
    tables = []
    for batch in (64, 5):
        done = parity(build_config(models=(model,), data=data, out=tmp_path / f"o{batch}",
                                   cache=tmp_path / f"cache{batch}",
                                   **{"salience.batch_size": batch}),
                      variants=("fp16", "int8-dynamic"))
        tables.append(done.parity.drop("p_value", "p_adjusted"))
        assert _row(done.parity, "fp16", "ssim")["note"] is None
        note = _row(done.parity, "int8-dynamic", "ssim")["note"]
        assert note.startswith("its outputs for an image depend on the other images of its "
                               "batch (by up to ") and note.endswith("run one image at a time")
        assert "- int8-dynamic: its outputs for an image depend" in done.text
    # its maps no longer depend on how the perturbed copies were batched
    assert tables[0].equals(tables[1])


def test_drift_of_identical_maps_is_one_and_a_map_gone_flat_is_counted_lost():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 256, (3, 7, 7)).astype(np.uint8)
    flat = np.array([False, False, True])
    flat_v = np.array([False, True, False])
    q_v = q.copy()
    q_v[1] = 0
    out = drift(q, flat, np.array([0, 1, 1]), np.array([1.0, 2.0, 3.0]), q_v, flat_v,
                np.array([0, 0, 1]), np.array([1.5, 2.0, 2.0]))
    np.testing.assert_array_equal(out["agreement"], [1, 0, 1])
    np.testing.assert_allclose(out["score_shift"], [0.5, 0.0, -1.0])
    np.testing.assert_allclose(out["score_change"], [0.5, 0.0, 1.0])
    assert out["ssim"][0] == pytest.approx(1.0) and np.isnan(out["ssim"][1:]).all()
    np.testing.assert_array_equal(out["lost_maps"][:2], [0.0, 1.0])  # the variant's flat
    assert np.isnan(out["lost_maps"][2])  # the model's own map is flat


def test_a_variant_that_cannot_be_built_or_loaded_is_listed_and_the_rest_go_on(tmp_path,
                                                                               study):
    model, data = study

    def refuses(proto, calibration):
        raise ValueError("no quantised kernel for Foo")

    def broken(proto, calibration):
        proto.graph.node[0].op_type = "NoSuchOp"
        return proto

    done = parity(_config(tmp_path, model, data, measures=("entropy",)),
                  variants={"refuses": refuses, "broken": broken, "int8-dynamic":
                            int8_dynamic})
    refused = _row(done.parity, "refuses", "ssim")
    assert refused["status"] == "failed: cannot build it: ValueError: no quantised kernel for Foo"
    assert refused["value"] is None
    assert _row(done.parity, "broken", "ssim")["status"].startswith(
        "failed: ") and "ONNX Runtime cannot load" in _row(done.parity, "broken", "ssim")["status"]
    assert _row(done.parity, "int8-dynamic", "ssim")["status"] == "ok"
    assert "Failed:\n- refuses: cannot build it" in done.text
    # the failed variants are in the scores too, and fail a gate on them
    scores = pl.read_parquet(tmp_path / "out" / "scores.parquet")
    failed = scores.filter(pl.col("model") == "cnn@refuses")
    assert set(failed["measure"]) == {"entropy", "parity"}
    assert failed["value"].null_count() == len(failed)
    rules = tmp_path / "gate.toml"
    rules.write_text('rules = ["parity.ssim >= 0.5", "parity.agreement >= 0.99"]\n')
    res = CliRunner().invoke(cli, ["gate", str(tmp_path / "out"), "--rules", str(rules)])
    assert res.exit_code == 1, res.output
    assert "SKIP  cnn " in res.output and "FAIL  cnn@refuses" in res.output
    assert "PASS  cnn@int8-dynamic" in res.output


def test_the_model_is_only_read_and_variants_are_written_only_when_asked(tmp_path, study,
                                                                         monkeypatch):
    model, data = study
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before, listing = _sha(model), sorted(model.parent.iterdir())
    parity(_config(tmp_path, model, data))
    assert _sha(model) == before and sorted(model.parent.iterdir()) == listing
    assert list(scratch.iterdir()) == []  # the quantisers' scratch folders are gone
    assert not list(tmp_path.rglob("*@*.onnx"))

    saved = tmp_path / "variants"
    done = parity(_config(tmp_path, model, data), variants=("fp16", "int8-dynamic"),
                  save_variants=saved)
    assert sorted(p.name for p in saved.iterdir()) == ["cnn@fp16.onnx", "cnn@int8-dynamic.onnx"]
    assert _sha(model) == before
    # a saved variant is the one scored: its maps are found in the parity run's cache
    cache = SalienceCache(tmp_path / "cache")
    try:
        again = evaluate([saved / "cnn@fp16.onnx"], np.load(data)["images"],
                         measures="entropy", cache=cache)
    finally:
        cache.close()
    sha = done.scores.filter(pl.col("model") == "cnn@fp16")["model_sha256"][0]
    assert again["model_sha256"][0] == sha == _sha(saved / "cnn@fp16.onnx")
    assert OnnxClassifier(saved / "cnn@fp16.onnx").classes == ("face", "other")


def test_parity_costs_the_maps_it_needs_and_shares_them_with_the_cache(tmp_path, study):
    model, data = study
    config = _config(tmp_path, model, data)
    evaluate([model], np.load(data)["images"], measures="entropy",
             cache=(cache := SalienceCache(tmp_path / "cache")))
    cache.close()
    per_map = 1 + 7 * 7
    done = parity(config, variants=("fp16", "int8-dynamic"))
    # the model's clean maps came from the run above: only the variants' were computed
    assert done.info["computed_passes"] == 2 * N_IMAGES * per_map
    assert done.info["forward_passes"] == 3 * N_IMAGES * per_map
    again = parity(config, variants=("fp16", "int8-dynamic"))
    assert again.info["computed_passes"] == 0
    assert again.parity.equals(done.parity)


def test_measures_are_compared_with_paired_tests(tmp_path, study):
    model, data = study
    done = parity(_config(tmp_path, model, data, measures=("entropy", "transforms",
                                                             "agreement")),
                  variants={"planted": flip_sign})
    stats = done.parity["statistic"].to_list()
    assert stats == ["agreement", "score_change", "score_shift", "ssim", "lost_maps",
                     "entropy_diff", "transforms_diff", "agreement_diff"]
    per_image = pl.read_parquet(tmp_path / "out" / "per_image.parquet")
    keys = per_image["image"].unique(maintain_order=True).to_list()

    def column(name):
        rows = per_image.filter((pl.col("model") == name) & (pl.col("measure") == "entropy"))
        found = dict(zip(rows["image"], rows["value"], strict=True))
        return np.array([np.nan if found[k] is None else found[k] for k in keys])

    expected = paired(column("cnn@planted") - column("cnn"), Bootstrap(0, keys))
    row = _row(done.parity, "planted", "entropy_diff")
    assert row["value"] == pytest.approx(expected.diff[0])
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(
        (expected.ci_low[0], expected.ci_high[0]))
    assert row["p_value"] == pytest.approx(expected.p_value[0])
    assert set(done.scores["variant"]) == {"original", "planted"}
    # a measure named like a drift statistic keeps its own row
    assert _row(done.parity, "planted", "agreement")["p_value"] is None
    assert _row(done.parity, "planted", "agreement_diff")["n"] < N_IMAGES  # masked images
    assert "| agreement Δ " in done.text


def test_providers_become_variants_and_a_missing_one_fails_alone(tmp_path, study):
    model, data = study
    done = parity(_config(tmp_path, model, data), variants=("fp16",), providers=("cpu", "cuda"))
    cuda = _row(done.parity, "cuda", "ssim")
    if cuda["status"] == "ok":  # a machine with a GPU
        assert cuda["provider"].startswith("CUDAExecutionProvider")
    else:
        assert "CUDAExecutionProvider is not available here" in cuda["status"]
        assert _row(done.parity, "fp16", "ssim")["status"] == "ok"
        # with nothing else to compare, nothing was compared: one line, not a table
        with pytest.raises(HarnessError, match="every comparison failed, e.g. cnn@cuda: "
                                               "CUDAExecutionProvider is not available"):
            parity(_config(tmp_path, model, data), variants=(), providers=("cpu", "cuda"))
    # pinned to its provider, the model does not share maps with an unpinned run
    unpinned = parity(build_config(models=(model,), data=data, out=tmp_path / "o2",
                                   cache=tmp_path / "cache"), variants=("fp16",))
    assert unpinned.info["computed_passes"] == 2 * N_IMAGES * (1 + 7 * 7)


@pytest.mark.parametrize("args, message", [
    (["--variants", "fp8"], "unknown variant 'fp8'"),
    (["--providers", "cdua"], "unknown execution provider 'cdua'; did you mean 'cuda'?"),
    (["--measures", "stability"], "stability compares training runs of a family"),
    (["--grid", "4"], "grid 4 is too coarse for parity"),
    (["no-such-model"], "'no-such-model' is neither a model file nor a model of the zoo"),
])
def test_a_users_mistake_is_one_line(tmp_path, study, args, message):
    model, data = study
    first = [] if args == ["no-such-model"] else [str(model)]
    res = CliRunner().invoke(cli, ["parity", *first, "--data", str(data), "--out",
                                   str(tmp_path / "o"), *args])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert "Traceback" not in res.output


def test_a_reference_provider_that_is_missing_is_a_usage_error(tmp_path, study):
    from harness.model.session import nvidia_gpu_visible

    model, data = study
    if nvidia_gpu_visible():
        pytest.skip("this machine has a GPU")
    with pytest.raises(HarnessError, match="--providers: cuda .* is not available here"):
        parity(_config(tmp_path, model, data), providers=("cuda", "cpu"))


def test_the_command_prints_the_table_writes_the_folder_and_the_report(tmp_path, study):
    model, data = study
    out = tmp_path / "o"
    res = CliRunner().invoke(cli, ["parity", str(model), "--data", str(data), "--out",
                                   str(out), "--variants", "fp16,int8-static", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("## cnn\n")
    assert "| fp16 " in res.stdout and "| int8-static " in res.stdout
    assert (out / "parity.md").read_text() == res.stdout
    info = json.loads((out / "run.json").read_text())
    assert info["variants"] == ["fp16", "int8-static"] and info["failed"] == {}
    res = CliRunner().invoke(cli, ["report", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    assert "Deployment parity" in page and "int8-static" in page


def test_a_model_that_cannot_be_opened_fails_with_its_variants_and_alone_is_an_error(
        tmp_path, study):
    model, data = study
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    done = parity(build_config(models=(model, junk), data=data, out=tmp_path / "o",
                               cache=tmp_path / "cache"), variants=("fp16",))
    failed = _row(done.parity.filter(pl.col("model") == "junk"), "fp16", "ssim")
    assert failed["status"].startswith("failed: the model itself failed: ")
    assert "not an ONNX model" in failed["status"]
    assert _row(done.parity.filter(pl.col("model") == "cnn"), "fp16", "ssim")["status"] == "ok"
    assert done.scores.filter(pl.col("model") == "junk@fp16")["status"][0].startswith("failed: ")
    res = CliRunner().invoke(cli, ["parity", str(junk), "--data", str(data), "--out",
                                   str(tmp_path / "o2")])
    assert res.exit_code == 2 and "error: " in res.output and "not an ONNX model" in res.output


def test_grad_cam_reads_a_half_precision_head_and_refuses_a_quantised_one(tmp_path, study):
    model, data = study
    done = parity(build_config(models=(model,), data=data, out=tmp_path / "o",
                               cache=tmp_path / "cache", **{"salience.method": "cam"}))
    assert _row(done.parity, "fp16", "ssim")["value"] > 0.99
    assert _row(done.parity, "fp16", "agreement")["value"] == 1.0
    for variant, op in (("int8-dynamic", "DynamicQuantizeLinear"),
                        ("int8-static", "DequantizeLinear")):
        status = _row(done.parity, variant, "ssim")["status"]
        assert status.startswith("failed: ") and f"is a {op}" in status, status


def test_the_help_lists_the_variants_without_loading_onnx_runtime():
    from harness.cli.parity import VARIANT_NAMES
    from harness.model.variants import BUILDERS

    assert VARIANT_NAMES == tuple(BUILDERS)
    text = " ".join(CliRunner().invoke(cli, ["parity", "--help"]).output.split())
    assert "fp16, int8-dynamic, int8-static" in text and "parity.ssim >= 0.9" in text


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_saved_variants_keep_to_their_folder_and_never_replace_a_users_file(tmp_path, study):
    """A model named ../../escape/evil is saved under a safe name inside the folder; a
    different NAME@fp16.onnx of the user's beside the model is refused, then replaced
    only with force; an identical one is left as it is."""
    model, data = study
    zoo = tmp_path / "zoo.toml"
    zoo.write_text(f'data = "{data}"\n[[model]]\npath = "{model}"\nname = "../../escape/evil"\n')
    saved = tmp_path / "deep" / "er" / "saved"
    config = build_config(zoo=(zoo,), out=tmp_path / "out", cache=tmp_path / "cache")
    parity(config, variants=("fp16",), save_variants=saved)
    assert [p.name for p in saved.iterdir()] == ["_.._escape_evil@fp16.onnx"]
    assert not (tmp_path / "escape").exists() and not (tmp_path / "deep" / "escape").exists()

    own = model.parent / "cnn@fp16.onnx"
    own.write_bytes(b"the user's own fp16 build")
    before = _snapshot(tmp_path / "models")
    with pytest.raises(HarnessError, match=r"cnn@fp16.onnx: exists and the harness did not "
                                           "write it.*--force"):
        parity(_config(tmp_path, model, data), variants=("fp16",), save_variants=model.parent)
    assert _snapshot(tmp_path / "models") == before
    parity(_config(tmp_path, model, data), variants=("fp16",), save_variants=model.parent,
           force=True)
    replaced = own.read_bytes()
    assert replaced != b"the user's own fp16 build"
    parity(_config(tmp_path, model, data), variants=("fp16",), save_variants=model.parent)
    assert own.read_bytes() == replaced  # the same variant again: nothing to replace


def _confident(path, logits_in_graph=True):
    """A softmax classifier of 16 px images, certain of every image (p = 1 in float32):
    logits 40 apart. Without ``logits_in_graph`` its probabilities are exp / sum, not a
    Softmax, so no tensor of the graph is known to hold its logits."""
    from onnx import TensorProto, helper

    from tests.onnx_models import save

    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(size=(3 * 16 * 16, 2)).astype(np.float32) * 0.01, "w")
    b = numpy_helper.from_array(np.array([20.0, -20.0], np.float32), "b")
    nodes = [helper.make_node("Flatten", ["image"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["z"])]
    if logits_in_graph:
        nodes.append(helper.make_node("Softmax", ["z"], ["p"], axis=1))
    else:
        nodes += [helper.make_node("Exp", ["z"], ["e"]),
                  helper.make_node("ReduceSum", ["e", "ax"], ["s"], keepdims=1),
                  helper.make_node("Div", ["e", "s"], ["p"])]
    graph = helper.make_graph(
        nodes, "confident", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                           ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 2])],
        initializer=[w, b, numpy_helper.from_array(np.array([1], np.int64), "ax")])
    return save(graph, path, {"harness.output": "probabilities"})


@pytest.mark.parametrize("logits_in_graph", [True, False])
def test_a_saturated_model_is_compared_on_logits_or_said_not_measurable(tmp_path,
                                                                        logits_in_graph):
    """Both sides at the probability clip read log-odds 16.12 and "no change"; on the
    logits before the softmax FP16's real shift shows; without them it is not
    measurable, and said so."""
    model = _confident(tmp_path / "confident.onnx", logits_in_graph)
    data = tmp_path / "images.npz"
    images = np.random.default_rng(4).integers(0, 255, (12, 16, 16, 3), np.uint8)
    np.savez(data, images=images)
    done = parity(build_config(models=(model,), data=data, out=tmp_path / "out",
                               cache=tmp_path / "cache"), variants=("fp16",))
    change = _row(done.parity, "fp16", "score_change")
    assert change["saturated"] == 12
    if logits_in_graph:
        import onnxruntime as ort

        def logit_gap(data_bytes, kind):
            import onnx
            from onnx import helper
            proto = onnx.load_from_string(data_bytes)
            proto.graph.output.append(helper.make_tensor_value_info("z", kind, None))
            z = ort.InferenceSession(proto.SerializeToString(), providers=[
                "CPUExecutionProvider"]).run(["z"], {"image": images.transpose(
                    0, 3, 1, 2).astype(np.float32) / 255})[0].astype(np.float64)
            return z[:, 0] - z[:, 1]
        from onnx import TensorProto

        original = logit_gap(model.read_bytes(), TensorProto.FLOAT)
        half = logit_gap(fp16(onnx_load(model), None).SerializeToString(), TensorProto.FLOAT16)
        assert change["value"] == pytest.approx(np.abs(half - original).mean(), rel=1e-6)
        assert change["value"] > 0 and "read from the logits" in change["note"]
    else:
        assert change["value"] is None and "not measurable" in change["note"]
        assert "saturated: not measurable" in done.text


def onnx_load(path):
    import onnx

    return onnx.load(str(path))


def test_nothing_to_compare_and_nothing_compared_are_errors(tmp_path, study):
    """--variants "" without a second provider compares nothing; a --layer that fails
    for every map leaves every comparison failed: each is one line, exit 2."""
    model, data = study
    before = _snapshot(tmp_path / "models")
    with pytest.raises(HarnessError, match="nothing to compare: name variants"):
        parity(_config(tmp_path, model, data), variants=())
    res = CliRunner().invoke(cli, ["parity", str(model), "--data", str(data), "--variants",
                                   "fp16", "--method", "cam", "--layer", "no_such_tensor",
                                   "--out", str(tmp_path / "out"), "--cache",
                                   str(tmp_path / "cache"), "--quiet"])
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "every comparison failed" in lines[0]
    assert "no tensor named 'no_such_tensor'" in lines[0], res.output
    assert _snapshot(tmp_path / "models") == before
