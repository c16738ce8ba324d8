"""What stopping when decided saves: the CI recipe of docs/ci.md with --until-decided on a
regressed checkpoint of the built-in zoo (faces-guided-1's weights under faces-xent-1's
name), against the full run of the same checkpoint, both from a cold cache, in one run.

Grad-CAM maps, every measure but sanity (whose 50 twins would make the runs 3x longer
without changing what is compared); main's run is the baseline. Targets: the
sequential run fails the gate, as the full run's gate does, on at most 0.35 of the
full run's forward passes. Wall time is printed as a ratio too: each look recomputes the
measures over the images so far, so it saves less than the passes do.
"""

import json
import time

from tests.test_run import invoke
from tests.test_sequential_run import _manifest

MEASURES = "entropy,out_of_set,transforms,stability,degradation,agreement"


def _timed(*args):
    start = time.perf_counter()
    res = invoke(*args)
    return res, time.perf_counter() - start


def test_sequential_gate_against_the_full_run(benchmark, tmp_path):
    common = ("--method", "cam", "--measures", MEASURES, "--quiet")
    res = invoke("run", *common, "--out", tmp_path / "main", "--cache", tmp_path / "c0")
    assert res.exit_code == 0, res.output
    gate = tmp_path / "gate.toml"
    gate.write_text("no_regression = true\ntolerance = 0.01\n")
    zoo = _manifest(tmp_path, "regressed", ("faces-xent-1", "faces-guided-1"))
    seq, seq_s = _timed("run", "--zoo", zoo, *common, "--until-decided", "--rules", gate,
                        "--baseline-run", tmp_path / "main", "--out", tmp_path / "seq",
                        "--cache", tmp_path / "c1")
    full, full_s = _timed("run", "--zoo", zoo, *common, "--out", tmp_path / "full",
                          "--cache", tmp_path / "c2")
    assert seq.exit_code == 1 and full.exit_code == 0, (seq.output, full.output)
    checked = invoke("gate", tmp_path / "full", "--rules", gate, "--baseline",
                     tmp_path / "main")
    assert checked.exit_code == 1, checked.output
    record = json.loads((tmp_path / "seq" / "run.json").read_text())["sequential"]
    passes = record["passes_used"] / record["passes_full"]
    print(f"\nsequential: stopped at {record['images_used']} of {record['images_total']} "
          f"images; forward passes {record['passes_used']:,} of {record['passes_full']:,} "
          f"({passes:.2f}); wall time {seq_s:.1f} s against {full_s:.1f} s "
          f"({seq_s / full_s:.2f})")
    benchmark.extra_info.update(passes_ratio=passes, wall_ratio=seq_s / full_s)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert passes <= 0.35
