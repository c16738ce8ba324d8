"""``harness export``: a run's results as a Hugging Face model card's model-index block,
read back by a YAML parser and checked against ``scores.parquet``."""

import polars as pl
import pytest

from tests.test_run import finished, invoke, tiny_zoo  # noqa: F401 (fixtures)

yaml = pytest.importorskip("yaml", reason="reading the model card back needs PyYAML")


def test_a_model_card_carries_every_headline_with_its_interval_and_rank(finished, tmp_path):  # noqa: F811
    res = invoke("export", finished, "--model-card", "a")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("---\n") and res.output.endswith("---\n")
    card = yaml.safe_load(res.output.strip().strip("-"))
    (entry,) = card["model-index"]
    assert entry["name"] == "a"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-classification"
    dataset = result["dataset"]
    assert dataset["name"] == "data.npz [test]" and dataset["args"]["images"] == 6
    scores = pl.read_parquet(finished / "scores.parquet").filter(
        (pl.col("model") == "a") & (pl.col("statistic") == "headline")
        & pl.col("value").is_not_null())
    metrics = {m["type"]: m for m in result["metrics"]}
    assert set(metrics) == {f"harness/{m}" for m in scores["measure"]}
    for row in scores.iter_rows(named=True):
        metric = metrics[f"harness/{row['measure']}"]
        assert metric["value"] == pytest.approx(row["value"], rel=1e-12)
        assert metric["args"]["ci_low"] == pytest.approx(row["ci_low"], rel=1e-12)
        assert metric["args"]["better"] == ("higher" if row["higher_is_better"] else "lower")
    ranked = metrics["harness/entropy"]["args"]
    low, high = ranked["rank_set"]
    assert ranked["models"] == 3 and low <= ranked["rank"] <= high


def test_export_writes_a_new_file_only_and_names_a_missing_model(finished, tmp_path):  # noqa: F811
    card = tmp_path / "card.md"
    assert invoke("export", finished, "--model-card", "c", "--out", card).exit_code == 0
    assert card.read_text().startswith("---\nmodel-index:")
    again = invoke("export", finished, "--model-card", "c", "--out", card)
    assert again.exit_code == 2 and "exists; name a new file" in again.output
    missing = invoke("export", finished, "--model-card", "z")
    assert missing.exit_code == 2 and "no model 'z' in this run; it has: a, b, c" in missing.output
    nothing = invoke("export", finished)
    assert nothing.exit_code == 2 and "--model-card" in nothing.output


def test_export_refuses_an_option_of_the_other_export(finished, tmp_path):  # noqa: F811
    """An option the chosen export would ignore is refused before anything is written."""
    res = invoke("export", finished, "--mlflow", "--out", tmp_path / "runs.txt")
    assert res.exit_code == 2 and "--out is for --model-card" in res.output
    for extra in (["--tracking-uri", f"sqlite:///{tmp_path / 'x.db'}"],
                  ["--experiment", "mine"]):
        res = invoke("export", finished, "--model-card", "a", *extra)
        assert res.exit_code == 2 and "are for --mlflow" in res.output, extra
    assert not (tmp_path / "runs.txt").exists() and not (tmp_path / "x.db").exists()


def test_mlflow_metric_names_refuse_two_models_that_would_collide():
    """MLflow allows fewer characters in a name than a model's name may hold; two models
    that read the same there would overwrite each other's metrics, so the export refuses."""
    from harness.errors import HarnessError
    from harness.results.mlflow_export import metrics

    rows = pl.DataFrame({"model": ["a:b", "a?b"], "measure": ["entropy"] * 2,
                         "statistic": ["headline"] * 2, "value": [1.0, 2.0],
                         "ci_low": [0.5, 1.5], "ci_high": [1.5, 2.5]})
    with pytest.raises(HarnessError, match="'a:b' and 'a\\?b' have the same name"):
        metrics(rows)
    assert metrics(rows[:1]) == {"a_b/entropy": 1.0, "a_b/entropy.ci_low": 0.5,
                                 "a_b/entropy.ci_high": 1.5}
