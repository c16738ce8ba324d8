"""A self-contained HTML report of a finished run: the leaderboard, a plot per measure,
the noise curves, the transform heat map, each family's stability matrix, the
degradation drops, salience overlays of example images, and the provenance.

Everything is inlined (PNG figures as base64, CSS in the page): it opens from disk in
any browser with no network. Figures are drawn with matplotlib's Agg backend (the
``report`` extra).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import polars as pl

from harness.errors import HarnessError, first_line, printable
from harness.io import atomic_path, check_replaceable
from harness.results import reading
from harness.rundir import RunDir

GENERATOR = "<meta name='generator' content='harness'>"  # how a report is known as ours

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
     max-width:1200px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.7em;margin-bottom:.2em} h2{margin-top:2em;border-bottom:1px solid #ddd;
     padding-bottom:.2em} .sub{color:#555;margin-top:0}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
.scroll{overflow-x:auto;max-width:100%} td.name,th{white-space:nowrap}
th,td{padding:4px 8px;border-bottom:1px solid #e5e5e5;text-align:left;vertical-align:top}
th{background:#f5f5f7} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{color:#b00}
dl.measures dt{font-weight:600;margin-top:.5em} dl.measures dd{margin-left:1.2em;color:#333}
img{max-width:100%} .fig{margin:1em 0}
.figs{display:flex;flex-wrap:wrap;gap:0 12px} .figs .fig{margin:.5em 0}
.note{color:#555;font-size:13px}
.ci{color:#777;font-size:12px;white-space:nowrap} .rank{color:#333;font-weight:600}
.pick{font-size:1.15em;font-weight:600} ul.decision li{margin:.2em 0}
"""

def shown(source: str) -> str:
    """A path as the report shows it: relative to the working directory when it lies
    inside it, else the file name alone (a shared report must not carry the paths of the
    machine it was made on). A ``[split]`` suffix is kept."""
    path, bracket, rest = str(source).partition("[")
    try:
        name = Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        name = Path(path).name
    return name + bracket + rest


def _passes(info: dict) -> str:
    """The run's forward passes, and how many of them it computed rather than found."""
    total, computed = info.get("forward_passes", 0), info.get("computed_passes")
    took = f"{info.get('seconds', 0):.0f} s"
    if computed is None or computed == total:
        return f"{total:,} forward passes in {took}"
    return (f"{total:,} forward passes, {computed:,} of them computed in this run ({took}), "
            "the rest from the cache")


def _img(figure, alt: str) -> str:
    """A figure, with its smallest text's size in the PNG's pixels for the layout test."""
    return (f'<div class="fig"><img src="{figure.uri}" data-text-px="{figure.text_px:.1f}" '
            f'alt="{html.escape(alt)}"></div>')


def _grid(figures, alt: str) -> str:
    """Small multiples side by side, as many as the window holds."""
    return "<div class='figs'>" + "".join(
        _img(f, f"{alt} {name}") for name, f in figures) + "</div>"


def _leaderboard_html(board: pl.DataFrame, dirs: dict) -> str:
    from harness.results.leaderboard import ACCURACY, cell_parts, n_note

    shown = [*dirs, *([ACCURACY] if ACCURACY in board.columns else [])]
    head = "".join(f"<th>{html.escape(m)} {'↑' if dirs.get(m, True) else '↓'}</th>"
                   for m in shown)
    lines = [f"<table><tr><th>#</th><th>model</th><th>family</th>{head}<th>mean rank</th>"
             "<th>pareto</th></tr>"]
    for r in board.iter_rows(named=True):
        if r["status"] != "ok":
            lines.append(f'<tr class="failed"><td>{r["position"]}</td>'
                         f'<td class="name">{html.escape(r["model"])}</td>'
                         f'<td class="name">{html.escape(r["family"] or "-")}'
                         f'</td><td colspan="{len(shown) + 2}">'
                         f'{html.escape(r["status"])}</td></tr>')
            continue
        cells = []
        for m in shown:
            parts = cell_parts(r, m)
            if parts is None:
                cells.append('<td class="num">n/a</td>')
                continue
            value, ci, rank, spread = parts
            spread = "; ".join(x for x in (spread, n_note(r, m)) if x)
            spread = f" ({spread})" if spread else ""
            ci = f'<br><span class="ci">{ci}{spread}</span>' if ci or spread else ""
            cells.append(f'<td class="num">{value} <span class="rank">{rank}</span>{ci}</td>')
        mean = "-" if r["mean_rank"] is None else f"{r['mean_rank']:.2f}"
        lines.append(f'<tr><td>{r["position"]}</td><td class="name">{html.escape(r["model"])}'
                     f'</td><td class="name">{html.escape(r["family"] or "-")}</td>'
                     f'{"".join(cells)}'
                     f'<td class="num">{mean}</td><td>{"yes" if r["pareto"] else ""}</td></tr>')
    lines.append("</table>")
    return "\n".join(lines)


def _parity_html(parity: pl.DataFrame) -> str:
    """A parity run's comparison: a row per variant, failed ones with their reason."""
    from harness.results.parity import cell_parts, provider_name, title

    stats = parity["statistic"].unique(maintain_order=True).to_list()
    head = "".join(f"<th>{html.escape(title(s))}</th>" for s in stats)
    lines = [f"<table><tr><th>model</th><th>variant</th><th>provider</th>{head}</tr>"]
    notes = []
    for (model, variant), rows in parity.group_by(["model", "variant"], maintain_order=True):
        first = rows.row(0, named=True)
        if first["note"]:
            notes.append(f"<p class='note'>{html.escape(model)} {html.escape(variant)}: "
                         f"{html.escape(first['note'])}</p>")
        who = f"<td>{html.escape(model)}</td><td>{html.escape(variant)}</td>"
        if first["status"] != "ok":
            lines.append(f'<tr class="failed">{who}<td colspan="{len(stats) + 1}">'
                         f'{html.escape(first["status"])}</td></tr>')
            continue
        cells = {r["statistic"]: cell_parts(r) for r in rows.iter_rows(named=True)}
        lines.append(f"<tr>{who}<td>{provider_name(first['provider'])}</td>" + "".join(
            f'<td class="num">{html.escape(cells[s][0])}<br><span class="ci">'
            f'{html.escape(cells[s][1])}</span></td>' for s in stats) + "</tr>")
    lines += ["</table>", *notes]
    return "\n".join(lines)


def _parity_section(folder: RunDir, labels: dict) -> list[str]:
    """The comparison of a ``harness parity`` run (nothing for other runs); models by
    their ``labels``."""
    if not (folder / RunDir.PARITY).is_file():
        return []
    return ["<h2>Deployment parity: does a variant decide and look as the model does?</h2>"
            "<p class='note'>Per variant, on the same images: the share of images where it "
            "predicts the model's class, the change of that class's log-odds (absolute, and "
            "signed with a paired test), the SSIM between the model's and the "
            "variant's 8-bit maps (1 = the same map), and each measure's change (variant - "
            "model, paired, Holm-adjusted p). Brackets: 95% bootstrap intervals.</p>",
            _parity_html(folder.table(RunDir.PARITY).with_columns(
                pl.col("model").map_elements(lambda m: labels.get(m, _label(m)),
                                             return_dtype=pl.String)))]


def _decision_section(decision, labels: dict) -> list[str]:
    """The pick, how sure it is and what would change it, in the names the report
    shows (none for a run made before decisions existed)."""
    from harness.results.decision import lines

    if not isinstance(decision, dict):
        return []
    named = dict(decision)

    def name(m):
        return labels.get(m, m)

    if named.get("pick") is not None:
        named["pick"] = name(named["pick"])
    named["top_set"] = [name(m) for m in named.get("top_set") or []]
    for key, field in (("closest", "model"), ("power", "runner_up")):
        if isinstance(named.get(key), dict):
            named[key] = named[key] | {field: name(named[key][field])}
    named["excluded"] = {name(m): why for m, why in (named.get("excluded") or {}).items()}
    said = lines(named, width=10**6, excluded=None)
    return ["<h2>The pick</h2>", f"<p class='pick'>{html.escape(said[0])}</p>",
            "<ul class='decision'>", *(f"<li>{html.escape(x.strip())}</li>" for x in said[1:]),
            "</ul><p class='note'>P(best): the share of the run's bootstrap resamples of the "
            "images in which the pick comes first. Top set: the models its paired tests "
            "cannot separate from it (Holm-adjusted p &ge; 0.05). Power: normal "
            "approximation for a two-sided test at 0.05. <code>harness pick DIR</code> "
            "decides again with another objective or constraints.</p>"]


def _sequential_section(record, labels: dict) -> list[str]:
    """A run made with --until-decided: where the looks stopped, the looks, and every
    question's verdict with the look and interval it was decided on."""
    from harness.results.stopping import summary

    if not isinstance(record, dict):
        return []
    rows = "".join(f"<tr><td>{x['look']}</td><td>{x['images']}</td>"
                   f"<td>{record['questions'] - x['open']}</td><td>{x['failed']}</td>"
                   f"<td>{x['passes_used']:,}</td></tr>" for x in record["looks"])
    checks = record.get("checks") or []
    lines = "".join(
        f"<tr><td>{'SKIP' if c['skipped'] else 'PASS' if c['passed'] else 'FAIL'}</td>"
        f"<td>{html.escape(labels.get(c['model'], c['model']))}</td>"
        f"<td>{html.escape(c['what'])}</td><td>{html.escape(c['detail'])}</td></tr>"
        for c in sorted(checks, key=lambda c: (c["passed"], not c["skipped"])))
    verdicts = (f"<details><summary>The gate's {len(checks)} lines, failures first"
                f"</summary><table class='checks'><tr><th></th><th>model</th><th>question"
                f"</th><th>decided on</th></tr>{lines}</table></details>") if checks else ""
    return ["<h2>Stopped when decided</h2>",
            f"<p>{html.escape(summary(record))}.</p>",
            f"<table class='looks'><tr><th>look</th><th>images</th><th>questions decided"
            f"</th><th>failed</th><th>forward passes</th></tr>{rows}</table>", verdicts,
            f"<p class='note'>{html.escape(record['method'])}, alpha {record['alpha']:g} "
            f"over {record['questions']} questions (docs/measures.md, \"Sequential "
            "evaluation\").</p>"]


def build_report(run_dir, images: int = 4) -> str:
    """The report of the run in ``run_dir`` as one HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    from harness.measures import MEASURES
    from harness.report.figures import (
        cascade_figure,
        degradation_figure,
        measure_figures,
        noise_figure,
        stability_figures,
        transform_figure,
        win_matrix_figures,
    )
    from harness.results.leaderboard import build, directions, few_line, flat_line, footnote

    folder = RunDir(run_dir)
    run_dir = folder.path
    scores = reading.scores(folder)
    info = folder.info()
    per_image = reading.per_image(folder, scores)
    labels = _labels(scores["model"].unique(maintain_order=True).to_list())
    # every table and figure shows the names as labels: escaped, and short enough to lay out
    scores, per_image = (f.with_columns(pl.col("model").replace(labels))
                         for f in (scores, per_image))
    pairs = reading.pairs(folder).with_columns(pl.col("model_a").replace(labels),
                                               pl.col("model_b").replace(labels))
    board = build(scores, per_image, pairs)
    dirs = directions(scores)
    order = board["model"].to_list()  # one model order in every section: the leaderboard's
    first = scores.row(0, named=True)
    salience = json.loads(first["salience_config"])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'>{GENERATOR}<title>harness report: "
             f"{html.escape(str(run_dir.name))}</title><style>{_CSS}</style></head><body>",
             f"<h1>Which model's decisions are best grounded?</h1><p class='sub'>"
             f"{len(board)} models, {info.get('images', '?')} images of "
             f"{html.escape(shown(info.get('image_set', '?')))}, salience: "
             f"{html.escape(salience.get('method', '?'))}, "
             f"{_passes(info)}</p>",
             *_decision_section(info.get("decision"), labels),
             *_sequential_section(info.get("sequential"), labels),
             *_parity_section(folder, labels),
             "<h2>Leaderboard</h2>", _leaderboard_html(board, dirs),
             "<p class='note'>"
             f"{html.escape(' '.join([footnote(), few_line(board, dirs), flat_line(board)]))}"
             "</p>", "<dl class='measures'>"]
    for m, higher in dirs.items():
        question = MEASURES[m].question if m in MEASURES else ""
        direction = "↑ higher is better" if higher else "↓ lower is better"
        parts.append(f"<dt>{html.escape(m)} {direction}</dt><dd>{html.escape(question)}</dd>")
    parts.append("</dl>")
    # drawn once: the degradation section shows its panel again
    headlines = dict(zip(dirs, measure_figures(scores, dirs, order), strict=True))
    if dirs:  # a parity run may compare no measure
        parts += ["<h2>Every model on every measure</h2><p class='note'>Headline with its "
                  "95% bootstrap interval; colours are families.</p>",
                  _grid(headlines.items(), "headline of")]
    wins = win_matrix_figures(pairs, order, dirs)
    if wins:
        parts += ["<h2>Who beats whom</h2><p class='note'>Row model against column model, "
                  "paired over the images both have: blue where the row is separably better "
                  "(Holm-adjusted p &lt; 0.05), red where it is separably worse, by the mean "
                  "difference in the measure's units; grey: the data cannot tell them apart. "
                  "<code>harness compare</code> says the same in words.</p>",
                  _grid(wins, "who beats whom on")]
    noise = noise_figure(scores, order)
    if noise:
        parts += ["<h2>Noise: how fast the salience falls apart</h2><p class='note'>SSIM of "
                  "each noisy map to the clean one, per salt-and-pepper level; the measure is "
                  "the area under this curve.</p>", _img(noise, "noise curves")]
    heat = transform_figure(scores, order)
    if heat:
        parts += ["<h2>Transforms: does the salience move with the image?</h2><p class='note'>"
                  "SSIM of the moved map and the map of the moved image; 1 = follows "
                  "exactly.</p>", _img(heat, "transform heat map")]
    families = stability_figures(scores, order)
    if families:
        parts.append("<h2>Stability within each family</h2><p class='note'>Mean SSIM of "
                     "two models' maps of the same image.</p>")
        parts += [f"<h3>{html.escape(f)}</h3><p class='note'>{html.escape(said)}</p>"
                  f"{_img(figure, f)}" for f, said, figure in families]
    cascade = cascade_figure(scores, order)
    if cascade:
        parts += ["<h2>Sanity, layer by layer</h2><p class='note'>The cascading test "
                  "(<code>--sanity cascade</code>): each model's weights are redrawn from the "
                  "output towards the input, and its maps compared with the twin's at each "
                  "step (0: the same up to sign; 1: unrelated). Maps that stay near 0 while "
                  "the top layers are redrawn do not depend on them.</p>",
                  _img(cascade, "cascading sanity test")]
    drops = degradation_figure(scores, order)
    if drops:
        parts += ["<h2>Degradation: blur what the model looked at, or as much at random"
                  "</h2><p class='note'>A faithful map points at what the decision uses: "
                  "blurring it should cost more than the same amount of blur put in random "
                  "places. First the headline, that difference with its 95% interval; then "
                  "the drops it is the difference of (red minus grey). Blue, blurring the "
                  "rest, is the paper's comparison: it blurs far more of the image when the "
                  "map is focused.</p>",
                  *([_img(headlines["degradation"], "degradation headline")]
                    if "degradation" in headlines else []),
                  _img(drops, "degradation drops")]
    parts += _examples(folder, order, images, labels)
    parts.append("<h2>Provenance</h2><table>")
    for key in ("harness_version", "onnxruntime_version", "numba_version", "image_set_hash",
                "salience_config", "seed"):
        parts.append(f"<tr><th>{key}</th><td>{html.escape(str(first[key]))}</td></tr>")
    parts.append("</table><table><tr><th>model</th><th>provider</th><th>sha256</th>"
                 "<th>forward passes</th><th>status</th></tr>")
    firsts = {r["model"]: r for r in scores.unique("model", keep="first").iter_rows(named=True)}
    for r in (firsts[m] for m in order if m in firsts):
        parts.append(f"<tr><td class='name'>{html.escape(r['model'])}</td>"
                     f"<td>{r['provider'] or '-'}</td>"
                     f"<td><code>{r['model_sha256'] or '-'}</code></td>"
                     f"<td class='num'>{r['forward_passes']:,}</td>"
                     f"<td>{html.escape(r['status'])}</td></tr>")
    parts.append("</table></body></html>")
    # every table scrolls inside its own box: a narrow window never pushes the page wide
    return "\n".join(parts).replace("<table", "<div class='scroll'><table").replace(
        "</table>", "</table></div>")


def _examples(folder, order, images: int, labels: dict) -> list[str]:
    """The overlays of examples.npz, in the leaderboard's order ([] without the file),
    models by their ``labels``.

    Raises:
        HarnessError: the file is not the examples a run writes.
    """
    import zipfile

    from harness.report.figures import overlay_figure

    path = folder / RunDir.EXAMPLES
    if not path.is_file():
        return []
    parts = []
    try:
        with np.load(path, allow_pickle=False) as ex:
            k = min(images, len(ex["images"]))
            kept = [labels.get(str(m), _label(str(m))) for m in ex["models"]]
            at = [kept.index(m) for m in order if m in kept]  # the leaderboard's order
            models = [kept[i] for i in at]
            imgs = np.repeat(ex["images"][None, :k], len(models), axis=0)
            parts += ["<h2>What the models look at</h2><p class='note'>Salience over the "
                      "clean image, one column per model (bright = salient).</p>",
                      _img(overlay_figure(imgs, ex["clean"][at, :k], models,
                                          [shown(n)[-24:] for n in ex["names"][:k]]),
                           "overlays")]
            if len(ex["variant_names"]):
                parts += ["<h2>One image under the measures' perturbations</h2><p class='note'>"
                          "The first image flipped, shifted, at the highest noise level and "
                          "degraded both ways: what each number above compares.</p>",
                          _img(overlay_figure(ex["variant_images"][at], ex["variant_maps"][at],
                                              models, [str(v) for v in ex["variant_names"]]),
                               "perturbation overlays")]
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise HarnessError(f"{path}: not the examples of a harness run ({first_line(exc)}); "
                           "delete it to leave the examples out of the report") from None
    return parts


LABEL = 48  # characters of a model's name the report shows


def _label(name: str) -> str:
    """A name as the report shows it: control characters escaped, a long one cut in
    its middle (a 5,000-character name would not lay out, in a table or a figure)."""
    text = printable(name)
    if len(text) <= LABEL:
        return text
    return text[:LABEL - 17] + "…" + text[-16:]


def _labels(models) -> dict[str, str]:
    """Each model's label (:func:`_label`), distinct even where two cut names meet."""
    out, used = {}, set()
    for m in models:
        label, k = _label(m), 2
        while label in used:
            label, k = f"{_label(m)} ({k})", k + 1
        used.add(label)
        out[m] = label
    return out


def write_report(run_dir, out, images: int = 4, force: bool = False) -> Path:
    """Write the report of ``run_dir`` to ``out``; an existing file there must be a
    report the harness wrote (or ``force``)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise HarnessError("harness report needs matplotlib: pip install "
                           "'salience-harness[report]' (in a clone: pip install -e '.[report]')"
                           ) from None
    out = Path(out)
    check_replaceable(out, is_report, force)
    page = build_report(run_dir, images)
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def is_report(path: Path) -> bool:
    """Whether the file at ``path`` is a report the harness wrote (its head says so)."""
    with open(path, "rb") as handle:
        return GENERATOR.encode() in handle.read(512)
