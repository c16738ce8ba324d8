"""The run folder is the harness's only when its marker says so: a folder of the user's
is refused before anything is written, and two jobs cannot write into one folder."""

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.io import MARKER
from harness.rundir import RunDir
from tests.onnx_models import linear_model


@pytest.fixture
def study(tmp_path):
    model = linear_model(tmp_path / "lin.onnx",
                         np.random.default_rng(0).normal(size=(2, 16, 16, 3)) * 0.01)
    data = tmp_path / "data.npz"
    np.savez(data, images=np.random.default_rng(1).integers(0, 255, (6, 16, 16, 3), np.uint8))
    return model, data


def _run(model, data, out, *extra):
    return CliRunner().invoke(cli, ["run", "--model", str(model), "--data", str(data),
                                    "--measures", "entropy", "--grid", "4", "--quiet",
                                    "--out", str(out), "--cache", str(out.parent / "cache"),
                                    *extra])


def _snapshot(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_folder_of_the_users_is_refused_and_left_as_it_was(tmp_path, study):
    model, data = study
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("report.html", "run.json", "plan.json", "scores.parquet"):
        (mine / name).write_text(f"the user's {name}")
    before = _snapshot(tmp_path)
    res = _run(model, data, mine)
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "not empty and not a harness run folder" in lines[0]
    assert _snapshot(tmp_path) == before


def test_a_new_or_empty_folder_becomes_a_run_folder_and_runs_again(tmp_path, study):
    model, data = study
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new" / "run", tmp_path / "empty"):
        assert _run(model, data, out).exit_code == 0
        assert (out / MARKER).is_file() and (out / "scores.parquet").is_file()
        assert _run(model, data, out).exit_code == 0  # its own folder: replaced
        res = CliRunner().invoke(cli, ["run", "--resume", str(out), "--quiet"])
        assert res.exit_code == 0, res.output


def test_two_jobs_cannot_write_into_one_folder(tmp_path, study):
    model, data = study
    out = tmp_path / "run"
    assert _run(model, data, out).exit_code == 0
    before = _snapshot(out)
    with RunDir(out).owned():  # another job holds the folder
        res = _run(model, data, out)
        assert res.exit_code == 2 and "another harness job is writing to this folder" \
            in res.output
    assert _snapshot(out) == before
    assert _run(model, data, out).exit_code == 0  # the lock went with the job


def test_report_and_maps_never_replace_a_users_file(tmp_path, study):
    model, data = study
    out = tmp_path / "run"
    assert _run(model, data, out).exit_code == 0
    page = tmp_path / "page.html"
    page.write_text("<html>the user's page</html>")
    res = CliRunner().invoke(cli, ["report", str(out), "--out", str(page)])
    assert res.exit_code == 2 and "the harness did not write it" in res.output
    assert page.read_text() == "<html>the user's page</html>"
    assert CliRunner().invoke(cli, ["report", str(out), "--out", str(page),
                                    "--force"]).exit_code == 0
    assert CliRunner().invoke(cli, ["report", str(out), "--out", str(page)]).exit_code == 0

    maps = tmp_path / "maps.npz"
    np.savez(maps, mine=np.arange(3))
    before = maps.read_bytes()
    args = ["salience", str(model), str(data), "--grid", "4", "--out", str(maps)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "the harness did not write it" in res.output
    assert maps.read_bytes() == before
    assert CliRunner().invoke(cli, args + ["--force"]).exit_code == 0
    assert CliRunner().invoke(cli, args).exit_code == 0  # its own maps now
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "holiday.png").write_bytes(b"not ours")
    res = CliRunner().invoke(cli, args + ["--png", str(pictures)])
    assert res.exit_code == 2 and "not a harness overlay folder" in res.output
    assert [p.name for p in pictures.iterdir()] == ["holiday.png"]
