"""The zoo study's figures, generated: every table and number of the built-in zoo's study
in the README and docs/ comes from run folders through this script, never by hand.

    harness run --out results/zoo
    harness run --method cam --out results/zoo-cam
    harness run --method rise --limit 40 --measures entropy --out results/zoo-rise
    harness run --method rise --limit 40 --measures entropy --target face \\
        --out results/zoo-rise-face
    harness run --measures faithfulness,degradation --out results/zoo-faithfulness
    python model_zoo/faces/experiment.py summarise occlusion results/zoo
    python model_zoo/faces/experiment.py summarise cam results/zoo-cam
    python model_zoo/faces/experiment.py summarise rise results/zoo-rise
    python model_zoo/faces/experiment.py summarise rise-face results/zoo-rise-face
    python model_zoo/faces/experiment.py summarise faithfulness results/zoo-faithfulness
    # the CI recipe of docs/ci.md, as its commands run in a scratch folder: harness zoo
    # export demo; main's CAM run (--zoo demo/zoo.toml --data demo/images/ --out-of-set
    # demo/out_of_set_faces/ --method cam --out results/main); the cp; the run
    # --until-decided into results/ckpt-43; then
    python model_zoo/faces/experiment.py summarise sequential SCRATCH/results/ckpt-43
    # the gate example of docs/ci.md: faces-xent-2's weights under faces-xent-1's name
    harness run --zoo retrained.toml --out results/zoo-retrained
    python model_zoo/faces/experiment.py summarise gate results/zoo-retrained results/zoo
    python model_zoo/faces/experiment.py write     # every block, from the stored summaries
    python model_zoo/faces/experiment.py check     # exit 1 naming each block that differs

``summarise`` keeps what the blocks need of a run in ``summaries/NAME.json`` (per model:
headlines, mean rank, accuracy, flat share; per family and measure the value with the
percentile interval of the two-level bootstrap of ``families.parquet``; every family
difference; the separable pair counts; the chance levels; the run's cost; for the
occlusion run the output of the commands the docs show), with the hashes of the run
files it read. ``write`` renders every block ``<!-- zoo:NAME SUMMARY@HASH ... -->`` ...
``<!-- /zoo:NAME -->`` of the README and docs from those summaries; the opening marker
names the summaries with the first 12 hex digits of each file's sha256, so a block left
from another run shows. ``tests/test_zoo_figures.py`` checks every block against the
stored summaries and the CAM blocks against a fresh ``harness run --method cam``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
SUMMARIES = HERE / "summaries"
DOCUMENTS = (ROOT / "docs" / "zoo.md", ROOT / "README.md",
             *(ROOT / "docs" / name for name in ("running.md", "ci.md", "measures.md")))
ORDER = ("faces-xent", "faces-cyborg", "faces-guided")
# the settings of each summarised run beyond the defaults: what ``summarise`` checks
RUNS = {"occlusion": {"method": "occlusion"},
        "cam": {"method": "cam"},
        "rise": {"method": "rise", "limit": 40, "measures": ["entropy"]},
        "rise-face": {"method": "rise", "limit": 40, "measures": ["entropy"], "target": "face"},
        "faithfulness": {"method": "occlusion", "measures": ["faithfulness", "degradation"]},
        # the CI recipe of docs/ci.md: a regressed checkpoint against the CAM run
        "sequential": {"method": "cam", "until_decided": True},
        # the gate example of docs/ci.md: faces-xent-2's weights under faces-xent-1's name,
        # gated against the occlusion run
        "gate": {"method": "occlusion"}}
GATE_RULES = {"gate": "no_regression = true\n",
              "bounds": 'rules = ["entropy <= 0.6", "entropy.ci_low <= 0.6", '
                        '"entropy.ci_high <= 0.62"]\n'}
BOUNDS_MODEL = "faces-xent-3"  # docs/ci.md's example of rules on interval bounds
# the decision examples of docs/running.md, run on the occlusion run's folder
CONSTRAINTS = ("sanity.ci_low >= 0.72", "accuracy not worse than the best by more than 0.05")
DETAILS = (("degradation", "paper_gap"), ("sanity", "ssim"),  # statistics the text cites
           *((m, "beyond_chance") for m in ("deletion", "insertion", "road",
                                             "faithfulness_correlation")))
RESAMPLES, SEED = 2000, 0  # Spearman intervals over models or maps
BLOCK = re.compile(r"<!-- zoo:(?P<name>[\w-]+)(?P<sources>[^>]*?) -->(?P<body>.*?)"
                   r"<!-- /zoo:(?P=name) -->", re.S)


# --- summaries -----------------------------------------------------------------------

def summarise(name: str, run_dir, baseline=None) -> dict:
    """What the blocks need of one finished run (module docstring); ``baseline``: the
    run the ``gate`` example compares with."""
    from harness.measures.accuracy import NAME as ACCURACY
    from harness.results import reading
    from harness.results.comparisons import values
    from harness.results.leaderboard import build, directions
    from harness.rundir import RunDir
    from harness.stats.bootstrap import percentile_interval
    from harness.stats.families import family_draws

    folder = RunDir(run_dir)
    info = folder.info()
    _check_settings(name, info["config"])
    scores = reading.scores(folder)
    per_image = reading.per_image(folder, scores)
    pairs, families = reading.pairs(folder), reading.pairs(folder, families=True)
    vals = values(scores, per_image)
    board = build(scores, per_image, pairs)
    stat = {(m, s, st): v for m, s, st, v in
            scores.select("model", "measure", "statistic", "value").rows()}
    # the run's order of the measures, accuracy last
    measures = [m for m in [*directions(scores), ACCURACY] if m in vals.columns]
    models = [{"model": r["model"], "family": r["family"], "mean_rank": r["mean_rank"],
               "flat_fraction": r["flat_fraction"],
               "values": {m: stat.get((r["model"], m, "headline")) for m in measures},
               "details": {f"{m}.{d}": stat.get((r["model"], m, d)) for m, d in DETAILS}}
              for r in board.sort("model").iter_rows(named=True)]
    table = {}
    for family in ORDER:
        members = [j for j, m in enumerate(vals.models) if vals.family[m] == family]
        table[family] = {}
        for m in measures:
            drawn = family_draws(vals.columns[m], members, vals.boot, family)
            table[family][m] = [drawn.value, *percentile_interval(drawn.draws)]
    references = {}
    for level in ("chance", "ceiling"):
        for m in measures:
            found = [v for (_, s, st), v in stat.items()
                     if s == m and st == level and v is not None]
            if found:
                references.setdefault(m, {})[level] = [min(found), max(found)]
    intervals = {}
    for r in scores.filter(scores["statistic"] == "headline").iter_rows(named=True):
        intervals.setdefault(r["model"], {})[r["measure"]] = [r["ci_low"], r["ci_high"]]
    config = info["config"]
    summary = {
        "run": {"method": config["salience"]["method"], "grid": config["salience"]["grid"],
                "target": config["salience"]["target"], "seed": config["seed"],
                "images": info["images"], "image_set_hash": info["image_set_hash"],
                "models": len(models), "forward_passes": info["forward_passes"],
                "seconds": info["seconds"], "sanity_twins": _twins(config),
                "harness_version": info["harness_version"],
                "files": {f: _sha256(folder.path / f) for f in
                          ("scores.parquet", "per_image.parquet", "families.parquet")}},
        "measures": measures,
        "higher": {m: vals.higher[m] for m in measures},
        "models": models,
        "families": table,
        "references": references,
        "family_pairs": families.to_dicts(),
        "intervals": intervals,
        "separable": _separable(scores, pairs),
    }
    if name == "occlusion":
        summary["outputs"] = _outputs(folder.path)
    if name == "gate":
        summary["gate"] = _gate_output(folder.path, GATE_RULES["gate"], baseline)
    if name == "cam":
        summary["bounds"] = _gate_output(folder.path, GATE_RULES["bounds"])
    if name == "sequential":
        record = dict(info["sequential"])
        record.pop("states")
        record["all_checks"] = ["skip" if c["skipped"] else "pass" if c["passed"] else "fail"
                                for c in record["checks"]]
        record["checks"] = [c for c in record["checks"] if not c["passed"]]
        summary["sequential"] = record | {"rules": Path(config["rules"]).read_text()}
    if name in ("occlusion", "cam"):
        summary["entropy_zero"] = _entropy_zero(config)
    return summary


def _check_settings(name, config):
    """Refuse a run made with other settings than the study's (``RUNS``)."""
    expected = {"method": "occlusion", "target": "clean", "limit": 0, "measures": [],
                "seed": 0, "until_decided": False} | RUNS[name]
    found = {"method": config["salience"]["method"], "target": config["salience"]["target"],
             "limit": config["limit"], "measures": config["measures"], "seed": config["seed"],
             "until_decided": config.get("until_decided", False)}
    if found != expected:
        raise SystemExit(f"{name}: the run was made with {found}, the study uses {expected}")


def _twins(config) -> int:
    from harness.execution.plan import sanity_twins
    from harness.salience.settings import SalienceConfig

    return sanity_twins(SalienceConfig(**config["salience"]), config["sanity_twins"])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _separable(scores, pairs) -> dict:
    """Per measure: pairs, separable by the paired tests with Holm, and separable by the
    old rule (the two models' own 95% intervals do not overlap)."""
    import polars as pl

    heads = scores.filter(pl.col("statistic") == "headline")
    interval = {(r["model"], r["measure"]): (r["ci_low"], r["ci_high"])
                for r in heads.iter_rows(named=True)}
    out = {}
    for measure in pairs["measure"].unique(maintain_order=True):
        rows = pairs.filter(pl.col("measure") == measure)
        apart = sum(_apart(interval[(a, measure)], interval[(b, measure)])
                    for a, b in rows.select("model_a", "model_b").iter_rows())
        out[measure] = [len(rows), int((rows["p_adjusted"] < 0.05).sum()), apart]
    return out


def _apart(one, other) -> bool:
    """Two intervals that do not overlap; one without finite ends overlaps everything."""
    if None in one or None in other:
        return False
    return one[0] > other[1] or other[0] > one[1]


def _harness(args: list[str], exits=(0,)) -> tuple[str, int]:
    """``harness ARGS`` in this process: its output and exit code (another exit code
    stops the summary)."""
    from click.testing import CliRunner

    from harness.cli import cli

    result = CliRunner().invoke(cli, args)
    if result.exit_code not in exits:
        raise SystemExit(f"harness {' '.join(args)} failed: {result.output}")
    return result.output, result.exit_code


def _outputs(run_dir: Path) -> dict:
    """The text of the commands the docs show on this run (and of each ``pick``,
    its ``--json`` record, which the sentences reading it use)."""
    def shown(args):
        return _harness(args)[0].replace(str(run_dir), "results/zoo")

    out = {"compare": shown(["compare", str(run_dir), "--measure", "entropy"])}
    picks = {"pick": []} | {f"pick_constrained_{i}": ["--constraint", c]
                            for i, c in enumerate(CONSTRAINTS)}
    for key, extra in picks.items():
        out[key] = shown(["pick", str(run_dir), *extra])
        out[f"{key}_json"] = json.loads(shown(["pick", str(run_dir), *extra, "--json"]))
    return out


def _gate_output(run_dir: Path, rules: str, baseline=None) -> dict:
    """``harness gate`` on the run with these rules: its lines and exit code."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gate.toml"
        path.write_text(rules)
        args = ["gate", str(run_dir), "--rules", str(path)]
        output, code = _harness(args + (["--baseline", str(baseline)] if baseline else []),
                                exits=(0, 1))
    return {"rules": rules, "lines": output.splitlines(), "exit": code}


def _entropy_zero(config) -> list:
    """Spearman correlation, over the run's non-flat clean maps, between each map's
    histogram entropy and its share of cells at 0, with its interval over maps."""
    from harness.inputs.images import load_image_set
    from harness.inputs.zoo import builtin_manifest, read_manifest
    from harness.maps import normalize
    from harness.measures.entropy import zero_fraction
    from harness.model.classifier import OnnxClassifier
    from harness.numerics.similarity import entropy
    from harness.salience.settings import SalienceConfig

    zoo = read_manifest(builtin_manifest())
    pixels = load_image_set(zoo.data, split=zoo.split).pixels()
    salience = SalienceConfig(**config["salience"])
    h, zero = [], []
    for m in zoo.models:
        clf = OnnxClassifier(m.path, m.spec)
        q, flat = normalize(salience.explainer.explain_with_outputs(clf, pixels, salience)[1])
        h.append(entropy(q)[~flat])
        zero.append(zero_fraction(q, flat)[~flat])
    h, zero = np.concatenate(h), np.concatenate(zero)
    return [*spearman_ci(h, zero), len(h)]


def spearman_ci(x, y, resamples=RESAMPLES, seed=SEED):
    """Spearman correlation and its 95% percentile bootstrap interval over the pairs."""
    from harness.numerics.similarity import spearman

    x, y = np.asarray(x, float), np.asarray(y, float)
    drawn = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    low, high = np.nanpercentile(spearman(x[drawn], y[drawn]), [2.5, 97.5])
    return float(spearman(x[None], y[None])[0]), float(low), float(high)


def store(name: str, summary: dict) -> Path:
    SUMMARIES.mkdir(exist_ok=True)
    path = SUMMARIES / f"{name}.json"
    path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return path


def load(name: str) -> dict:
    return json.loads((SUMMARIES / f"{name}.json").read_text())


def tag(name: str) -> str:
    """``NAME@`` and the first 12 hex digits of the stored summary's sha256."""
    return f"{name}@{_sha256(SUMMARIES / f'{name}.json')[:12]}"


# --- rendering -----------------------------------------------------------------------

def _ci(value, low, high, sign=""):
    return f"{value:{sign}.3f} [{low:{sign}.3f}, {high:{sign}.3f}]"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _span(values, fmt=".2f", unit="") -> str:
    low, high = min(values), max(values)
    return f"{low:{fmt}}{unit}" if f"{low:{fmt}}" == f"{high:{fmt}}" else \
        f"{low:{fmt}}-{high:{fmt}}{unit}"


def accuracy_table(s) -> str:
    """The models' test accuracy, one column pair per family."""
    by = {f: [m for m in s["models"] if m["family"] == f] for f in ORDER}
    lines = ["| " + " | ".join(["model | test acc."] * len(ORDER)) + " |",
             "|" + " --- | --- |" * len(ORDER)]
    for row in zip(*by.values(), strict=True):
        lines.append("| " + " | ".join(f"{m['model']} | {m['values']['accuracy']:.3f}"
                                       for m in row) + " |")
    return "\n".join(lines)


def cost(s) -> str:
    run = s["run"]
    return f"{run['forward_passes']:,} forward passes in {_duration(run['seconds'])}"


def family_table(s) -> str:
    """Per family and measure the value with its two-level 95% interval, then the chance
    levels and the transforms ceiling."""
    measures = s["measures"]
    arrow = {True: "↑", False: "↓"}
    lines = ["| family | " + " | ".join(f"{m} {arrow[s['higher'][m]]}" for m in measures)
             + " |", "|---" * (len(measures) + 1) + "|"]
    for family in ORDER:
        lines.append(f"| {family} | " + " | ".join(_ci(*s["families"][family][m])
                                                   for m in measures) + " |")
    cells = []
    for m in measures:
        ref = s["references"].get(m, {})
        parts = [_span(ref["chance"], ".3f")] if "chance" in ref else []
        parts += [f"ceiling {_span(ref['ceiling'], '.3f')}"] if "ceiling" in ref else []
        cells.append(" / ".join(parts) or ("(control built in)" if m == "degradation" else ""))
    lines.append("| chance / ceiling | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def findings(s) -> str:
    """One line per measure: the families best first, then every family difference (the
    better point value first) with its studentised 95% interval and Holm-adjusted p,
    split into the separable ones and those the data cannot decide."""
    out = []
    for m in s["measures"]:
        higher = s["higher"][m]
        value = {f: s["families"][f][m][0] for f in ORDER}
        best_first = sorted(ORDER, key=lambda f: -value[f] if higher else value[f])
        separable, undecided = [], []
        for r in (r for r in s["family_pairs"] if r["measure"] == m):
            a, b, d, lo, hi = r["family_a"], r["family_b"], r["diff"], r["ci_low"], r["ci_high"]
            if (d < 0) == higher:  # the better point value first
                a, b, d, lo, hi = b, a, -d, -hi, -lo
            text = f"{a} - {b} {_ci(d, lo, hi, '+')}, p_adj {r['p_adjusted']:.3f}"
            (separable if r["p_adjusted"] < 0.05 else undecided).append(text)
        line = (f"- **{m}** {'↑' if higher else '↓'}: "
                + ", ".join(f"{f} {value[f]:.3f}" for f in best_first) + ". "
                + (f"Separable: {'; '.join(separable)}." if separable
                   else "No family difference is separable."))
        if undecided:
            line += f" The data cannot decide: {'; '.join(undecided)}."
        out.append(line)
    return "\n".join(out)


def ceilings(occ, cam) -> str:
    """The transforms ceiling of each method's grid on the zoo's images."""
    def one(s):
        return _span(s["references"]["transforms"]["ceiling"], ".2f")
    return (f"{one(occ)} for {occ['run']['grid']} x {occ['run']['grid']} occlusion on the "
            f"zoo's 64 px images, {one(cam)} for its 16 x 16 CAMs")


def separable_table(occ, cam) -> str:
    lines = ["| measure | pairs | occlusion: paired + Holm | occlusion: intervals apart | "
             "CAM: paired + Holm | CAM: intervals apart |", "|---|---|---|---|---|---|"]
    for m in occ["measures"]:
        pairs, paired, apart = occ["separable"][m]
        c = cam["separable"].get(m, ["", "", ""])
        lines.append(f"| {m} | {pairs} | {paired} | {apart} | {c[1]} | {c[2]} |")
    return "\n".join(lines)


def cam_cost(cam, occ) -> str:
    return (f"{cam['run']['forward_passes']:,} forward passes and "
            f"{_duration(cam['run']['seconds'])} for the {cam['run']['models']} models "
            f"({cam['run']['sanity_twins']} randomised twins each), against "
            f"{occ['run']['forward_passes']:,} passes and {_duration(occ['run']['seconds'])} "
            f"with {occ['run']['grid']} x {occ['run']['grid']} occlusion "
            f"({occ['run']['sanity_twins']} twins)")


def methods_agree(occ, cam) -> str:
    """Spearman correlations over models of the two runs' mean ranks and of each
    measure's headlines, with 95% bootstrap intervals over models."""
    a = {m["model"]: m for m in occ["models"]}
    b = {m["model"]: m for m in cam["models"]}
    names = sorted(a)
    rows = [("mean rank", [a[n]["mean_rank"] for n in names],
             [b[n]["mean_rank"] for n in names])]
    rows += [(m, [a[n]["values"][m] for n in names], [b[n]["values"][m] for n in names])
             for m in occ["measures"] if m in cam["measures"] and m != "accuracy"]
    lines = ["| compared, occlusion against CAM | Spearman rho [95% bootstrap interval over "
             f"{len(names)} models] | decided? |", "|---|---|---|"]
    for label, x, y in rows:
        keep = [i for i in range(len(x)) if x[i] is not None and y[i] is not None]
        rho, low, high = spearman_ci([x[i] for i in keep], [y[i] for i in keep])
        verdict = "yes, positive" if low > 0 else "yes, negative" if high < 0 else \
            "no: the interval holds 0"
        lines.append(f"| {label} | {_ci(rho, low, high)} | {verdict} |")
    return "\n".join(lines)


def faithfulness_agree(s) -> str:
    """Spearman correlations over models between the degradation gap and each
    faithfulness measure, as its headline (oriented so that higher reads as more
    faithful) and as its ``beyond_chance`` detail, with 95% bootstrap intervals over
    models."""
    def rho(values):
        pairs = [(v, r["values"]["degradation"]) for v, r in zip(values, s["models"],
                                                                  strict=True)
                 if None not in (v, r["values"]["degradation"])]
        r, low, high = spearman_ci(*zip(*pairs, strict=True))
        verdict = "agree" if low > 0 else "disagree" if high < 0 else "undecided"
        return f"{_ci(r, low, high)} {verdict}"

    lines = ["| Spearman rho with the degradation gap, 95% bootstrap interval over "
             f"{len(s['models'])} models | headline (deletion negated) | beyond_chance |",
             "|---|---|---|"]
    for m in (m for m in s["measures"] if m not in ("degradation", "accuracy")):
        sign = 1 if s["higher"][m] else -1
        heads = [None if r["values"][m] is None else sign * r["values"][m] for r in s["models"]]
        beyond = [r["details"][f"{m}.beyond_chance"] for r in s["models"]]
        lines.append(f"| {m} | {rho(heads)} | {rho(beyond)} |")
    return "\n".join(lines)


def entropy_zero(occ, cam) -> str:
    (r, lo, hi, n), (r2, lo2, hi2, n2) = occ["entropy_zero"], cam["entropy_zero"]
    return (f"{_ci(r, lo, hi)} with `zero_fraction` on occlusion maps ({n} non-flat maps of "
            f"{occ['run']['models']} models x {occ['run']['images']} images, Spearman, 95% "
            f"bootstrap interval over maps), {_ci(r2, lo2, hi2)} on CAM maps ({n2} maps)")


def rise_flat(rise, face) -> str:
    """The models' shares of flat maps under the default target and ``--target face``."""
    clean, faces = ([m["flat_fraction"] * 100 for m in s["models"]] for s in (rise, face))
    return (f"the default leaves {_span(clean, '.0f', '%')} of each model's maps flat, and "
            f"`--target face` leaves {_span(faces, '.0f', '%')}")


def sanity_range(s) -> str:
    """The families' sanity values, lowest to highest."""
    return _span([s["families"][f]["sanity"][0] for f in ORDER], ".2f")


def paper_gap(s) -> str:
    """The families' mean of their models' paper gaps (object - background), lowest to
    highest."""
    means = [np.mean([m["details"]["degradation.paper_gap"] for m in s["models"]
                      if m["family"] == f]) for f in ORDER]
    return _span(means, ".2f")


def sanity_ssim(occ, cam) -> str:
    """Spearman correlation over models between the sanity headline and ``sanity.ssim``."""
    lines = ["| maps | Spearman rho, sanity against sanity.ssim [95% interval over models] "
             "| sanity, over models | sanity.ssim, over models |", "|---|---|---|---|"]
    for label, s in (("occlusion", occ), ("CAM", cam)):
        pairs = [(m["values"]["sanity"], m["details"]["sanity.ssim"]) for m in s["models"]
                 if None not in (m["values"]["sanity"], m["details"]["sanity.ssim"])]
        x, y = zip(*pairs, strict=True)
        lines.append(f"| {label} ({len(pairs)} models) | {_ci(*spearman_ci(x, y))} | "
                     f"{_span(x)} | {_span(y)} |")
    return "\n".join(lines)


def pick_reading(occ) -> str:
    """The default pick in words: how often it comes first, what it cannot be told from,
    and what its lead over the runner-up would take to confirm."""
    d = occ["outputs"]["pick_json"]
    rivals = len(d["top_set"]) - 1
    text = (f"So the pick is `{d['pick']}`: it comes first in {d['p_best']:.0%} of the "
            "bootstrap resamples, ")
    text += (f"but the data cannot separate it from {rivals} other model"
             f"{'s' if rivals > 1 else ''}" if rivals else "and the data separate it from "
             "every other model")
    close, power = d["closest"], d["power"]
    if close is not None:
        lead = f"{close['diff']:.3g} {d['units']}, interval [{close['ci_low']:.2f}, " \
               f"{close['ci_high']:.2f}]"
        text += (f", and its lead over the runner-up ({lead}) is separable" if
                 close["p_adjusted"] < 0.05 else
                 f", and its lead over the runner-up ({lead}) would take about "
                 f"{power['images_needed']} images to confirm")
    return text + "."


def constrained_reading(key):
    """Which models a constraint leaves, from ``harness pick --json``."""
    def render(occ):
        d = occ["outputs"][f"{key}_json"]
        left = [m["model"] for m in occ["models"] if m["model"] not in d["excluded"]]
        names = f" ({', '.join(f'`{m}`' for m in left)})" if len(left) <= 3 else ""
        return (f"the constraint leaves {len(left)} of {len(occ['models'])} models{names}; "
                f"the pick among them is `{d['pick']}`")
    return render


def sequential_cost(seq) -> str:
    r = seq["sequential"]
    return (f"stopped at {r['images_used']} of {r['images_total']} images, "
            f"{r['passes_used']:,} of the full run's {r['passes_full']:,} forward passes "
            f"({r['passes_used'] / r['passes_full']:.0%})")


def sequential_output(seq) -> str:
    """The lines the recipe's run ends with: where it stopped, the failures, the
    tally."""
    from harness.results.stopping import summary

    r = seq["sequential"]
    width = max(len(c["model"]) for c in r["checks"]) if r["checks"] else 0
    lines = [summary(r)]
    lines += [f"FAIL  {c['model'].ljust(width)}  {c['what']}: {c['value']:.4g} {c['detail']}"
              for c in r["checks"]]
    tally = {k: sum(1 for c in r["all_checks"] if c == k) for k in ("pass", "fail", "skip")} \
        if "all_checks" in r else None
    if tally:
        lines.append(f"{tally['pass']} passed, {tally['fail']} failed, {tally['skip']} skipped")
    return "```\n" + "\n".join(lines) + "\n```"


def gate_example(gate) -> str:
    """The retrained model's lines, the first of another model, and the tally."""
    lines = gate["gate"]["lines"]
    own = [x for x in lines if x.split()[1:2] == ["faces-xent-1"]]
    other = next(x for x in lines if x.split()[1:2] == ["faces-xent-3"])
    return "```\n" + "\n".join([*own, other, "...", lines[-1]]) + "\n```"


def bounds_example(cam) -> str:
    """The rules on interval bounds, for one model of the CAM run."""
    lines = [x for x in cam["bounds"]["lines"] if x.split()[1:2] == [BOUNDS_MODEL]]
    return "```\n" + "\n".join(lines) + "\n```"


def bounds_intro(cam) -> str:
    m = next(m for m in cam["models"] if m["model"] == BOUNDS_MODEL)
    row = cam["intervals"][BOUNDS_MODEL]["entropy"]
    return f"`{BOUNDS_MODEL}` has entropy {_ci(m['values']['entropy'], *row)}"


def output(key, command=None):
    """A command's output as a code block, after the command when one is given."""
    def render(occ):
        shown = f"$ {command}\n" if command else ""
        return "```\n" + shown + occ["outputs"][key].rstrip("\n") + "\n```"
    return render


# block name -> (the summaries it is rendered from, the renderer); a block's body is on
# lines of its own when it spans lines
RENDER = {
    "accuracy": (("cam",), accuracy_table),
    "occlusion-cost": (("occlusion",), cost),
    "occlusion-families": (("occlusion",), family_table),
    "occlusion-findings": (("occlusion",), findings),
    "occlusion-sanity": (("occlusion",), sanity_range),
    "occlusion-paper-gap": (("occlusion",), paper_gap),
    "separable": (("occlusion", "cam"), separable_table),
    "ceilings": (("occlusion", "cam"), ceilings),
    "cam-cost": (("cam", "occlusion"), cam_cost),
    "cam-families": (("cam",), family_table),
    "cam-findings": (("cam",), findings),
    "cam-sanity": (("cam",), sanity_range),
    "cam-paper-gap": (("cam",), paper_gap),
    "methods-agree": (("occlusion", "cam"), methods_agree),
    "entropy-zero": (("occlusion", "cam"), entropy_zero),
    "rise-flat": (("rise", "rise-face"), rise_flat),
    "faithfulness-cost": (("faithfulness",), cost),
    "faithfulness-families": (("faithfulness",), family_table),
    "faithfulness-findings": (("faithfulness",), findings),
    "faithfulness-agree": (("faithfulness",), faithfulness_agree),
    "sanity-ssim": (("occlusion", "cam"), sanity_ssim),
    "compare": (("occlusion",), output("compare", "harness compare results/zoo "
                                                  "--measure entropy")),
    "pick": (("occlusion",), output("pick")),
    "pick-constrained-0": (("occlusion",), output("pick_constrained_0")),
    "pick-constrained-1": (("occlusion",), output("pick_constrained_1")),
    "pick-reading": (("occlusion",), pick_reading),
    "sequential-cost": (("sequential",), sequential_cost),
    "gate-example": (("gate",), gate_example),
    "bounds-intro": (("cam",), bounds_intro),
    "bounds-example": (("cam",), bounds_example),
    "sequential-output": (("sequential",), sequential_output),
    "constrained-0-reading": (("occlusion",), constrained_reading("pick_constrained_0")),
    "constrained-1-reading": (("occlusion",), constrained_reading("pick_constrained_1")),
}


def render(name: str, summaries: dict) -> tuple[str, str]:
    """Block ``name``'s opening marker and body, from ``summaries`` (name -> summary)."""
    sources, fn = RENDER[name]
    body = fn(*(summaries[s] for s in sources))
    marker = f"<!-- zoo:{name} {' '.join(tag(s) for s in sources)} -->"
    return marker, f"\n{body}\n" if "\n" in body else body


def blocks(text: str):
    """Every block of a document: (name, whole match, body)."""
    return [(m["name"], m[0], m["body"]) for m in BLOCK.finditer(text)]


def rewrite(text: str, summaries: dict, only=None) -> str:
    """``text`` with every block (or those named in ``only``) rendered anew."""
    def one(match):
        name = match["name"]
        if name not in RENDER:
            raise SystemExit(f"unknown block zoo:{name}")
        if only is not None and name not in only:
            return match[0]
        marker, body = render(name, summaries)
        return f"{marker}{body}<!-- /zoo:{name} -->"
    return BLOCK.sub(one, text)


def stored() -> dict:
    return {name: load(name) for name in RUNS if (SUMMARIES / f"{name}.json").exists()}


def main(argv):
    if argv[:1] == ["summarise"] and len(argv) in (3, 4):
        if argv[1] not in RUNS:
            raise SystemExit(f"summarise NAME DIR [BASELINE]: NAME is one of {', '.join(RUNS)}")
        sys.path.insert(0, str(ROOT))
        print(store(argv[1], summarise(*argv[1:])))
    elif argv in (["write"], ["check"]):
        sys.path.insert(0, str(ROOT))
        summaries, differ = stored(), []
        for path in DOCUMENTS:
            text = path.read_text()
            new = rewrite(text, summaries)
            if new != text:
                differ += [n for n, whole, _ in blocks(text) if whole not in new]
                if argv == ["write"]:
                    path.write_text(new)
        if argv == ["check"] and differ:
            raise SystemExit(f"blocks that differ from the stored summaries: {', '.join(differ)}")
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
