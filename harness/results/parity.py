"""Deployment parity: a model against its variants (half precision, 8-bit integers,
another execution provider), image by image on the same images (docs/measures.md,
"Parity").

Per image and variant, with c the class the model predicts on the clean image:

- ``agreement``: 1 when the variant predicts c too, else 0;
- ``score_change``: ``|s_v(c) - s(c)|``, the absolute change of the log-odds of c;
- ``score_shift``: ``s_v(c) - s(c)``, the same change with its sign (quantisation often
  moves every score the same way, which moves a deployed decision threshold);
- ``ssim``: SSIM between the model's and the variant's 8-bit clean maps, each explaining
  its own prediction as a deployed variant's explanation would (a flipped prediction
  therefore usually shows as drift too); no value where either map is flat;
- ``lost_maps``: 1 when the variant's map is flat where the model's is not (occluding
  any one cell no longer moves a score that quantisation made coarse), else 0; no value
  where the model's own map is flat. The SSIM leaves such images out, so it is read
  with this beside it.

Each is reported as its mean with the run's bootstrap interval (docs/measures.md,
"Statistics": one set of resamples for every interval, so the variants' intervals are
paired). ``score_shift`` and every requested measure's headline difference (variant -
model, over the images both have a value) also get the paired test (studentised;
accuracy's the sign-flip test), Holm-adjusted per statistic over all the comparisons of
the run.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from harness.errors import printable
from harness.numerics.similarity import ssim
from harness.results.comparisons import test_for
from harness.stats.bootstrap import Bootstrap
from harness.stats.paired import BOOTSTRAP_T, holm, paired

PARITY = {"model": pl.String, "variant": pl.String, "provider": pl.String,
          "status": pl.String, "note": pl.String, "saturated": pl.Int64,
          "statistic": pl.String, "value": pl.Float64,
          "ci_low": pl.Float64, "ci_high": pl.Float64, "n": pl.Int64,
          "p_value": pl.Float64, "p_adjusted": pl.Float64}
# statistic -> higher is better (None: nearer 0 is better)
DRIFT = {"agreement": True, "score_change": False, "score_shift": None, "ssim": True,
         "lost_maps": False}
# the drift statistics whose mean is tested against no change
TESTED = ("score_shift",)
MEASURE = "parity"  # their measure's name in scores.parquet, for the gate


def drift(q, flat, predicted, score, q_v, flat_v, predicted_v, score_v) -> dict:
    """Per-image drift of a variant from its model.

    Args:
        q, flat: the model's ``(N, g, g) uint8`` clean maps and ``(N,) bool`` flatness.
        predicted, score: its ``(N,)`` predicted classes and their log-odds.
        q_v, flat_v, predicted_v: the variant's clean maps, flatness and predictions.
        score_v: ``(N,)`` the variant's log-odds of the *model's* predicted classes.

    Returns:
        statistic -> ``(N,) float64`` (NaN: no value), for every key of :data:`DRIFT`.
    """
    shift = np.asarray(score_v, np.float64) - np.asarray(score, np.float64)
    similar = np.where(flat | flat_v, np.nan, ssim(q, q_v)) if len(q) else np.zeros(0)
    return {"agreement": (np.asarray(predicted_v) == np.asarray(predicted)).astype(np.float64),
            "score_change": np.abs(shift), "score_shift": shift,
            "ssim": similar.astype(np.float64),
            "lost_maps": np.where(flat, np.nan, np.asarray(flat_v, np.float64))}


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One variant against its model.

    Attributes:
        model: the model's name; ``variant``: the variant's (e.g. ``fp16``, ``cuda``).
        provider: the execution provider the variant ran on (None: it never ran).
        status: ``ok`` or ``failed: <why>`` (the variant could not be built, loaded or
            scored).
        values: statistic -> ``(N,)`` per-image values: the :data:`DRIFT` statistics and
            each measure's :func:`difference` variant - model; empty for a failed variant.
        note: what a reader of the figures should know (e.g. that the variant was run
            one image at a time), or None.
        saturated: images whose class probability sat at the clip on either side.
    """

    model: str
    variant: str
    provider: str | None
    status: str
    values: dict = dataclasses.field(default_factory=dict)
    note: str | None = None
    saturated: int = 0


def difference(measure: str) -> str:
    """The statistic of a measure's headline difference variant - model (its own name
    would be ambiguous: ``agreement`` is a measure and a drift statistic)."""
    return f"{measure}_diff"


def table(comparisons: list[Comparison], measures: list[str], boot: Bootstrap
          ) -> pl.DataFrame:
    """The parity table (:data:`PARITY`): one row per comparison and statistic, the
    drift statistics first, then each measure's :func:`difference`."""
    statistics = [*DRIFT, *map(difference, measures)]
    rows = {}
    for stat in statistics:
        scored = [c for c in comparisons if stat in c.values]
        tested = stat not in DRIFT or stat in TESTED
        if scored and tested:
            measure = stat.removesuffix("_diff") if stat not in DRIFT else stat
            result = paired(np.stack([c.values[stat] for c in scored], axis=1), boot,
                            test_for(measure, BOOTSTRAP_T))
            adjusted = holm(result.p_value)
            for j, c in enumerate(scored):
                rows[(c.model, c.variant, stat)] = (
                    result.diff[j], result.ci_low[j], result.ci_high[j], int(result.n[j]),
                    result.p_value[j], adjusted[j])
        for c in scored if not tested else ():
            v = c.values[stat]
            low, high = boot.interval(v) or (np.nan, np.nan)
            n = int((~np.isnan(v)).sum())
            rows[(c.model, c.variant, stat)] = (
                np.nanmean(v) if n else np.nan, low, high, n, np.nan, np.nan)
    out = {name: [] for name in PARITY}
    for c in comparisons:
        for stat in statistics:
            value, low, high, n, p, p_adj = rows.get((c.model, c.variant, stat),
                                                     (np.nan,) * 3 + (0,) + (np.nan,) * 2)
            for name, x in zip(PARITY, (c.model, c.variant, c.provider, c.status, c.note,
                                        c.saturated, stat, value, low, high, n, p, p_adj),
                               strict=True):
                out[name].append(x)
    return pl.DataFrame({k: [None if isinstance(x, float) and np.isnan(x) else x
                             for x in v] for k, v in out.items()}, schema=PARITY)


def score_rows(parity: pl.DataFrame) -> list[dict]:
    """The drift statistics as rows of the long scores (measure :data:`MEASURE`), the
    keys the gate reads (``parity.ssim >= 0.9``); each row also names its model (the
    variant's run name) and variant."""
    rows = []
    for r in parity.filter(pl.col("statistic").is_in(list(DRIFT))).iter_rows(named=True):
        rows.append({"model": variant_name(r["model"], r["variant"]), "measure": MEASURE,
                     "statistic": r["statistic"], "value": r["value"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "n": r["n"],
                     "higher_is_better": DRIFT[r["statistic"]]})
    return rows


def variant_name(model: str, variant: str) -> str:
    """A variant's name in a run: ``model@variant``."""
    return f"{model}@{variant}"


def render(parity: pl.DataFrame) -> str:
    """The parity table as Markdown, one block per model: a row per variant with its
    agreement, score change, SSIM drift and measure differences; failed variants with
    their reason."""
    blocks = []
    for model in parity["model"].unique(maintain_order=True).to_list():
        rows = parity.filter(pl.col("model") == model)
        stats = rows["statistic"].unique(maintain_order=True).to_list()
        header = ["variant", "provider", *map(title, stats)]
        body, failed, notes = [], [], []
        for variant in rows["variant"].unique(maintain_order=True).to_list():
            of = rows.filter(pl.col("variant") == variant)
            first = of.row(0, named=True)
            if first["status"] != "ok":
                failed.append(f"- {printable(variant)}: "
                              f"{printable(first['status'].removeprefix('failed: '))}")
                continue
            if first["note"]:
                notes.append(f"- {printable(variant)}: {printable(first['note'])}")
            cells = {r["statistic"]: cell(r) for r in of.iter_rows(named=True)}
            body.append([printable(variant), provider_name(first["provider"]),
                         *[cells[s] for s in stats]])
        block = [f"## {printable(model)}"]
        if body:
            block += ["", *_aligned([header, *body])]
        if notes:
            block += ["", "Notes:", *notes]
        if failed:
            block += ["", "Failed:", *failed]
        blocks.append("\n".join(block))
    return "\n\n".join(blocks) + "\n"


TITLES = {"agreement": "agreement", "score_change": "abs Δ log-odds",
          "score_shift": "Δ log-odds", "ssim": "map SSIM", "lost_maps": "maps lost"}
_FIXED = ("agreement", "ssim", "lost_maps")  # in [0, 1]: four decimals, not three digits
_SCORED = ("score_change", "score_shift")  # read from the log-odds, which a clip can pin


def title(statistic: str) -> str:
    """A statistic's column title: ``map SSIM``, ``entropy Δ``..."""
    return TITLES.get(statistic, f"{statistic.removesuffix('_diff')} Δ")


def provider_name(name: str | None) -> str:
    """``CPUExecutionProvider`` as ``CPU``; ``-`` for none."""
    return (name or "-").replace("ExecutionProvider", "")


def cell(r: dict) -> str:
    """One statistic as text: its value, interval and adjusted p-value where it has them."""
    value, detail = cell_parts(r)
    return f"{value} {detail}".strip()


def cell_parts(r: dict) -> tuple[str, str]:
    """One statistic's value, and its interval and adjusted p-value (``""`` without)."""
    if r["value"] is None:
        if r.get("saturated") and r["statistic"] in _SCORED:
            return "saturated: not measurable", ""
        return "n/a", ""
    signed = r["statistic"] not in DRIFT or r["statistic"] == "score_shift"
    f = "{:.4f}" if r["statistic"] in _FIXED else "{:+.3g}" if signed else "{:.3g}"
    detail = "" if r["ci_low"] is None else f"[{f.format(r['ci_low'])}, {f.format(r['ci_high'])}]"
    if r["p_adjusted"] is not None:
        detail += f" p={r['p_adjusted']:.2g}"
    return f.format(r["value"]), detail.strip()


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

    return [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *[line(r) for r in rows[1:]]]
