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
    from harness.data import load_image_set
    from harness.engine_dask import DaskEngine
    from harness.model import OnnxClassifier
    from harness.runner import evaluate
    from harness.zoo import read_manifest

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
    finally:
        engine.close()
    assert killed and killed[0] not in after and len(after) == 2  # the nanny started another
    assert got.equals(expected)
