"""Fuzzed text and array inputs (labels.csv, .npz, run.toml, gate.toml, zoo manifests):
each is used or refused in one error line, never a traceback."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from harness.cli import cli
from tests.onnx_models import linear_model

SIZE = 8
FUZZ = settings(max_examples=15, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
# Values of the wrong kind, out of range, huge, or hostile, as TOML writes them.
VALUES = st.sampled_from([
    "5", "true", '"abc"', "1e300", "inf", "nan", "-1", "0", "0.5", "[]", "[true, 0.5]",
    '["x"]', "[5]", "{ a = 1 }", "18446744073709551616", '"' + "x" * 300 + '"', '"bgr"',
    '"PROBS"', '"../../etc/passwd"', '"\\u0000"', '"entropy <= 1.2.3"', '"rise"', '"cam"'])


def assert_clean(res):
    """Used (exit 0 or a gate's 1) or refused in exactly one error line."""
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    assert res.exit_code in (0, 1, 2), res.output
    if res.exit_code == 2:
        assert len([x for x in res.output.splitlines() if x.startswith("error:")]) == 1, \
            res.output


@pytest.fixture
def sandbox(tmp_path):
    rng = np.random.default_rng(0)
    model = linear_model(tmp_path / "model.onnx", rng.normal(size=(2, SIZE, SIZE, 3)))
    images = tmp_path / "images"
    for i, label in enumerate(("face", "other", "face")):
        (images / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)).save(
            images / label / f"{i}.png")
    return tmp_path, model, images


def toml_doc(keys, values) -> str:
    return "".join(f"{k} = {v}\n" for k, v in zip(keys, values, strict=False))


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzzed_labels_csv(sandbox, text):
    tmp, model, images = sandbox
    # lone surrogates become bytes that are not UTF-8, which a file may hold too
    (images / "labels.csv").write_bytes(text.encode("utf-8", "surrogatepass"))
    assert_clean(CliRunner().invoke(cli, ["salience", str(model), str(images), "--grid", "4",
                                          "--out", str(tmp / "out" / "m.npz")]))


ARRAYS = st.sampled_from([
    np.zeros((3, SIZE, SIZE, 3), np.uint8), np.zeros((3, SIZE, SIZE), np.uint8),
    np.full((3, SIZE, SIZE, 3), 0.5, np.float32), np.full((3, SIZE, SIZE, 3), np.nan),
    np.zeros((0, SIZE, SIZE, 3), np.uint8), np.zeros((3, 2), np.int64), np.array(7),
    np.array([0, 1, 0]), np.array([0, 10**12, 1]), np.array([-1, 0, 1]),
    np.array(["face", "other", "face"]), np.array([b"\xff", b"", b"x"]),
    np.zeros((3, SIZE, SIZE), bool), np.array(["test", "test", "train"]),
    np.zeros((3, 1, 1, 3), np.uint8), np.array([0.5, 1.5, np.inf])])


@FUZZ
@given(chosen=st.dictionaries(st.sampled_from(["images", "labels", "names", "label_names",
                                               "masks", "split"]), ARRAYS, max_size=6))
def test_fuzzed_npz(sandbox, chosen):
    tmp, model, _ = sandbox
    data = tmp / "data.npz"
    np.savez(data, **chosen)
    assert_clean(CliRunner().invoke(cli, ["salience", str(model), str(data), "--grid", "4",
                                          "--out", str(tmp / "out" / "m.npz")]))


RUN_KEYS = ["zoo", "models", "data", "split", "out_of_set", "seed", "noise_levels",
            "model_timeout", "shard_size", "workers", "scheduler", "cache", "measures",
            "limit", "sed"]
SALIENCE_KEYS = ["method", "grid", "window", "baseline", "score", "n_masks", "cell",
                 "p_keep", "seed", "batch_size"]


@FUZZ
@given(keys=st.lists(st.sampled_from(RUN_KEYS), max_size=3, unique=True),
       values=st.lists(VALUES, min_size=3, max_size=3),
       salience=st.lists(st.sampled_from(SALIENCE_KEYS), max_size=2, unique=True),
       salience_values=st.lists(VALUES, min_size=2, max_size=2))
def test_fuzzed_run_toml(sandbox, keys, values, salience, salience_values):
    tmp, model, images = sandbox
    config = tmp / "run.toml"
    config.write_text(toml_doc(keys, values) + "[salience]\n"
                      + toml_doc(salience, salience_values))
    assert_clean(CliRunner().invoke(cli, [
        "run", "--config", str(config), "--model", str(model), "--data", str(images),
        "--measures", "entropy", "--limit", "2", "--n-masks", "8",
        "--out", str(tmp / "out"), "--quiet"]))


@pytest.fixture
def finished(sandbox):
    tmp, model, images = sandbox
    res = CliRunner().invoke(cli, ["run", "--model", str(model), "--data", str(images),
                                   "--grid", "4", "--measures", "entropy", "--out",
                                   str(tmp / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    return tmp / "run"


@FUZZ
@given(keys=st.lists(st.sampled_from(["rules", "applies_to", "no_regression", "rule"]),
                     min_size=1, max_size=3, unique=True),
       values=st.lists(st.one_of(VALUES, st.text(max_size=40).map(lambda t: f"[{t!r}]")),
                       min_size=3, max_size=3),
       baseline=st.booleans())
def test_fuzzed_gate_toml(finished, keys, values, baseline):
    rules = finished.parent / "gate.toml"
    rules.write_text(toml_doc(keys, values))
    extra = ["--baseline", str(finished)] if baseline else []
    assert_clean(CliRunner().invoke(cli, ["gate", str(finished), "--rules", str(rules),
                                          *extra]))


MODEL_KEYS = ["name", "family", "seed", "test_accuracy", "input_size", "mean", "std",
              "layout", "color", "classes", "output", "output_name"]


@FUZZ
@given(keys=st.lists(st.sampled_from(MODEL_KEYS), max_size=3, unique=True),
       values=st.lists(VALUES, min_size=3, max_size=3),
       top=st.lists(st.sampled_from(["data", "split", "out_of_set"]), max_size=1),
       top_value=VALUES, valid_path=st.booleans())
def test_fuzzed_manifest(sandbox, keys, values, top, top_value, valid_path):
    tmp, _, _ = sandbox
    manifest = tmp / "zoo.toml"
    path = '"model.onnx"' if valid_path else values[0]
    manifest.write_text(toml_doc(top, [top_value]) + f"[[model]]\npath = {path}\n"
                        + toml_doc(keys, values))
    assert_clean(CliRunner().invoke(cli, ["zoo", "list", str(manifest)]))
