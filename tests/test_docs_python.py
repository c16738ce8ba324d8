"""The Python examples of the README and the guides run as written, each in a folder
holding a small model and labelled images (``model.onnx``, ``images/``), which is all
they may assume. A block that needs a library the test environment lacks says so on
its first line (``# needs torch``) and is skipped with that reason."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs import ROOT, blocks, needs, reader_files

BLOCKS = blocks("python")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """``model.onnx`` and ``images/`` (two labelled 16 px images) in the working folder."""
    monkeypatch.chdir(tmp_path)
    reader_files(tmp_path)
    return tmp_path


def test_the_documents_have_python_examples():
    names = {name for name, _ in BLOCKS}
    assert {"docs/python-api.md", "docs/your-model.md"} <= names
    assert all("from harness import" in block for _, block in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)),
                         ids=[f"{name}-{i}" for i, (name, _) in enumerate(BLOCKS)])
def test_python_example_runs(workdir, index):
    name, block = BLOCKS[index]
    missing = [m for m in needs(block) if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{name} block {index}: needs {', '.join(missing)}")
    namespace = {}
    exec(compile(block, f"{name} python block {index}", "exec"), namespace)
    if "scores" in namespace:
        assert namespace["scores"].height > 0


def test_the_run_toml_lists_every_setting_and_parses(tmp_path):
    """docs/running.md's run.toml names every setting of a run (the Dask-only ones as
    comments) and is read and validated as it is."""
    import dataclasses

    from harness.inputs.settings import RunConfig, build_config, read_config
    from harness.results.decision import DecisionConfig
    from harness.salience.settings import SalienceConfig

    text = (ROOT / "docs" / "running.md").read_text()
    block = next(b for b in re.findall(r"```toml\n(.*?)```", text, re.S)
                 if b.startswith("# run.toml"))
    path = tmp_path / "run.toml"
    path.write_text(block)
    settings = read_config(path)
    top_part, salience_part = block.split("[decision]")[0].split("[salience]")
    commented = set(re.findall(r"^# (\w+) = ", top_part, re.M)) | {
        f"salience.{k}" for k in re.findall(r"^# (\w+) = ", salience_part, re.M)}
    top = {f.name for f in dataclasses.fields(RunConfig)} - {"salience", "decision"}
    sal = {f"salience.{f.name}" for f in dataclasses.fields(SalienceConfig)}
    dec = {f"decision.{f.name}" for f in dataclasses.fields(DecisionConfig)}
    assert set(settings) | commented == top | sal | dec and not set(settings) & commented
    build_config(**settings)  # every value is valid as written


def test_your_model_guide_from_pytorch_export_to_a_leaderboard(workdir):
    """docs/your-model.md as a reader follows it: the PyTorch export with its metadata,
    then the guide's commands, to a leaderboard that names the model."""
    pytest.importorskip("torch", reason="the PyTorch path of docs/your-model.md needs torch")
    pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript")
    name, block = next((n, b) for n, b in BLOCKS if n == "docs/your-model.md" and "torch" in b)
    exec(compile(block, f"{name} PyTorch block", "exec"), {})
    text = (ROOT / "docs" / "your-model.md").read_text()
    section = text[text.index("## 2. Check what the harness sees"):]
    commands = [line.partition("  #")[0].strip()
                for block in re.findall(r"```bash\n(.*?)```", section, re.S)
                for line in block.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["salience", "run", "leaderboard"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        res = subprocess.run(command, shell=True, cwd=workdir, capture_output=True, text=True,
                             timeout=300, env=env)
        assert res.returncode == 0, f"{command}\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
    assert "model" in res.stdout  # the leaderboard's row of model.onnx
