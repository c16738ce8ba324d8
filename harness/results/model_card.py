"""One model's results as a Hugging Face model card's ``model-index`` block: the YAML
front matter from which the Hub shows evaluation results. Every headline of the run
becomes a metric, its 95% interval, images and rank in the metric's ``args``."""

from __future__ import annotations

import json
from pathlib import PurePath

import polars as pl

from harness.errors import HarnessError


def model_index(scores: pl.DataFrame, info: dict, model: str) -> str:
    """The ``---``-fenced YAML block for ``model`` of a finished run (``scores.parquet``
    and ``run.json``'s ``info``).

    Raises:
        HarnessError: the run has no such model, or no value for it (a failed model).
    """
    models = scores["model"].unique(maintain_order=True).to_list()
    if model not in models:
        raise HarnessError(f"no model {model!r} in this run; it has: {', '.join(models)}")
    mine = scores.filter(pl.col("model") == model)
    head = mine.filter((pl.col("statistic") == "headline") & pl.col("value").is_not_null())
    if head.is_empty():
        status = mine["status"].drop_nulls().first() if "status" in mine.columns else None
        raise HarnessError(f"{model} has no results in this run ({status or 'no values'})")
    ranks = {(m, s): v for m, s, v in mine.filter(
        pl.col("statistic").is_in(["rank", "rank_low", "rank_high"])).select(
        "measure", "statistic", "value").iter_rows()}
    metrics = []
    for row in head.iter_rows(named=True):
        measure = row["measure"]
        better = "higher" if row["higher_is_better"] else "lower"
        args = {"ci_low": row["ci_low"], "ci_high": row["ci_high"], "images": row["n"],
                "better": better}
        name = f"{measure} ({better} is better)"
        if row["ci_low"] is not None:
            name += f", 95% interval [{row['ci_low']:.4g}, {row['ci_high']:.4g}]"
        if (measure, "rank") in ranks:
            rank = [int(ranks[(measure, s)]) for s in ("rank", "rank_low", "rank_high")]
            args.update(rank=rank[0], rank_set=rank[1:], models=len(models))
            name += f", rank {rank[0]} of {len(models)} (rank set {rank[1]}-{rank[2]})"
        metrics.append({"type": f"harness/{measure}", "name": name, "value": row["value"],
                        "args": args})
    salience = info.get("config", {}).get("salience", {})
    images = PurePath(str(info.get("image_set", "images")).split("[")[0]).name
    split = str(info.get("image_set", "")).partition("[")[2].rstrip("]")
    dataset = {"name": f"{images} [{split}]" if split else images, "type": images,
               "revision": str(info.get("image_set_hash", ""))[:16],
               "args": {"images": info.get("images"), "seed": info.get("config", {}).get("seed")}}
    index = [{"name": model, "results": [{
        "task": {"type": "image-classification",
                 "name": f"salience of {salience.get('method', 'occlusion')} maps"},
        "dataset": dataset, "metrics": metrics,
        "source": {"name": f"harness {info.get('harness_version', '')}".strip()}}]}]
    return "---\n" + _yaml({"model-index": index}) + "---\n"


def _yaml(value, indent: int = 0) -> str:
    """Block YAML of dicts, lists and scalars; strings as JSON strings, which YAML reads
    as double-quoted scalars, so no name can break the block."""
    pad = " " * indent
    if isinstance(value, dict):
        out = ""
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out += f"{pad}{key}:\n{_yaml(item, indent + 2)}"
            else:
                out += f"{pad}{key}: {_scalar(item)}\n"
        return out
    out = ""
    for item in value:
        text = _yaml(item, indent + 2) if isinstance(item, (dict, list)) \
            else f"{pad}  {_scalar(item)}\n"
        out += f"{pad}- {text[indent + 2:]}"
    return out


def _scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return ".nan"
        return repr(value) if abs(value) != float("inf") else ("-" if value < 0 else "") + ".inf"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, dict)):  # empty: flow style
        return json.dumps(value)
    return json.dumps(str(value), ensure_ascii=False)
