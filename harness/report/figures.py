"""The report's figures, each a PNG data URI drawn with matplotlib's Agg backend, with
the size of its smallest text in the PNG's pixels: the page shows a figure no wider than
the window, and a figure scaled down with it must still read (at least 11 px at 900 px,
which tests/test_report_layout.py checks). So figures are small multiples, one panel
each, rather than one wide composite."""

from __future__ import annotations

import base64
import io
from typing import NamedTuple

import numpy as np
import polars as pl

from harness.measures.base import split_stat_name, stat_name

_FAMILY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


DPI = 110


class Figure(NamedTuple):
    """A drawn figure: its PNG as a data URI, and its smallest text's height in the PNG's
    pixels (font size in points x DPI / 72)."""

    uri: str
    text_px: float


def _png(fig) -> Figure:
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Figure("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
                  min(sizes, default=0.0) * DPI / 72)


def _colour_of(families: list[str | None]) -> dict:
    order = sorted({f or "-" for f in families})
    return {f: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)] for i, f in enumerate(order)}


def _stat(scores: pl.DataFrame, measure: str, kind: str) -> pl.DataFrame:
    """The detail rows ``kind@...`` of ``measure``."""
    return scores.filter((pl.col("measure") == measure)
                         & pl.col("statistic").str.starts_with(stat_name(kind, "")))


def _ordered_models(scores, order: list[str]) -> list[tuple[str, str]]:
    """(model, family) of the scored models in ``order`` (the leaderboard's)."""
    ok = scores.filter(pl.col("status") == "ok").unique("model", keep="first")
    family = {r["model"]: r["family"] or "-" for r in ok.iter_rows(named=True)}
    return [(m, family[m]) for m in order if m in family]


def references(scores: pl.DataFrame, measure: str, statistic: str) -> dict[str, float]:
    """A reference level of a measure (``chance``, ``ceiling``) per model that reports it.
    Most depend on the images and the grid only, so every model has the same; the
    faithfulness measures' chance levels are the model's own scores of random maps."""
    rows = scores.filter((pl.col("measure") == measure) & (pl.col("statistic") == statistic)
                         & pl.col("value").is_not_null())
    return dict(zip(rows["model"].to_list(), rows["value"].to_list(), strict=True))


def measure_figures(scores, dirs, order: list[str]) -> list[Figure]:
    """Per measure, every model's headline with its 95% interval (and the chance level
    or ceiling where there is one)."""
    return [headline_figure(scores, measure, higher, order) for measure, higher in dirs.items()]


def headline_figure(scores, measure: str, higher: bool, order: list[str]) -> Figure:
    import matplotlib.pyplot as plt

    models = _ordered_models(scores, order)
    colours = _colour_of([f for _, f in models])
    fig, ax = plt.subplots(figsize=(3.6, 0.3 * len(models) + 1.2))
    heads = {r["model"]: r for r in scores.filter(
        (pl.col("measure") == measure) & (pl.col("statistic") == "headline")).iter_rows(
        named=True)}
    for i, (model, family) in enumerate(models):
        r = heads.get(model)
        if r is None or r["value"] is None:
            continue
        low = r["ci_low"] if r["ci_low"] is not None else r["value"]
        high = r["ci_high"] if r["ci_high"] is not None else r["value"]
        ax.errorbar(r["value"], i, xerr=[[r["value"] - low], [high - r["value"]]], fmt="o",
                    color=colours[family], ms=5, capsize=2)
    for statistic, style in (("chance", "--"), ("ceiling", ":")):
        levels = references(scores, measure, statistic)
        if not levels:
            continue
        values = list(levels.values())
        if max(values) - min(values) <= 1e-9 * max(1.0, abs(max(values))):
            ax.axvline(float(np.mean(values)), color="#555", ls=style, lw=1, label=statistic)
        else:  # the model's own level, on its row
            rows = [(levels[m], i) for i, (m, _) in enumerate(models) if m in levels]
            ax.plot(*zip(*rows, strict=True), "|", color="#555", ms=11, mew=2,
                    label=f"{statistic} (its own)")
        ax.legend(fontsize=10, loc="lower right")
    ax.set_title(f"{measure} {'↑' if higher else '↓'}", fontsize=12)
    ax.grid(axis="x", alpha=.3)
    ax.tick_params(labelsize=10)
    ax.set_yticks(np.arange(len(models)), [m for m, _ in models])
    ax.invert_yaxis()
    return _png(fig)


def _curves(scores, order: list[str], rows, x_of, start: tuple[float, float], xlabel: str,
            ylabel: str) -> Figure | None:
    """One curve per model through ``rows`` (a statistic per point, ``x_of(statistic)``
    its x), from the point ``start``, coloured by family."""
    import matplotlib.pyplot as plt

    if rows.is_empty():
        return None
    models = _ordered_models(scores, order)
    colours = _colour_of([f for _, f in models])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for model, family in models:
        r = rows.filter(pl.col("model") == model)
        ax.plot([start[0]] + [x_of(s) for s in r["statistic"]],
                [start[1]] + r["value"].to_list(), "-o", ms=3, color=colours[family],
                alpha=.8, lw=1, label=family)
    handles = {h.get_label(): h for h in ax.get_lines()}
    ax.legend(handles.values(), handles.keys(), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=.3)
    return _png(fig)


def noise_figure(scores, order: list[str]) -> Figure | None:
    return _curves(scores, order, _stat(scores, "out_of_set", "ssim"),
                   lambda s: float(split_stat_name(s)[1]), (0.0, 1.0),
                   "salt-and-pepper level", "SSIM(clean map, noisy map)")


def cascade_figure(scores, order: list[str]) -> Figure | None:
    """The cascading sanity test: one curve per model, 1 - |rho| against the model's
    maps as its weights are redrawn from the output down (``sanity.cascade@j/J``)."""
    def step(statistic):
        j, steps = statistic.split("@")[1].split("/")
        return int(j) / int(steps)

    rows = scores.filter((pl.col("measure") == "sanity")
                         & pl.col("statistic").str.starts_with("cascade@"))
    return _curves(scores, order, rows, step, (0.0, 0.0),
                   "cascade step j / J: the top ceil(j L / J) of L weight tensors redrawn",
                   "1 - |Spearman rho| to the model's maps")


def transform_figure(scores, order: list[str]) -> Figure | None:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "transforms", "ssim")
    if rows.is_empty():
        return None
    models = [m for m, _ in _ordered_models(scores, order)]
    names = list(dict.fromkeys(split_stat_name(s)[1] for s in rows["statistic"]))
    grid = np.full((len(models), len(names)), np.nan)
    for r in rows.iter_rows(named=True):
        if r["model"] in models and r["value"] is not None:
            column = names.index(split_stat_name(r["statistic"])[1])
            grid[models.index(r["model"]), column] = r["value"]
    fig, ax = plt.subplots(figsize=(0.75 * len(names) + 2.5, 0.36 * len(models) + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=11)
    ax.set_yticks(range(len(models)), models, fontsize=11)
    for i in range(len(models)):
        for j in range(len(names)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=11,
                        color="white" if grid[i, j] < 0.6 else "black")
    bar = fig.colorbar(im, ax=ax, fraction=0.03)
    bar.set_label("SSIM", fontsize=11)
    bar.ax.tick_params(labelsize=11)
    return _png(fig)


def stability_figures(scores, order: list[str]) -> list[tuple[str, str, Figure]]:
    """Per family: (family, what its headline is against its cells, the matrix)."""
    import matplotlib.pyplot as plt

    rows = _stat(scores, "stability", "ssim_with")
    heads = {r["family"]: r for r in scores.filter(
        (pl.col("measure") == "stability") & (pl.col("statistic") == "headline")
        & pl.col("value").is_not_null()).iter_rows(named=True)}
    out = []
    for family in sorted({f for f in rows["family"].to_list() if f}):
        fam = rows.filter(pl.col("family") == family)
        models = [m for m in order if m in set(fam["model"])]
        m = np.eye(len(models))
        for r in fam.iter_rows(named=True):
            other = split_stat_name(r["statistic"])[1]
            if other in models and r["value"] is not None:
                m[models.index(r["model"]), models.index(other)] = r["value"]
        fig, ax = plt.subplots(figsize=(0.6 * len(models) + 2.4, 0.6 * len(models) + 1.3))
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=10)
        ax.set_yticks(range(len(models)), models, fontsize=10)
        for i in range(len(models)):
            for j in range(len(models)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if m[i, j] < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.04, label="SSIM")
        cells = m[~np.eye(len(models), dtype=bool)].mean() if len(models) > 1 else np.nan
        head = heads.get(family)
        said = (f"Cells: mean SSIM of two models' maps over the images where neither map is "
                f"flat; their mean is {cells:.3f}.")
        if head is not None:
            said += (f" The family's stability, {head['value']:.3f} [{head['ci_low']:.3f}, "
                     f"{head['ci_high']:.3f}] for every model of it, averages the other way "
                     "round: per image over the pairs it has, then over the images, so an "
                     "image with a flat map weighs as much as any other.")
        out.append((family, said, _png(fig)))
    return out


def degradation_figure(scores, order: list[str]) -> Figure | None:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "degradation", "score_drop")
    if rows.is_empty():
        return None
    models = [m for m, _ in _ordered_models(scores, order)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(models) + 2), 3.6))
    width = 0.27
    modes = (("object", "#d62728"), ("control", "#7f7f7f"), ("background", "#1f77b4"))
    for k, (mode, colour) in enumerate(modes):
        r = {x["model"]: x for x in rows.filter(pl.col("statistic") == stat_name("score_drop", mode)
                                                ).iter_rows(named=True)}
        values = [r[m]["value"] if m in r and r[m]["value"] is not None else np.nan
                  for m in models]
        low = [v - (r[m]["ci_low"] if m in r and r[m]["ci_low"] is not None else v)
               for m, v in zip(models, values, strict=True)]
        high = [(r[m]["ci_high"] if m in r and r[m]["ci_high"] is not None else v) - v
                for m, v in zip(models, values, strict=True)]
        label = "as much blur in random places" if mode == "control" else f"{mode} blurred"
        ax.bar(np.arange(len(models)) + (k - 1) * width, values, width, yerr=[low, high],
               color=colour, capsize=2, label=label)
    ax.axhline(0, color="black", lw=.6)
    ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=10)
    ax.set_ylabel("log-odds drop of the explained class")
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=.3)
    return _png(fig)


def overlay_figure(images, maps, models, col_names) -> Figure:
    """A grid of salience overlays, one row per model and one column per image (or
    perturbed copy): ``images[m][j]`` explained by ``maps[m][j]``; a colour bar gives
    the scale (each map scaled to [0, 1], as the measures read it)."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize

    from harness.maps import scale
    from harness.report.overlay import COLORMAP, overlay

    n_models, n_cols = maps.shape[:2]
    fig, axes = plt.subplots(n_models, n_cols, figsize=(1.1 * n_cols + 2.4, 1.1 * n_models + 0.9),
                             squeeze=False)
    for m in range(n_models):
        s_norm = scale(maps[m])[0]
        for j in range(n_cols):
            ax = axes[m][j]
            ax.imshow(overlay(images[m][j], s_norm[j], min_side=96))
            ax.set_xticks([])
            ax.set_yticks([])
            if m == 0:
                ax.set_title(col_names[j], fontsize=10, rotation=30, ha="left", va="bottom")
            if j == 0:
                ax.set_ylabel(models[m], fontsize=10, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), ListedColormap(COLORMAP / 255.0)),
                       ax=axes, fraction=0.04, pad=0.02)
    bar.set_label("salience, each map scaled to [0, 1]", fontsize=10)
    bar.ax.tick_params(labelsize=10)
    return _png(fig)


def win_matrix_figures(pairs: pl.DataFrame, models: list[str], dirs: dict[str, bool]
                       ) -> list[tuple[str, Figure]]:
    """Per measure, a heat map: the cell (row, column) is how much better the row model
    is than the column model (the paired mean difference, signed so that better is
    positive), coloured only where the pair is separable (Holm-adjusted p < 0.05)."""
    import matplotlib.pyplot as plt

    from harness.results.comparisons import SEPARABLE

    measures = [m for m in dirs if not pairs.filter(pl.col("measure") == m).is_empty()]
    if len(models) < 2:
        return []
    at = {m: i for i, m in enumerate(models)}
    side = 0.3 * len(models) + 1.9
    out = []
    for measure in measures:
        fig, ax = plt.subplots(figsize=(side + 0.6, side))
        grid = np.full((len(models), len(models)), np.nan)
        for a, b, diff, p in pairs.filter(pl.col("measure") == measure).select(
                "model_a", "model_b", "diff", "p_adjusted").iter_rows():
            if p is None or p >= SEPARABLE or a not in at or b not in at:
                continue
            better = diff if dirs[measure] else -diff
            grid[at[a], at[b]], grid[at[b], at[a]] = better, -better
        span = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        ax.set_facecolor("#f2f2f2")
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu", vmin=-span, vmax=span)
        ax.set_title(f"{measure} {'↑' if dirs[measure] else '↓'}", fontsize=12)
        ax.set_xticks(range(len(models)), models, rotation=90, fontsize=10)
        ax.set_yticks(range(len(models)), models, fontsize=10)
        bar = fig.colorbar(image, ax=ax, shrink=0.7)
        bar.set_label("row better by", fontsize=10)
        bar.ax.tick_params(labelsize=10)
        out.append((measure, _png(fig)))
    return out
