"""Resumable runs: a run killed with SIGKILL is finished by ``--resume`` and gives the
scores of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.rundir import RunDir


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def start_run(zoo, out, *extra):
    """``harness run`` in a process of its own, one image per unit so there is a lot
    to interrupt."""
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--zoo", str(zoo),
                             "--out", str(out), "--shard-size", "1", "--quiet", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_after(proc, out, units: int) -> None:
    """SIGKILL the run once ``units`` units are in its journal."""
    deadline = time.monotonic() + 120
    while finished_units(out) < units and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {proc.stderr.read().decode()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def finished_units(out):
    log = out / RunDir.UNITS
    return log.read_text().count("\n") if log.is_file() else 0


def test_resume_after_kill_gives_the_uninterrupted_scores(cnn_zoo, tmp_path):
    whole = tmp_path / "whole"
    res = invoke("run", "--zoo", cnn_zoo, "--out", whole, "--shard-size", 1, "--quiet")
    assert res.exit_code == 0, res.output
    total = finished_units(whole)
    assert total == 3 * (8 + 3)

    cut = tmp_path / "cut"
    kill_after(start_run(cnn_zoo, cut), cut, 5)
    done = finished_units(cut)
    assert 5 <= done < total
    assert not (cut / "scores.parquet").exists()

    res = invoke("run", "--resume", cut)
    assert res.exit_code == 0, res.output
    assert f"{done} units finished before" in res.output
    info = json.loads((cut / "run.json").read_text())
    assert 0 < info["computed_passes"] < info["forward_passes"]
    assert info["reused_maps"] >= done
    assert (cut / "scores.parquet").read_bytes() == (whole / "scores.parquet").read_bytes()
    assert (cut / "leaderboard.csv").read_bytes() == (whole / "leaderboard.csv").read_bytes()


def test_resume_refuses_changed_inputs_and_new_settings(cnn_zoo, tmp_path):
    out = tmp_path / "run"
    assert invoke("run", "--zoo", cnn_zoo, "--out", out, "--measures", "entropy",
                  "--quiet").exit_code == 0
    again = invoke("run", "--resume", out, "--quiet")
    assert again.exit_code == 0, again.output
    extra = invoke("run", "--resume", out, "--grid", 5)
    assert extra.exit_code == 2 and "drop --grid" in extra.output
    extra = invoke("run", "--resume", out, "--model", cnn_zoo.parent / "solo.onnx")
    assert extra.exit_code == 2 and "drop --model " in extra.output
    nothing = invoke("run", "--resume", tmp_path)
    assert nothing.exit_code == 2 and "nothing to resume" in nothing.output
    from tests.onnx_models import cnn_model

    cnn_model(cnn_zoo.parent / "solo.onnx", size=32, widths=(8, 8), seed=42,
              metadata={"harness.classes": "face,other"})
    changed = invoke("run", "--resume", out)
    assert changed.exit_code == 2 and "models changed since this run started" in changed.output


def test_resume_from_another_folder(cnn_zoo, tmp_path, monkeypatch):
    """Settings are saved with absolute paths: relative ones given at the start still
    resolve when the run is resumed from elsewhere."""
    monkeypatch.chdir(cnn_zoo.parent)
    res = invoke("run", "--zoo", "manifest.toml", "--out", "run", "--measures", "entropy",
                 "--quiet")
    assert res.exit_code == 0, res.output
    monkeypatch.chdir(tmp_path)
    again = invoke("run", "--resume", cnn_zoo.parent / "run")
    assert again.exit_code == 0, again.output
    assert "computed 0 of" in again.output


@pytest.mark.parametrize("edit", [
    lambda plan: plan.pop("settings"),
    lambda plan: plan.update(settings=["not", "a", "table"]),
    lambda plan: plan["settings"].update(salience=5),
    lambda plan: plan["settings"].update(zoo=17),
    lambda plan: plan["settings"].update(seed="abc"),
])
def test_a_hand_edited_plan_is_refused_in_one_line(cnn_zoo, tmp_path, edit):
    out = tmp_path / "run"
    assert invoke("run", "--zoo", cnn_zoo, "--out", out, "--measures", "entropy",
                  "--quiet").exit_code == 0
    plan = json.loads((out / "plan.json").read_text())
    edit(plan)
    (out / "plan.json").write_text(json.dumps(plan))
    res = invoke("run", "--resume", out, "--quiet")
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "plan.json" in lines[0], res.output


def test_a_cam_run_says_its_maps_take_each_models_size(cnn_zoo, tmp_path):
    res = invoke("run", "--zoo", cnn_zoo, "--out", tmp_path / "run", "--measures", "entropy",
                 "--method", "cam", "--limit", "2")
    assert res.exit_code == 0, res.output
    first = res.output.splitlines()[0]
    assert "cam at each model's feature-map size salience" in first and "7x7" not in first


def test_a_sequential_run_resumes_to_the_uninterrupted_looks(cnn_zoo, tmp_path):
    """Killed between units, a run with --until-decided is finished by --resume with the
    same looks, verdicts and scores as one never interrupted."""
    args = ["--until-decided", "--look", "4"]
    whole = tmp_path / "whole"
    res = invoke("run", "--zoo", cnn_zoo, "--out", whole, "--shard-size", 1, "--quiet", *args)
    assert res.exit_code == 0, res.output
    cut = tmp_path / "cut"
    kill_after(start_run(cnn_zoo, cut, *args), cut, 5)
    res = invoke("run", "--resume", cut)
    assert res.exit_code == 0, res.output
    record = {r: json.loads((r / "run.json").read_text())["sequential"] for r in (whole, cut)}
    assert record[cut]["states"] == record[whole]["states"]
    assert record[cut]["looks"][-1]["images"] == record[whole]["looks"][-1]["images"]
    assert (cut / "scores.parquet").read_bytes() == (whole / "scores.parquet").read_bytes()
