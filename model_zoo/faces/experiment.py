"""Summarise a run of the built-in zoo per family (recipe): the README's experiment.

    harness run --out results/zoo-occlusion
    python model_zoo/faces/experiment.py results/zoo-occlusion

Per family and measure: the mean of the five seeds' headlines with a 95% t-interval
over the seeds (seed-to-seed variation is what separates recipes; each model's own
bootstrap interval is in the run's leaderboard). Stability is a family value already;
it is shown with its bootstrap interval over images. Test accuracy from the manifest.
"""

import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).parent
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571}  # t quantiles by sample size
ORDER = ("faces-xent", "faces-cyborg", "faces-guided")


def interval(values):
    v = np.asarray(values, float)
    mean = v.mean()
    half = T975[len(v)] * v.std(ddof=1) / np.sqrt(len(v))
    return f"{mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]"


def main(run_dir):
    sys.path.insert(0, str(HERE.parent.parent))
    from harness.inputs.zoo import read_manifest

    accuracy = {m.name: m.test_accuracy for m in read_manifest(HERE / "manifest.toml").models}
    heads = pl.read_parquet(Path(run_dir) / "scores.parquet").filter(
        pl.col("statistic") == "headline")
    measures = list(dict.fromkeys(heads["measure"].to_list()))
    arrows = dict(zip(heads["measure"], heads["higher_is_better"], strict=False))
    print("| family | test accuracy | " + " | ".join(
        f"{m} {'↑' if arrows[m] else '↓'}" for m in measures) + " |")
    print("|---" * (len(measures) + 2) + "|")
    for family in ORDER:
        rows = heads.filter(pl.col("family") == family)
        models = sorted(set(rows["model"]))
        cells = [interval([accuracy[m] for m in models])]
        for m in measures:
            r = rows.filter(pl.col("measure") == m)
            if m == "stability":
                first = r.row(0, named=True)
                cells.append(f"{first['value']:.3f} [{first['ci_low']:.3f}, "
                             f"{first['ci_high']:.3f}]")
            else:
                cells.append(interval(r["value"].to_list()))
        print(f"| {family} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/zoo")
