"""What the statistics cost against the forward passes they summarise.

A run of 15 models x 1,000 images x the six measures (plus test accuracy) is simulated
at the statistics stage: every headline's and every detail's studentised bootstrap
interval (about 70 per model, as the measures report), the per-image frame, every pair
of models and of families, the leaderboard with its rank sets, and the decision (P(best),
the pick's tests against its rivals, the power line). Its time is set against the
forward passes such a run needs (``required_passes`` with 7 x 7 occlusion) at the raw
``session.run`` speed of the built-in zoo's CNN, measured in the same process. Target:
the statistics take under 5% of the forward-pass time.
"""

import time

import numpy as np
import polars as pl

from benchmarks.test_salience_throughput import BATCH, raw_passes
from harness import OnnxClassifier
from harness.measures import DEFAULT
from harness.measures.base import mean_stat
from harness.results.comparisons import family_pairs, model_pairs, values
from harness.results.decision import decide
from harness.results.leaderboard import build, rank_rows
from harness.results.schema import per_image_frame, to_frame
from harness.runner import required_passes
from harness.stats.bootstrap import Bootstrap
from tests.onnx_models import cnn_model

MODELS, FAMILIES, DETAILS = 15, 3, 70
HIGHER = {"entropy": False, "out_of_set": True, "transforms": True, "stability": True,
          "degradation": True, "agreement": True, "accuracy": True}


def statistics(n_images: int, seed: int = 0) -> float:
    """Seconds for the statistics of a simulated run of ``n_images`` images."""
    rng = np.random.default_rng(seed)
    keys = [f"{i:064x}" for i in range(n_images)]
    models = [f"m{i}" for i in range(MODELS)]
    family = {m: f"f{i % FAMILIES}" for i, m in enumerate(models)}
    image = rng.standard_normal((n_images, 1))
    per = {(m, measure): image[:, 0] + rng.standard_normal(n_images) + 0.1 * (i % 5)
           for i, m in enumerate(models) for measure in HIGHER}
    for v in per.values():
        v[rng.random(n_images) < 0.05] = np.nan  # flat maps give no value
    start = time.perf_counter()
    boot = Bootstrap(seed, keys)
    records = []
    for (m, measure), v in per.items():
        stat = mean_stat("headline", v, boot)
        records.append({"model": m, "family": family[m], "measure": measure,
                        "statistic": "headline", "value": stat.value, "ci_low": stat.ci_low,
                        "ci_high": stat.ci_high, "n": stat.n,
                        "higher_is_better": HIGHER[measure], "seed": seed, "status": "ok"})
    for m in models:  # the detail rows every measure reports beside its headline
        for _ in range(DETAILS):
            mean_stat("detail", per[(m, "entropy")], boot)
    scores = to_frame(records)
    per_image = per_image_frame([(m, s, v) for (m, s), v in per.items()], keys)
    vals = values(scores, per_image)
    pairs = model_pairs(vals)
    family_pairs(vals)
    board = build(scores, per_image, pairs)
    decide(vals, pl.concat([scores, rank_rows(scores, board)]), pairs, board)
    return time.perf_counter() - start


def test_statistics_cost(benchmark, tmp_path):
    n_images = 100 if benchmark.disabled else 1000
    model = OnnxClassifier(cnn_model(tmp_path / "zoo_like.onnx", 64, (16, 32, 64),
                                     strides=(1, 2, 2)), batch_size=BATCH)
    sample = 20 * BATCH
    per_pass = raw_passes(model.session, model.input_name, BATCH, sample) / sample
    passes = MODELS * required_passes(n_images, DEFAULT)
    forward = passes * per_pass
    seconds = statistics(n_images)
    ratio = seconds / forward
    benchmark.extra_info.update(images=n_images, statistics_s=seconds, forward_s=forward,
                                ratio=ratio)
    print(f"\nstatistics of {MODELS} models x {n_images} images x {len(HIGHER)} measures: "
          f"{seconds:.1f} s, {ratio:.2%} of the {passes:,} forward passes' {forward:.0f} s "
          "(target < 5%)")
    benchmark.pedantic(statistics, args=(20,), rounds=1, iterations=1)
    if not benchmark.disabled:
        assert ratio < 0.05
