"""docs/schemas/ describes what the harness writes for machines: every row of
scores.parquet, the leaderboard JSON (`harness run --json`, `harness leaderboard
--format json`) and the decision (`harness pick --json`, run.json's "decision"). A run is
checked against them, and each schema is shown to refuse a wrong value."""

import json
from pathlib import Path

import polars as pl
import pytest

from tests.test_run import FAST, finished, invoke, tiny_zoo  # noqa: F401 (fixtures)

jsonschema = pytest.importorskip("jsonschema", reason="checking the schemas needs jsonschema")
SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "schemas"


def validator(name):
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(name, instance):
    return [e.message for e in validator(name).iter_errors(instance)]


def test_a_run_writes_what_the_schemas_describe(tiny_zoo, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", FAST, "--json")
    assert res.exit_code == 0, res.output
    rows = pl.read_parquet(out / "scores.parquet").to_dicts()
    assert rows and not [e for row in rows for e in errors("scores-row", row)]
    assert not errors("leaderboard", json.loads(res.output))
    board = invoke("leaderboard", out, "--format", "json").output
    assert not errors("leaderboard", json.loads(board))
    assert not errors("decision", json.loads(invoke("pick", out, "--json").output))
    assert not errors("decision", json.loads((out / "run.json").read_text())["decision"])
    constrained = invoke("pick", out, "--json", "--constraint", "entropy <= -1").output
    decision = json.loads(constrained)  # every model excluded: no pick, and why
    assert decision["pick"] is None and not errors("decision", decision)


def test_the_schemas_refuse_what_the_harness_never_writes(finished):  # noqa: F811
    row = pl.read_parquet(finished / "scores.parquet").row(0, named=True)
    assert errors("scores-row", {**row, "value": "0.5"})  # a number as text
    assert errors("scores-row", {**row, "status": "fine"})
    assert errors("scores-row", {k: v for k, v in row.items() if k != "seed"})
    board = json.loads(invoke("leaderboard", finished, "--format", "json").output)
    assert errors("leaderboard", [{**board[0], "entropy_rank": 1.5}])
    assert errors("leaderboard", [{**board[0], "entropy": "low"}])
    decision = json.loads(invoke("pick", finished, "--json").output)
    assert errors("decision", {**decision, "p_best": 1.5})
