"""The Dask engine on a loopback LocalCluster: the same scores as in-process, a model
failing on a worker, and a worker killed mid-run."""

import os
import signal

import polars as pl
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from harness.cli import cli  # noqa: E402


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_dask_gives_the_in_process_scores(cnn_zoo, tmp_path):
    """Same bytes from a 2-worker cluster, a model that returns NaN included: its
    failure travels back from the worker and is reported as in-process."""
    import numpy as np

    from tests.onnx_models import linear_model

    nan = linear_model(tmp_path / "nan.onnx", np.ones((2, 32, 32, 3), np.float32),
                       bias=[-1e9, 0], post="Sqrt", metadata={"harness.classes": "face,other"})
    runs = {}
    for engine in ("in-process", "dask"):
        out = tmp_path / engine
        extra = ("--workers", 2) if engine == "dask" else ()
        res = invoke("run", "--zoo", cnn_zoo, "--model", nan, "--out", out, "--engine", engine,
                     "--shard-size", 4, "--quiet", *extra)
        assert res.exit_code == 0, res.output
        runs[engine] = out / "scores.parquet"
    assert runs["dask"].read_bytes() == runs["in-process"].read_bytes()
    status = dict(pl.read_parquet(runs["dask"]).select("model", "status").unique().rows())
    assert "NaN or infinite" in status["nan"] and status["cnn1"] == "ok"


def test_a_worker_killed_mid_run_is_replaced_and_the_run_completes(cnn_zoo, tmp_path):
    from harness import OnnxClassifier
    from harness.execution.dask_engine import PLUGIN, DaskEngine
    from harness.inputs.images import load_image_set
    from harness.inputs.zoo import read_manifest
    from harness.runner import evaluate

    zoo = read_manifest(cnn_zoo)
    models = [OnnxClassifier(m.path, m.spec) for m in zoo.models]
    data = load_image_set(zoo.data)
    expected = evaluate(models, data, measures="entropy,transforms,stability", shard_size=1)

    engine = DaskEngine(workers=2)
    pids = engine.client.run(os.getpid)
    killed = []

    def kill_one(done, total, unit, passes):
        if not killed and done >= 3:
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    try:
        got = evaluate(models, data, measures="entropy,transforms,stability", shard_size=1,
                       engine=engine, progress=kill_one)
        engine.client.wait_for_workers(2, timeout=60)
        after = set(engine.client.run(os.getpid).values())
        # a session per model per worker, kept across that worker's units
        held = engine.client.run(lambda dask_worker: [
            type(c).__name__ for c in dask_worker.plugins[PLUGIN].models.values()])
    finally:
        engine.close()
    assert killed and killed[0] not in after and len(after) == 2  # the nanny started another
    assert all(len(v) <= len(models) and set(v) <= {"OnnxClassifier"} for v in held.values())
    assert got.equals(expected)


def test_local_cluster_is_one_worker_per_gpu_with_dask_cuda(monkeypatch):
    """With dask-cuda and a GPU visible the local cluster is a LocalCUDACluster (one
    worker per GPU, the cores shared among them); otherwise a LocalCluster."""
    import sys
    import types

    import harness.execution.dask_engine as engine_dask
    import harness.model.session

    made = []

    def recorder(kind):
        def make(**kwargs):
            made.append((kind, kwargs))
            return kind
        return make

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = recorder("cuda")
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(engine_dask, "LocalCluster", recorder("cpu"))
    import onnxruntime

    monkeypatch.setattr(harness.model.session, "nvidia_gpu_visible", lambda: True)
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    assert engine_dask.local_cluster(None) == "cuda"
    kind, kwargs = made[-1]
    assert kwargs["n_workers"] is None and kwargs["threads_per_worker"] == 1
    assert kwargs["host"] == "127.0.0.1" and kwargs["env"]["HARNESS_WORKER_THREADS"] == "8"

    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # not installed
    assert engine_dask.local_cluster(4) == "cpu"
    assert made[-1][1]["n_workers"] == 4 and made[-1][1]["env"]["NUMBA_NUM_THREADS"] == "4"
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert engine_dask.local_cluster(None) == "cpu"  # a GPU ONNX Runtime cannot use
    monkeypatch.setattr(harness.model.session, "nvidia_gpu_visible", lambda: False)
    assert engine_dask.local_cluster(None) == "cpu" and made[-1][1]["n_workers"] == 16


def test_engine_mistakes_are_one_line(tmp_path, monkeypatch):
    import sys

    res = invoke("run", "--scheduler", "tcp://127.0.0.1:1", "--out", tmp_path / "a")
    assert res.exit_code == 2 and "need engine = \"dask\"" in res.output
    res = invoke("run", "--engine", "dask", "--workers", 0, "--out", tmp_path / "b")
    assert res.exit_code == 2 and "workers must be an integer >= 1" in res.output
    monkeypatch.setitem(sys.modules, "harness.execution.dask_engine", None)  # Dask not installed
    res = invoke("run", "--engine", "dask", "--limit", 1, "--out", tmp_path / "c")
    assert res.exit_code == 2 and "pip install 'salience-harness[dask]'" in res.output
    assert not (tmp_path / "c").exists()


def test_a_sequential_run_on_dask_looks_as_in_process(cnn_zoo, tmp_path):
    """--until-decided on a cluster: the looks happen between the cluster's batches of
    units, and the looks, verdicts and scores are the in-process run's."""
    import json

    runs = {}
    for engine in ("in-process", "dask"):
        out = tmp_path / engine
        extra = ("--workers", 2) if engine == "dask" else ()
        res = invoke("run", "--zoo", cnn_zoo, "--out", out, "--engine", engine, "--quiet",
                     "--until-decided", "--look", 4, "--measures", "entropy,transforms",
                     *extra)
        assert res.exit_code == 0, res.output
        runs[engine] = out
    record = {e: json.loads((o / "run.json").read_text())["sequential"]
              for e, o in runs.items()}
    assert [look["images"] for look in record["dask"]["looks"]] == [4, 8]
    assert record["dask"]["states"] == record["in-process"]["states"]
    assert (runs["dask"] / "scores.parquet").read_bytes() == \
        (runs["in-process"] / "scores.parquet").read_bytes()
