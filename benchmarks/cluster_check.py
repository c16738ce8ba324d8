"""The Dask engine on a machine with many cores (and, where there is one, a GPU):
`harness run` in-process against `--engine dask` with several worker counts, on the
built-in zoo, each checked to give the in-process scores byte for byte.

With dask-cuda installed it also runs once on a dask-cuda ``LocalCUDACluster`` joined
through ``--scheduler``, the way a multi-GPU machine is used (docs/scaling.md).

Usage (from the repository root; not collected by pytest):
    python benchmarks/cluster_check.py --workers 4,8,16 --limit 30
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.inputs.zoo import builtin_manifest, read_manifest


def manifest(folder: Path, per_family: int) -> Path:
    zoo = read_manifest(builtin_manifest())
    lines = [f'data = "{zoo.data}"', 'split = "test"',
             f"out_of_set = {json.dumps([str(p) for p in zoo.out_of_set])}"]
    for m in zoo.models:
        if m.seed <= per_family:
            lines += ["[[model]]", f'path = "{m.path}"', f'family = "{m.spec.family}"']
    path = folder / "zoo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(args, out: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--quiet",
                           "--out", str(out), *map(str, args)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"harness run {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="4,8,16")
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--per-family", type=int, default=2)
    opts = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    common = ["--zoo", manifest(folder, opts.per_family), "--limit", opts.limit,
              "--shard-size", 8]
    run([*common, "--limit", 1], folder / "warmup")  # compile the Numba kernels once
    alone = run(common, folder / "in-process")
    info = json.loads((folder / "in-process" / "run.json").read_text())
    reference = (folder / "in-process" / "scores.parquet").read_bytes()
    print(f"{os.cpu_count()} cores, {info['models']} models x {info['images']} images, "
          f"{info['forward_passes']:,} passes, providers {info['providers']}")
    print(f"in-process: {alone:6.1f} s  {info['forward_passes'] / alone:9,.0f} passes/s")
    for n in (int(w) for w in opts.workers.split(",")):
        out = folder / f"dask{n}"
        took = run([*common, "--engine", "dask", "--workers", n], out)
        same = (out / "scores.parquet").read_bytes() == reference
        print(f"dask x{n:<3d}   {took:6.1f} s  {info['forward_passes'] / took:9,.0f} passes/s  "
              f"{alone / took:5.2f} x in-process  identical scores: {same}")
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        print(f"dask-cuda: not checked ({exc})")
        return
    with LocalCUDACluster(threads_per_worker=1, host="127.0.0.1",
                          dashboard_address=None) as cluster:
        gpus = len(cluster.workers)
        took = run([*common, "--engine", "dask", "--scheduler", cluster.scheduler_address],
                   folder / "cuda")
    same = (folder / "cuda" / "scores.parquet").read_bytes() == reference
    print(f"LocalCUDACluster ({gpus} worker(s), one per GPU): {took:6.1f} s  identical "
          f"scores: {same}")


if __name__ == "__main__":
    main()
