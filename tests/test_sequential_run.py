"""``harness run --until-decided`` on the built-in zoo: a regressed checkpoint fails
after a third of the images, an unchanged one passes, both as the full run's gate
decides, and the run folder says what the looks cost."""

import json
import re

import pytest

from harness.inputs.zoo import builtin_manifest
from tests.test_run import invoke

MEASURES = "stability,transforms,out_of_set"


def _manifest(tmp_path, name, swap=None):
    """The built-in zoo's manifest with absolute paths; ``swap`` puts another model's
    weights under a model's name (a retrained checkpoint)."""
    root = builtin_manifest().parent
    text = builtin_manifest().read_text().replace('"./', f'"{root}/')
    text = re.sub(r'^path = "', f'path = "{root}/', text, flags=re.M)
    if swap:
        old, new = swap
        text = text.replace(f'/{old}.onnx"', f'/{new}.onnx"')
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """Main's run: the zoo with CAM maps, a few measures."""
    tmp = tmp_path_factory.mktemp("main")
    res = invoke("run", "--method", "cam", "--measures", MEASURES, "--out", tmp / "main",
                 "--cache", tmp / "cache", "--quiet")
    assert res.exit_code == 0, res.output
    gate = tmp / "gate.toml"
    gate.write_text("no_regression = true\ntolerance = 0.01\n")
    return tmp / "main", gate


def _gate_lines(output):
    return {tuple(line.split()[:3]) for line in output.splitlines()
            if line.startswith(("PASS", "FAIL", "SKIP"))}


@pytest.mark.slow
@pytest.mark.parametrize("case,swap,code", [
    ("regressed", ("faces-xent-1", "faces-guided-1"), 1),
    ("unchanged", None, 0)])
def test_a_checkpoint_is_decided_early_as_the_full_gate_decides(main_run, tmp_path, case,
                                                                swap, code):
    main, gate = main_run
    zoo = _manifest(tmp_path, case, swap)
    # a cache of the checkpoint's own: the looks and then the full run share it
    common = ("--zoo", zoo, "--method", "cam", "--measures", MEASURES, "--cache",
              tmp_path / "cache")
    res = invoke("run", *common, "--until-decided", "--rules", gate, "--baseline-run", main,
                 "--out", tmp_path / "seq")
    assert res.exit_code == code, res.output
    record = json.loads((tmp_path / "seq" / "run.json").read_text())["sequential"]
    assert record["images_used"] < record["images_total"] == 60
    assert record["passes_used"] <= 0.35 * record["passes_full"]
    assert record["stopped"] == ("failed" if code else "decided")
    assert invoke("report", tmp_path / "seq").exit_code == 0
    page = (tmp_path / "seq" / "report.html").read_text()
    assert "Stopped when decided" in page and f"of 60 images (look {len(record['looks'])}" \
        in page
    # the full run's gate gives the same verdict, and fails whatever the looks failed
    full = invoke("run", *common, "--out", tmp_path / "full", "--quiet")
    assert full.exit_code == 0, full.output
    checked = invoke("gate", tmp_path / "full", "--rules", gate, "--baseline", main)
    assert checked.exit_code == code, checked.output
    failed_early = {line[1:] for line in _gate_lines(res.output) if line[0] == "FAIL"}
    failed_full = {line[1:] for line in _gate_lines(checked.output) if line[0] == "FAIL"}
    assert failed_early <= failed_full and bool(failed_early) == bool(code)
    # the looks computed what the images they used cost, the full run only the rest
    info = json.loads((tmp_path / "full" / "run.json").read_text())
    assert record["passes_computed"] == record["passes_used"]
    assert info["computed_passes"] == record["passes_full"] - record["passes_used"]


def test_until_decided_mistakes_are_one_line(main_run, tmp_path):
    main, _ = main_run
    best = tmp_path / "best.toml"
    best.write_text('rules = ["stability >= 0.1"]\napplies_to = "best"\n')
    for args, message in [
        (("--rules", best), 'applies_to = "best"'),
        (("--baseline-run", main), "baseline_run needs rules"),
        (("--look", 0), "look must be an integer >= 1"),
    ]:
        res = invoke("run", "--method", "cam", "--measures", "stability", "--limit", 12,
                     "--until-decided", *args, "--out", tmp_path / "x", "--quiet")
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert res.exit_code == 2 and message in lines[-1], res.output
    res = invoke("run", "--rules", best, "--out", tmp_path / "y")
    assert res.exit_code == 2 and "belong to --until-decided" in res.output, res.output


def test_regressions_the_baseline_cannot_compare_are_asked_as_the_fixed_gate_asks(cnn_zoo,
                                                                                 tmp_path):
    """A model the baseline lacks fails at once, once per measure, with no second line
    for the same question; a measure neither run has for a model (stability of a model
    without a family) is not a question, as in harness gate."""
    from tests.onnx_models import cnn_model

    common = ("--zoo", cnn_zoo, "--measures", "entropy,stability", "--quiet")
    res = invoke("run", *common, "--out", tmp_path / "main", "--cache", tmp_path / "cache")
    assert res.exit_code == 0, res.output
    gate = tmp_path / "gate.toml"
    gate.write_text("no_regression = true\n")
    extra = cnn_model(tmp_path / "newcomer.onnx", size=32, widths=(8, 8), seed=9,
                      metadata={"harness.classes": "face,other"})
    res = invoke("run", *common, "--model", extra, "--until-decided", "--look", 4,
                 "--rules", gate, "--baseline-run", tmp_path / "main", "--out",
                 tmp_path / "seq", "--cache", tmp_path / "cache")
    assert res.exit_code == 1, res.output
    lines = [line.split() for line in res.output.splitlines()
             if line.startswith(("PASS", "FAIL", "SKIP"))]
    asked = [(x[1], x[2]) for x in lines]
    assert len(asked) == len(set(asked)), res.output  # one line per question
    assert [(x[0], x[2]) for x in lines if x[1] == "newcomer"] == [
        ("FAIL", "entropy"), ("FAIL", "stability"), ("FAIL", "accuracy")]
    assert ("solo", "stability") not in asked


def test_without_rules_a_one_measure_objective_asks_the_leader_against_the_rest(cnn_zoo,
                                                                               tmp_path):
    """No gate: with --objective entropy the questions are the entropy leader of the
    last look against each other model (asked afresh at each look); with the default
    objective, every pair of models on every measure."""
    res = invoke("run", "--zoo", cnn_zoo, "--measures", "entropy,transforms", "--quiet",
                 "--until-decided", "--look", 4, "--objective", "entropy", "--out",
                 tmp_path / "leader")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "leader" / "run.json").read_text())["sequential"]
    states = record["states"]
    assert len(states) == 2 and len({s["model"] for s in states}) == 1
    assert {s["measure"] for s in states} == {"entropy"}
    assert all(s["look"] == len(record["looks"]) for s in states)
    res = invoke("run", "--zoo", cnn_zoo, "--measures", "entropy,transforms", "--quiet",
                 "--until-decided", "--look", 4, "--out", tmp_path / "pairs")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "pairs" / "run.json").read_text())["sequential"]
    # 3 pairs of models on entropy and transforms, and accuracy (the zoo is labelled)
    assert len(record["states"]) == 3 * 3
