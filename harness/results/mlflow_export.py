"""A finished run logged to MLflow: its settings and versions as parameters, every
model's headlines with their intervals and ranks as metrics, and the run folder's
report, leaderboard and tables as artefacts."""

from __future__ import annotations

import json
import re
import time

import polars as pl

from harness.errors import HarnessError
from harness.rundir import RunDir

_BATCH = 900  # MLflow takes at most 1,000 metrics per call
_STATISTICS = {"headline": "", "rank": ".rank", "rank_low": ".rank_low",
               "rank_high": ".rank_high"}
ARTEFACTS = ("report.html", f"{RunDir.LEADERBOARD}.md", f"{RunDir.LEADERBOARD}.csv",
             RunDir.SCORES, RunDir.PER_IMAGE, RunDir.PAIRS, RunDir.FAMILIES, "run.json")


def metric_name(model: str, measure: str, suffix: str = "") -> str:
    """``MODEL/MEASURE`` (with ``.ci_low`` etc.), in the characters MLflow allows in a
    name: any other becomes ``_``."""
    return re.sub(r"[^\w\-. /]", "_", f"{model}/{measure}{suffix}")


def metrics(scores: pl.DataFrame) -> dict[str, float]:
    """Every model's headlines, their interval bounds and ranks, by metric name.

    Raises:
        HarnessError: two models' names are the same in MLflow's characters (one's
            metrics would silently replace the other's).
    """
    out = {}
    rows = scores.filter(pl.col("statistic").is_in(list(_STATISTICS))
                         & pl.col("value").is_not_null())
    named = {}
    for model in rows["model"].unique(maintain_order=True):
        other = named.setdefault(metric_name(model, ""), model)
        if other != model:
            raise HarnessError(f"models {other!r} and {model!r} have the same name in "
                               "MLflow's characters; rename one to export the run")
    for row in rows.iter_rows(named=True):
        suffix = _STATISTICS[row["statistic"]]
        out[metric_name(row["model"], row["measure"], suffix)] = float(row["value"])
        if row["statistic"] == "headline":
            for bound in ("ci_low", "ci_high"):
                if row[bound] is not None:
                    out[metric_name(row["model"], row["measure"], f".{bound}")] = \
                        float(row[bound])
    return out


def params(info: dict) -> dict[str, str]:
    """The run's settings and versions, flattened (``salience.grid``)."""
    config = info.get("config", {})
    flat = {k: v for k, v in config.items() if not isinstance(v, dict)}
    for table in ("salience", "decision"):
        flat.update({f"{table}.{k}": v for k, v in (config.get(table) or {}).items()})
    flat.update({k: info.get(k) for k in ("harness_version", "onnxruntime_version",
                                          "numba_version", "image_set_hash", "images")})
    flat["providers"] = info.get("providers")
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in flat.items()
            if v not in (None, [], {}, "")}


def log(folder: RunDir, tracking_uri: str | None, experiment: str) -> str:
    """Log the run in ``folder`` to MLflow; returns the MLflow run's id.

    Raises:
        HarnessError: MLflow is not installed, or the tracking store refuses the run.
    """
    try:
        import mlflow
        from mlflow.entities import Metric, Param, RunTag
    except ImportError:
        raise HarnessError("--mlflow needs MLflow: pip install 'salience-harness[mlflow]'") \
            from None
    from harness.results import reading

    scores, info = reading.scores(folder), folder.info()
    values = metrics(scores)
    decision = info.get("decision") or {}
    if decision.get("p_best") is not None:
        values["decision/p_best"] = float(decision["p_best"])
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    try:
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(
            experiment, artifact_location=_beside(tracking_uri))
        run = client.create_run(experiment_id, run_name=folder.path.name)
        run_id = run.info.run_id
        tags = [RunTag("harness.pick", str(decision.get("pick")))] if decision else []
        client.log_batch(run_id, params=[Param(k, v) for k, v in params(info).items()],
                         tags=tags)
        stamp = int(time.time() * 1000)
        items = [Metric(k, v, stamp, 0) for k, v in values.items()]
        for start in range(0, len(items), _BATCH):
            client.log_batch(run_id, metrics=items[start:start + _BATCH])
        for name in ARTEFACTS:
            if (folder.path / name).exists():
                client.log_artifact(run_id, str(folder.path / name))
        client.set_terminated(run_id)
    except mlflow.exceptions.MlflowException as exc:
        raise HarnessError(f"MLflow refused the run: {str(exc).splitlines()[0]}") from None
    return run_id


def _beside(tracking_uri: str | None) -> str | None:
    """Where a new experiment keeps its artefacts: for a SQLite store, ``mlartifacts/``
    beside the database file (MLflow's default is ``./mlruns`` in whatever folder the
    command runs from); otherwise the store's own default."""
    if not tracking_uri or not tracking_uri.startswith("sqlite:///"):
        return None
    from pathlib import Path

    return (Path(tracking_uri.removeprefix("sqlite:///")).resolve().parent
            / "mlartifacts").as_uri()
