"""Scale: (a) a repeated run served by the salience cache, (b) the Dask engine against
in-process on this machine, (c) peak memory for 100 vs 1000 images.

Every timing is a ratio against a baseline measured in the same test:
(a) warm / cold run of the same command, target <= 0.05;
(b) Dask (2 single-threaded workers on a loopback LocalCluster) / in-process, reported,
    not enforced: on two cores the cluster can only redistribute the same cores (see
    the printed explanation);
(c) peak RSS of a whole `harness run` process on 1000 images / on 100, target <= 1.2.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from benchmarks.conftest import zoo_manifest
from harness.cli import cli
from harness.inputs.images import load_image_set
from harness.inputs.zoo import builtin_manifest, read_manifest


def zoo_subset(tmp_path):
    """The built-in zoo's first two seeds of each family (stability needs two)."""
    path, chosen = zoo_manifest(tmp_path, lambda m: m.seed <= 2)
    return path, len(chosen)


def timed_run(*args):
    start = time.perf_counter()
    res = CliRunner().invoke(cli, ["run", "--quiet", *map(str, args)])
    assert res.exit_code == 0, res.output
    return time.perf_counter() - start


def test_warm_cache(benchmark, tmp_path):
    manifest, n_models = zoo_subset(tmp_path)
    limit = 2 if benchmark.disabled else 20
    common = ("--zoo", manifest, "--limit", limit, "--cache", tmp_path / "cache")
    cold = timed_run(*common, "--out", tmp_path / "cold")
    warm = timed_run(*common, "--out", tmp_path / "warm")
    info = json.loads((tmp_path / "warm" / "run.json").read_text())
    assert info["computed_passes"] == 0
    ratio = warm / cold
    benchmark.extra_info.update(cold_s=cold, warm_s=warm, ratio=ratio)
    print(f"\nwarm cache: {n_models} models x {limit} images, cold {cold:.1f} s, warm "
          f"{warm:.2f} s ({info['reused_maps']:,} maps reused): ratio {ratio:.3f} "
          "(target <= 0.05)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if not benchmark.disabled:
        assert ratio <= 0.05


def test_dask_vs_in_process(benchmark, tmp_path):
    pytest.importorskip("distributed")
    manifest, n_models = zoo_subset(tmp_path)
    limit = 2 if benchmark.disabled else 16
    common = ("--zoo", manifest, "--limit", limit, "--shard-size", 4)
    timed_run(*common, "--out", tmp_path / "warmup")  # compile kernels, warm the disk
    alone = timed_run(*common, "--out", tmp_path / "in-process")
    dask = timed_run(*common, "--out", tmp_path / "dask", "--engine", "dask", "--workers", 2)
    same = (tmp_path / "dask" / "scores.parquet").read_bytes() == \
        (tmp_path / "in-process" / "scores.parquet").read_bytes()
    assert same
    ratio = dask / alone
    benchmark.extra_info.update(in_process_s=alone, dask_s=dask, ratio=ratio)
    print(f"\nDask, 2 workers x 1 thread vs in-process (ONNX Runtime on {os.cpu_count()} "
          f"threads), {n_models} models x {limit} images: {dask:.1f} s vs {alone:.1f} s, "
          f"ratio {ratio:.2f}; identical scores: {same}.\nWhat limits it: with as many "
          "workers as cores, both engines keep every core busy with forward passes, and "
          "Dask adds its own costs: starting worker processes (each imports ONNX Runtime "
          "and opens a session per model) and pickling each unit's pixels and maps. It "
          "wins where one ONNX Runtime pool cannot fill the machine (many cores: 1.88 x "
          "with 16 workers on 16 cores, see benchmarks/cluster_check.py) and where "
          "workers bring their own GPUs or machines.")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)


# The child reports its own peak (VmHWM, reset by exec): the rusage of a forked child
# would count the pages it shared with this pytest process before exec.
_REPORT_PEAK = """
import atexit, sys
def report():
    with open("/proc/self/status") as fh:
        peak = next(line.split()[1] for line in fh if line.startswith("VmHWM:"))
    sys.stderr.write(f"peak_kib={peak}\\n")
atexit.register(report)
from harness.cli import main
sys.argv = ["harness", *sys.argv[1:]]
main()
"""


def peak_rss_mib(args) -> float:
    """Peak resident memory of ``harness run ARGS`` in a process of its own."""
    proc = subprocess.run([sys.executable, "-c", _REPORT_PEAK, "run", "--quiet",
                           *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stderr.rsplit("peak_kib=", 1)[1].split()[0]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads /proc (Linux)")
def test_memory_does_not_grow_with_images(benchmark, tmp_path):
    """CAM salience keeps the runs short (one pass per image and perturbation); the
    images, units and maps take the same path as with occlusion."""
    zoo = read_manifest(builtin_manifest())
    base = load_image_set(zoo.data)
    sizes = (20, 100) if benchmark.disabled else (100, 1000)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(base), sizes[-1])
    jitter = rng.integers(-2, 3, (sizes[-1], *base.images.shape[1:]))
    images = np.clip(base.images[pick].astype(int) + jitter, 0, 255).astype(np.uint8)
    peaks = {}
    for n in sizes:
        data = tmp_path / f"images{n}.npz"
        np.savez(data, images=images[:n], labels=base.labels[pick[:n]],
                 label_names=np.array(base.label_names))
        peaks[n] = peak_rss_mib(["--model", zoo.models[0].path, "--data", data,
                                 "--method", "cam", "--out", tmp_path / f"run{n}",
                                 # one model: no family to compare for stability
                                 "--measures", "entropy,out_of_set,transforms,degradation,"
                                 "agreement"])
    ratio = peaks[sizes[1]] / peaks[sizes[0]]
    benchmark.extra_info.update({f"peak_rss_mib_{n}": v for n, v in peaks.items()},
                                ratio=ratio)
    print("\npeak RSS of `harness run`: " + ", ".join(
        f"{n} images {v:.0f} MiB" for n, v in peaks.items()) + f": ratio {ratio:.2f} "
          "(target <= 1.2)")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if not benchmark.disabled:
        assert ratio <= 1.2
