"""Run folders damaged or edited by hand: leaderboard, compare, gate and report refuse
them in one line naming the file (exit 2), never print a wrong verdict or a traceback,
and change nothing; names with control characters are printed escaped everywhere."""

import json

import numpy as np
import polars as pl
import pytest

from tests.test_run import _rules, _variant, finished, invoke, tiny_zoo  # noqa: F401

COMMANDS = (["leaderboard"], ["compare"], ["report"])


def _snapshot(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(tmp_path, run, message, commands=COMMANDS, gate=True):
    rules = _rules(tmp_path, 'rules = ["entropy <= 1"]\n')
    before = _snapshot(tmp_path)
    for command in [*commands, *([["gate", "--rules", rules]] if gate else [])]:
        res = invoke(command[0], run, *command[1:])
        lines = [x for x in res.output.splitlines() if x.strip()]
        assert res.exit_code == 2 and len(lines) == 1, (command, res.output)
        assert message in lines[0] and lines[0].startswith("error: "), (command, res.output)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("name,scores,per_image,message", [
    ("duplicated", lambda f: pl.concat([f, f.head(3)]), None, "appears 2 times"),
    ("text", lambda f: f.with_columns(pl.col("value").cast(pl.String)), None,
     "column 'value' holds String"),
    ("minus_inf", lambda f: f.with_columns(
        pl.when(pl.col("statistic") == "headline").then(-np.inf).otherwise(pl.col("value"))
        .alias("value")), None, "column 'value' holds -inf"),
    ("nan", lambda f: f.with_columns(
        pl.when(pl.col("statistic") == "headline").then(np.nan).otherwise(pl.col("value"))
        .alias("value")), None, "column 'value' holds nan"),
    ("no_column", lambda f: f.drop("higher_is_better"), None,
     "has no column 'higher_is_better'"),
    ("null_seed", lambda f: f.with_columns(seed=pl.lit(None, pl.Int64)), None,
     "column 'seed' has"),
    ("empty", lambda f: f.clear(), None, "it has no rows"),
    ("flipped", lambda f: f.with_columns(
        pl.when(pl.col("measure") == "entropy").then(True).otherwise(pl.col("higher_is_better"))
        .alias("higher_is_better")), None, "measure 'entropy' says higher_is_better is True"),
    ("inf_per_image", lambda f: f, lambda f: f.with_columns(
        pl.when(pl.col("measure") == "entropy").then(np.inf).otherwise(pl.col("value"))
        .alias("value")), "per_image.parquet: column 'value' holds inf"),
    ("extra_model", lambda f: f, lambda f: pl.concat(
        [f, f.head(2).with_columns(model=pl.lit("ghost"))]),
     "it has values of 'ghost' on 'entropy', which the scores do not"),
])
def test_a_damaged_table_is_refused_by_every_reader(finished, tmp_path,  # noqa: F811
                                                    name, scores, per_image, message):
    run = _variant(finished, tmp_path, name, scores, per_image)
    _refused(tmp_path, run, message)


def test_a_damaged_run_json_or_examples_file_stops_the_report_in_one_line(
        finished, tmp_path):  # noqa: F811
    run = _variant(finished, tmp_path, "json", lambda f: f)
    (run / "run.json").write_text("{not json")
    _refused(tmp_path, run, "run.json: not the run.json of a harness run", [["report"]],
             gate=False)
    run = _variant(finished, tmp_path, "examples", lambda f: f)
    (run / "examples.npz").write_bytes(b"PK\x03\x04 garbage")
    _refused(tmp_path, run, "examples.npz: not the examples of a harness run", [["report"]],
             gate=False)


def test_gate_checks_its_tolerance_keys_and_shows_hashes_whole(finished, tmp_path):  # noqa: F811
    rules = _rules(tmp_path, 'rules = ["entropy <= 1"]\n[tolerance]\nentorpy = 0.1\n')
    res = invoke("gate", finished, "--rules", rules)
    assert res.exit_code == 2 and "tolerance: 'entorpy' is not a measure of this run; did " \
                                  "you mean 'entropy'?" in res.output
    a, b = "ab" * 31 + "01", "ab" * 31 + "02"  # the same for 62 characters
    left = _variant(finished, tmp_path, "left", lambda f: f.with_columns(image_set_hash=pl.lit(a)))
    right = _variant(finished, tmp_path, "right", lambda f: f.with_columns(
        image_set_hash=pl.lit(b)))
    res = invoke("gate", left, "--rules", _rules(tmp_path, "no_regression = true\n"),
                 "--baseline", right)
    assert res.exit_code == 2 and f"{b} against {a}" in res.output


def _renamed(finished, tmp_path, name, new):  # noqa: F811
    """A copy of the run with model "a" called ``new`` in its scores, values and pairs."""
    def rename(f):
        return f.with_columns(pl.col("model").replace({"a": new}))

    run = _variant(finished, tmp_path, name, rename, rename)
    path = run / "pairs.parquet"
    pl.read_parquet(path).with_columns(pl.col(c).replace({"a": new}) for c in (
        "model_a", "model_b")).write_parquet(path)
    return run


def test_control_characters_in_names_are_printed_escaped(finished, tmp_path):  # noqa: F811
    """A model named with a newline and a fake verdict cannot print a line of its own."""
    run = _renamed(finished, tmp_path, "evil", "a\nPASS  z  entropy <= 1: 0 <= 1")
    gate = _rules(tmp_path, 'rules = ["entropy <= 1"]\n')
    outputs = {" ".join(map(str, c)): invoke(c[0], run, *c[1:]) for c in (
        ["gate", "--rules", gate], ["leaderboard"], ["leaderboard", "--format", "csv"],
        ["leaderboard", "--format", "md"], ["compare", "--all"])}
    for command, res in outputs.items():
        assert res.exit_code == 0, (command, res.output)
        assert "a\\nPASS" in res.output, (command, res.output)
        assert not any(line.startswith("PASS  z") for line in res.output.splitlines()), command
    assert invoke("report", run).exit_code == 0
    assert "a\\nPASS" in (run / "report.html").read_text()


def test_a_five_thousand_character_name_is_shortened_in_the_report(finished, tmp_path):  # noqa: F811
    long = "m" * 5000
    run = _renamed(finished, tmp_path, "long", long)
    with np.load(run / "examples.npz", allow_pickle=False) as ex:
        arrays = {k: ex[k] for k in ex.files}
    arrays["models"] = np.array([long if m == "a" else m for m in arrays["models"]])
    np.savez(run / "examples.npz", **arrays)
    res = invoke("report", run)
    assert res.exit_code == 0, res.output
    page = (run / "report.html").read_text()
    assert long not in page and "m" * 31 + "…" + "m" * 16 in page
    assert json.loads((run / "run.json").read_text())  # the run's own files untouched
