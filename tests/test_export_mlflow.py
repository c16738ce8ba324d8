"""``harness export --mlflow``: a CAM run of the built-in zoo logged to a real MLflow
tracking store (SQLite, in a temporary folder) and read back with MLflow's own client."""

import polars as pl
import pytest
from click.testing import CliRunner

from harness.cli import cli

mlflow = pytest.importorskip("mlflow", reason="the MLflow export needs mlflow (the mlflow extra)")


def test_a_zoo_cam_run_logged_to_mlflow_reads_back_as_scores_parquet(tmp_path):
    out = tmp_path / "zoo-cam"
    runner = CliRunner()
    res = runner.invoke(cli, ["run", "--method", "cam", "--limit", "20", "--out", str(out),
                              "--quiet"])
    assert res.exit_code == 0, res.output
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    res = runner.invoke(cli, ["export", str(out), "--mlflow", "--tracking-uri", uri,
                              "--experiment", "zoo"])
    assert res.exit_code == 0, res.output
    run_id = res.output.strip().split()[-1]

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    logged = run.data.metrics
    scores = pl.read_parquet(out / "scores.parquet")
    headlines = scores.filter((pl.col("statistic") == "headline") & pl.col("value").is_not_null())
    assert headlines.height >= 15 * 7
    for row in headlines.iter_rows(named=True):
        name = f"{row['model']}/{row['measure']}"
        assert logged[name] == pytest.approx(row["value"], rel=1e-12), name
        if row["ci_low"] is not None:
            assert logged[f"{name}.ci_low"] == pytest.approx(row["ci_low"], rel=1e-12)
            assert logged[f"{name}.ci_high"] == pytest.approx(row["ci_high"], rel=1e-12)
    ranks = scores.filter(pl.col("statistic") == "rank")
    row = ranks.row(0, named=True)
    assert logged[f"{row['model']}/{row['measure']}.rank"] == row["value"]
    assert run.data.params["salience.method"] == "cam" and run.data.params["images"] == "20"
    assert run.data.tags["harness.pick"] == __import__("json").loads(
        (out / "run.json").read_text())["decision"]["pick"]
    artefacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"leaderboard.md", "scores.parquet", "per_image.parquet", "run.json"} <= artefacts
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the cwd
    # a second export of the same run is a second MLflow run in the same experiment
    again = runner.invoke(cli, ["export", str(out), "--mlflow", "--tracking-uri", uri,
                                "--experiment", "zoo"])
    assert again.exit_code == 0 and again.output.strip().split()[-1] != run_id
    assert len(client.search_runs([run.info.experiment_id])) == 2


def test_export_says_what_it_needs():
    res = CliRunner().invoke(cli, ["export", ".", "--mlflow", "--model-card", "a"])
    assert res.exit_code == 2 and "--mlflow or --model-card MODEL (one)" in res.output
