"""A self-contained HTML report of a finished run: the leaderboard, a plot per measure,
the noise curves, the transform heat map, each family's stability matrix, the
degradation drops, salience overlays of example images, and the provenance.

Everything is inlined (PNG figures as base64, CSS in the page): it opens from disk in
any browser with no network. Figures are drawn with matplotlib's Agg backend (the
``report`` extra).
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import polars as pl

from harness.errors import HarnessError

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
     max-width:1200px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;
     padding-bottom:.2em} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
th{background:#f5f5f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#b00}
dl.measures dt{font-weight:600;margin-top:.5em} dl.measures dd{margin-left:1.2em;color:#333}
img{max-width:100%} .fig{margin:1em 0} .note{color:#555;font-size:13px}
.ci{color:#777;font-size:12px} .rank{color:#333;font-weight:600}
"""

_FAMILY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
                   "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(uri: str, alt: str) -> str:
    return f'<div class="fig"><img src="{uri}" alt="{html.escape(alt)}"></div>'


def _colour_of(families: list[str | None]) -> dict:
    order = sorted({f or "-" for f in families})
    return {f: _FAMILY_COLOURS[i % len(_FAMILY_COLOURS)] for i, f in enumerate(order)}


def _stat(scores: pl.DataFrame, measure: str, prefix: str) -> pl.DataFrame:
    return scores.filter((pl.col("measure") == measure)
                         & pl.col("statistic").str.starts_with(prefix))


def _ordered_models(scores) -> list[tuple[str, str]]:
    """(model, family) of scored models, families grouped."""
    ok = scores.filter(pl.col("status") == "ok").unique("model", keep="first")
    return sorted(((r["model"], r["family"] or "-") for r in ok.iter_rows(named=True)),
                  key=lambda mf: (mf[1], mf[0]))


def measure_figure(scores, dirs) -> str:
    import matplotlib.pyplot as plt

    models = _ordered_models(scores)
    colours = _colour_of([f for _, f in models])
    fig, axes = plt.subplots(1, len(dirs), figsize=(3.1 * len(dirs), 0.32 * len(models) + 1.4),
                             sharey=True, squeeze=False)
    y = np.arange(len(models))
    for ax, (measure, higher) in zip(axes[0], dirs.items(), strict=True):
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
                        color=colours[family], ms=4, capsize=2)
        ax.set_title(f"{measure} {'↑' if higher else '↓'}", fontsize=10)
        ax.grid(axis="x", alpha=.3)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(y, [m for m, _ in models])
    axes[0][0].invert_yaxis()
    return _png(fig)


def noise_figure(scores) -> str | None:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "out_of_set", "ssim@")
    if rows.is_empty():
        return None
    models = _ordered_models(scores)
    colours = _colour_of([f for _, f in models])
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for model, family in models:
        r = rows.filter(pl.col("model") == model)
        levels = [0.0] + [float(s.split("@")[1]) for s in r["statistic"]]
        values = [1.0] + r["value"].to_list()
        ax.plot(levels, values, "-o", ms=3, color=colours[family], alpha=.8, lw=1,
                label=family)
    handles = {h.get_label(): h for h in ax.get_lines()}
    ax.legend(handles.values(), handles.keys(), fontsize=8)
    ax.set_xlabel("salt-and-pepper level")
    ax.set_ylabel("SSIM(clean map, noisy map)")
    ax.grid(alpha=.3)
    return _png(fig)


def transform_figure(scores) -> str | None:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "transforms", "ssim@")
    if rows.is_empty():
        return None
    models = [m for m, _ in _ordered_models(scores)]
    names = list(dict.fromkeys(s.split("@")[1] for s in rows["statistic"]))
    grid = np.full((len(models), len(names)), np.nan)
    for r in rows.iter_rows(named=True):
        if r["model"] in models and r["value"] is not None:
            grid[models.index(r["model"]), names.index(r["statistic"].split("@")[1])] = r["value"]
    fig, ax = plt.subplots(figsize=(0.62 * len(names) + 2.5, 0.3 * len(models) + 1.6))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    for i in range(len(models)):
        for j in range(len(names)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if grid[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, fraction=0.03, label="SSIM")
    return _png(fig)


def stability_figures(scores) -> list[tuple[str, str]]:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "stability", "ssim_with@")
    out = []
    for family in sorted({f for f in rows["family"].to_list() if f}):
        fam = rows.filter(pl.col("family") == family)
        models = sorted(set(fam["model"]))
        m = np.eye(len(models))
        for r in fam.iter_rows(named=True):
            other = r["statistic"].split("@", 1)[1]
            if other in models and r["value"] is not None:
                m[models.index(r["model"]), models.index(other)] = r["value"]
        fig, ax = plt.subplots(figsize=(0.55 * len(models) + 2.2, 0.55 * len(models) + 1.2))
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(models)), models, fontsize=8)
        for i in range(len(models)):
            for j in range(len(models)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] < 0.6 else "black")
        fig.colorbar(im, ax=ax, fraction=0.04, label="SSIM")
        out.append((family, _png(fig)))
    return out


def degradation_figure(scores) -> str | None:
    import matplotlib.pyplot as plt

    rows = _stat(scores, "degradation", "score_drop@")
    if rows.is_empty():
        return None
    models = [m for m, _ in _ordered_models(scores)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(models) + 2), 3.6))
    width = 0.38
    for k, (mode, colour) in enumerate((("object", "#d62728"), ("background", "#1f77b4"))):
        r = {x["model"]: x for x in rows.filter(pl.col("statistic") == f"score_drop@{mode}"
                                                ).iter_rows(named=True)}
        values = [r[m]["value"] if m in r and r[m]["value"] is not None else np.nan
                  for m in models]
        low = [v - (r[m]["ci_low"] if m in r and r[m]["ci_low"] is not None else v)
               for m, v in zip(models, values, strict=True)]
        high = [(r[m]["ci_high"] if m in r and r[m]["ci_high"] is not None else v) - v
                for m, v in zip(models, values, strict=True)]
        ax.bar(np.arange(len(models)) + (k - 0.5) * width, values, width, yerr=[low, high],
               color=colour, capsize=2, label=f"{mode} blurred")
    ax.axhline(0, color="black", lw=.6)
    ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("log-odds drop of the explained class")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=.3)
    return _png(fig)


def overlay_figure(images, maps, models, col_names) -> str:
    """A grid of salience overlays, one column per model and one row per image (or
    perturbed copy): ``images[m][j]`` explained by ``maps[m][j]``."""
    import matplotlib.pyplot as plt

    from harness.overlay import overlay
    from harness.salience.normalize import scale

    n_models, n_rows = maps.shape[:2]
    fig, axes = plt.subplots(n_rows, n_models, figsize=(0.95 * n_models + 1.3, 0.95 * n_rows + .9),
                             squeeze=False)
    for m in range(n_models):
        s_norm = scale(maps[m])[0]
        for j in range(n_rows):
            ax = axes[j][m]
            ax.imshow(overlay(images[m][j], s_norm[j], min_side=96))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(models[m], fontsize=7, rotation=45, ha="left", va="bottom")
            if m == 0:
                ax.set_ylabel(col_names[j], fontsize=8, rotation=0, ha="right", va="center")
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return _png(fig)


def _leaderboard_html(board: pl.DataFrame, dirs: dict) -> str:
    from harness.leaderboard import cell_parts

    head = "".join(f"<th>{html.escape(m)} {'↑' if h else '↓'}</th>" for m, h in dirs.items())
    lines = [f"<table><tr><th>#</th><th>model</th><th>family</th>{head}<th>mean rank</th></tr>"]
    for r in board.iter_rows(named=True):
        if r["status"] != "ok":
            lines.append(f'<tr class="failed"><td>{r["position"]}</td>'
                         f'<td>{html.escape(r["model"])}</td><td>{html.escape(r["family"] or "-")}'
                         f'</td><td colspan="{len(dirs) + 1}">{html.escape(r["status"])}</td></tr>')
            continue
        cells = []
        for m in dirs:
            parts = cell_parts(r, m)
            if parts is None:
                cells.append('<td class="num">n/a</td>')
                continue
            value, ci, rank = parts
            ci = f'<br><span class="ci">{ci}</span>' if ci else ""
            cells.append(f'<td class="num">{value} <span class="rank">{rank}</span>{ci}</td>')
        mean = "-" if r["mean_rank"] is None else f"{r['mean_rank']:.2f}"
        lines.append(f'<tr><td>{r["position"]}</td><td>{html.escape(r["model"])}</td>'
                     f'<td>{html.escape(r["family"] or "-")}</td>{"".join(cells)}'
                     f'<td class="num">{mean}</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def build_report(run_dir, images: int = 4) -> str:
    """The report of the run in ``run_dir`` as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    from harness.leaderboard import FOOTNOTE, build, directions
    from harness.measures import MEASURES
    from harness.results import EXAMPLES_FILE, read_scores

    run_dir = Path(run_dir)
    scores = read_scores(run_dir)
    info = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").is_file() \
        else {}
    board = build(scores)
    dirs = directions(scores)
    first = scores.row(0, named=True)
    salience = json.loads(first["salience_config"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>harness report: "
             f"{html.escape(str(run_dir.name))}</title><style>{_CSS}</style></head><body>",
             f"<h1>Which model's decisions are best grounded?</h1><p class='sub'>"
             f"{len(board)} models, {info.get('images', '?')} images of "
             f"{html.escape(str(info.get('image_set', '?')))}, salience: "
             f"{html.escape(salience.get('method', '?'))}, "
             f"{info.get('forward_passes', 0):,} forward passes in "
             f"{info.get('seconds', 0):.0f} s</p>",
             "<h2>Leaderboard</h2>", _leaderboard_html(board, dirs),
             f"<p class='note'>{html.escape(FOOTNOTE)}</p>", "<dl class='measures'>"]
    for m, higher in dirs.items():
        question = MEASURES[m].question if m in MEASURES else ""
        direction = "↑ higher is better" if higher else "↓ lower is better"
        parts.append(f"<dt>{html.escape(m)} {direction}</dt><dd>{html.escape(question)}</dd>")
    parts.append("</dl>")
    parts += ["<h2>Every model on every measure</h2><p class='note'>Headline with its 95% "
              "bootstrap interval; colours are families.</p>",
              _img(measure_figure(scores, dirs), "headline per measure")]
    noise = noise_figure(scores)
    if noise:
        parts += ["<h2>Noise: how fast the salience falls apart</h2><p class='note'>SSIM of "
                  "each noisy map to the clean one, per salt-and-pepper level; the measure is "
                  "the area under this curve.</p>", _img(noise, "noise curves")]
    heat = transform_figure(scores)
    if heat:
        parts += ["<h2>Transforms: does the salience move with the image?</h2><p class='note'>"
                  "SSIM of the moved map and the map of the moved image; 1 = follows "
                  "exactly.</p>", _img(heat, "transform heat map")]
    families = stability_figures(scores)
    if families:
        parts.append("<h2>Stability within each family</h2><p class='note'>Mean SSIM of "
                     "two models' maps of the same image.</p>")
        parts += [f"<h3>{html.escape(f)}</h3>{_img(uri, f)}" for f, uri in families]
    drops = degradation_figure(scores)
    if drops:
        parts += ["<h2>Degradation: blur what the model looked at, or the rest</h2>"
                  "<p class='note'>A faithful map points at what the decision uses: blurring "
                  "it (red) should cost much more than blurring the rest (blue).</p>",
                  _img(drops, "degradation drops")]
    examples = run_dir / EXAMPLES_FILE
    if examples.is_file():
        with np.load(examples, allow_pickle=False) as ex:
            k = min(images, len(ex["images"]))
            models = [str(m) for m in ex["models"]]
            imgs = np.repeat(ex["images"][None, :k], len(models), axis=0)
            parts += ["<h2>What the models look at</h2><p class='note'>Salience over the "
                      "clean image, one column per model (bright = salient).</p>",
                      _img(overlay_figure(imgs, ex["clean"][:, :k], models,
                                          [str(n)[-24:] for n in ex["names"][:k]]),
                           "overlays")]
            if len(ex["variant_names"]):
                parts += ["<h2>One image under the measures' perturbations</h2><p class='note'>"
                          "The first image flipped, shifted, at the highest noise level and "
                          "degraded both ways: what each number above compares.</p>",
                          _img(overlay_figure(ex["variant_images"], ex["variant_maps"], models,
                                              [str(v) for v in ex["variant_names"]]),
                               "perturbation overlays")]
    parts.append("<h2>Provenance</h2><table>")
    for key in ("harness_version", "onnxruntime_version", "numba_version", "image_set_hash",
                "salience_config", "seed"):
        parts.append(f"<tr><th>{key}</th><td>{html.escape(str(first[key]))}</td></tr>")
    parts.append("</table><table><tr><th>model</th><th>provider</th><th>sha256</th>"
                 "<th>forward passes</th><th>status</th></tr>")
    for r in scores.unique("model", keep="first", maintain_order=True).iter_rows(named=True):
        parts.append(f"<tr><td>{html.escape(r['model'])}</td><td>{r['provider'] or '-'}</td>"
                     f"<td><code>{r['model_sha256'] or '-'}</code></td>"
                     f"<td class='num'>{r['forward_passes']:,}</td>"
                     f"<td>{html.escape(r['status'])}</td></tr>")
    parts.append("</table></body></html>")
    return "\n".join(parts)


def write_report(run_dir, out, images: int = 4) -> Path:
    from harness.io import atomic_path

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise HarnessError("harness report needs matplotlib: pip install -e '.[report]'"
                           ) from None
    page = build_report(run_dir, images)
    out = Path(out)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
