"""Summarise runs of the built-in zoo per family (training recipe): the README's experiment.

    harness run --out results/zoo-occlusion
    harness run --method cam --out results/zoo-cam
    python model_zoo/faces/experiment.py results/zoo-occlusion [results/zoo-cam]

Prints, from the run folder's files:
1. per family and measure, the family's value (mean of its models' headlines) with the
   95% percentile interval of the two-level bootstrap of ``families.parquet`` (models
   within the family and images resampled);
2. every family difference of ``families.parquet`` with its interval and Holm-adjusted
   p-value;
3. per measure, how many of the model pairs the paired tests separate, against the old
   rule (two models' separate 95% intervals do not overlap);
4. with a second run: the Spearman correlation of the two runs' mean ranks over the
   models, and per measure of their headline values, each with a 95% bootstrap interval
   over models (2,000 resamples, seed 0).
"""

import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).parent
ORDER = ("faces-xent", "faces-cyborg", "faces-guided")


def _load(run_dir):
    sys.path.insert(0, str(HERE.parent.parent))
    from harness.results import reading
    from harness.rundir import RunDir

    folder = RunDir(run_dir)
    scores = reading.scores(folder)
    return (scores, reading.per_image(folder, scores), reading.pairs(folder),
            reading.pairs(folder, families=True))


def _ci(value, low, high):
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def family_table(scores, per_image):
    from harness.results.comparisons import values
    from harness.stats.bootstrap import percentile_interval
    from harness.stats.families import family_draws

    vals = values(scores, per_image)
    measures = list(vals.columns)
    print("| family | " + " | ".join(
        f"{m} {'↑' if vals.higher[m] else '↓'}" for m in measures) + " |")
    print("|---" * (len(measures) + 1) + "|")
    for family in ORDER:
        members = [j for j, m in enumerate(vals.models) if vals.family[m] == family]
        cells = []
        for m in measures:
            drawn = family_draws(vals.columns[m], members, vals.boot, family)
            cells.append(_ci(drawn.value, *percentile_interval(drawn.draws)))
        print(f"| {family} | " + " | ".join(cells) + " |")


def family_differences(families):
    print("\n| measure | difference | a - b [95% interval] | p_adj |")
    print("|---|---|---|---|")
    for r in families.iter_rows(named=True):
        mark = " **separable**" if r["p_adjusted"] < 0.05 else ""
        print(f"| {r['measure']} | {r['family_a']} - {r['family_b']} | "
              f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | "
              f"{r['p_adjusted']:.3f}{mark} |")


def separable_counts(scores, pairs):
    heads = scores.filter(pl.col("statistic") == "headline")
    interval = {(r["model"], r["measure"]): (r["ci_low"], r["ci_high"])
                for r in heads.iter_rows(named=True)}
    print("\n| measure | pairs | separable, paired + Holm | separable, intervals apart |")
    print("|---|---|---|---|")
    for measure in pairs["measure"].unique(maintain_order=True):
        rows = pairs.filter(pl.col("measure") == measure)
        paired = int((rows["p_adjusted"] < 0.05).sum())
        apart = sum(_apart(interval[(a, measure)], interval[(b, measure)])
                    for a, b in rows.select("model_a", "model_b").iter_rows())
        print(f"| {measure} | {len(rows)} | {paired} | {apart} |")


def _apart(one, other) -> bool:
    """Two intervals that do not overlap; one without finite ends overlaps everything."""
    if None in one or None in other:
        return False
    return one[0] > other[1] or other[0] > one[1]


def spearman_ci(x, y, resamples=2000, seed=0):
    """Spearman correlation and its 95% percentile bootstrap interval over the pairs."""
    def rho(a, b):
        ra, rb = _ranks(a), _ranks(b)
        if ra.std() == 0 or rb.std() == 0:
            return np.nan
        return float(np.corrcoef(ra, rb)[0, 1])

    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    draws = np.array([rho(x[i], y[i]) for i in rng.integers(0, len(x), (resamples, len(x)))])
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return rho(x, y), low, high


def _ranks(v):
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):  # ties share their mean rank
        ranks[v == value] = ranks[v == value].mean()
    return ranks


def agreement_between(run_a, run_b):
    from harness.results.leaderboard import build

    boards = []
    for scores, per_image, pairs, _ in (run_a, run_b):
        boards.append(build(scores, per_image, pairs).sort("model"))
    a, b = boards
    print("\n| compared | Spearman rho [95% bootstrap interval over models] |")
    print("|---|---|")
    print(f"| mean rank | {_ci(*spearman_ci(a['mean_rank'], b['mean_rank']))} |")
    for m in [c for c in a.columns if c + "_rank" in a.columns]:
        print(f"| {m} | {_ci(*spearman_ci(a[m], b[m]))} |")


def main(run_dir, other=None):
    run = _load(run_dir)
    scores, per_image, pairs, families = run
    family_table(scores, per_image)
    family_differences(families)
    separable_counts(scores, pairs)
    if other:
        agreement_between(run, _load(other))


if __name__ == "__main__":
    main(*sys.argv[1:3])
