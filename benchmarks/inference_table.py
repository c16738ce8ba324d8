"""The coverage and size table of docs/measures.md ("Statistics"): the paired interval
and test, through ``harness.stats.paired.paired``, on simulated per-image differences
whose true mean is 0, over n and skew.

    python -m benchmarks.inference_table [datasets]

prints the Markdown table (4,000 datasets per cell by default; the Monte Carlo SE of a
5% rate is then 0.34 points). Seeded: the same table every time.
"""

from __future__ import annotations

import sys

import numpy as np

from harness.stats.bootstrap import Bootstrap
from harness.stats.paired import BOOTSTRAP_T, SIGN_FLIP, paired

SIZES = (10, 20, 60, 200)
BOOTSTRAPS = 8  # datasets share a bootstrap in groups, side by side as columns


def _lognormal(sigma):
    return lambda rng, shape: rng.lognormal(0.0, sigma, shape) - np.exp(sigma ** 2 / 2)


SHAPES = {"normal (skew 0)": lambda rng, shape: rng.standard_normal(shape),
          "lognormal sigma 0.5 (skew 1.8)": _lognormal(0.5),
          "lognormal sigma 1 (skew 6.2)": _lognormal(1.0)}


def rates(draw, n: int, test: str, datasets: int, seed: int = 0) -> tuple[float, float]:
    """Coverage of 0 by the 95% interval and rejection rate of "no difference"."""
    rng = np.random.default_rng(seed)
    keys = [f"{i:064x}" for i in range(n)]
    covered = rejected = 0
    for b in range(BOOTSTRAPS):
        result = paired(draw(rng, (n, datasets // BOOTSTRAPS)), Bootstrap(seed + b, keys), test)
        covered += int(((result.ci_low <= 0) & (0 <= result.ci_high)).sum())
        rejected += int((result.p_value < 0.05).sum())
    total = BOOTSTRAPS * (datasets // BOOTSTRAPS)
    return covered / total, rejected / total


def table(datasets: int = 4000) -> str:
    lines = ["| differences | n | studentised: coverage | size | percentile + sign-flip: "
             "coverage | size |", "|---|---|---|---|---|---|"]
    for name, draw in SHAPES.items():
        for n in SIZES:
            cov_t, size_t = rates(draw, n, BOOTSTRAP_T, datasets)
            cov_s, size_s = rates(draw, n, SIGN_FLIP, datasets)
            lines.append(f"| {name} | {n} | {cov_t:.3f} | {size_t:.3f} | {cov_s:.3f} | "
                         f"{size_s:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(int(sys.argv[1]) if len(sys.argv) > 1 else 4000))
