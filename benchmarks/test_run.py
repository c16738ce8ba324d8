"""End-to-end `harness run` against the pure forward passes it needs.

The run's own pass count (run.json) is turned into the time those passes take as raw
``session.run`` calls of each model at the same batch size, measured in the same
process right after; ratio = run wall time / that. Target <= 1.25.
"""

import json
import time

import numpy as np
from click.testing import CliRunner

from benchmarks.conftest import zoo_manifest
from benchmarks.test_salience_throughput import raw_passes
from harness import OnnxClassifier
from harness.cli import cli

BATCH = 64


def test_run_overhead(benchmark, tmp_path):
    families = ("faces-xent", "faces-guided")
    manifest, chosen = zoo_manifest(
        tmp_path, lambda m: m.spec.family in families and m.seed in (1, 2))
    limit = 2 if benchmark.disabled else 20
    args = ["run", "--zoo", str(manifest), "--limit", str(limit), "--quiet",
            "--batch-size", str(BATCH)]

    def once(out):
        start = time.perf_counter()
        res = CliRunner().invoke(cli, args + ["--out", str(out)])
        assert res.exit_code == 0, res.output
        return time.perf_counter() - start

    once(tmp_path / "warm")  # compile and cache, as a user's second run would
    wall = once(tmp_path / "timed")
    info = json.loads((tmp_path / "timed" / "run.json").read_text())
    per_model = info["forward_passes"] // len(chosen)
    bare = 0.0
    for m in chosen:
        clf = OnnxClassifier(m.path, m.spec, batch_size=BATCH)
        raw_passes(clf.session, clf.input_name, BATCH, BATCH)  # warm
        bare += raw_passes(clf.session, clf.input_name, BATCH, per_model)
    ratio = wall / bare
    benchmark.extra_info.update(models=len(chosen), images=limit, passes=info["forward_passes"],
                                wall_s=wall, forward_s=bare, ratio=ratio)
    print(f"\nharness run: {len(chosen)} models x {limit} images, {info['forward_passes']:,} "
          f"passes in {wall:.1f} s; the bare passes take {bare:.1f} s: ratio {ratio:.2f} "
          "(target <= 1.25)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if not benchmark.disabled:
        assert ratio <= 1.25
    assert np.isfinite(ratio)
