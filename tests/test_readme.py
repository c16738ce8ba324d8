"""The README's Python examples run as written, on a small model and images made here
(the names the examples leave to the reader are defined first)."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.onnx_models import cnn_model

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """``model.onnx`` and ``images/`` (two labelled 16 px images) in the working folder."""
    monkeypatch.chdir(tmp_path)
    cnn_model(tmp_path / "model.onnx", 16, (4,))
    rng = np.random.default_rng(0)
    for label in ("face", "other"):
        (tmp_path / "images" / label).mkdir(parents=True)
        pixels = rng.integers(0, 256, (16, 16, 3), np.uint8)
        Image.fromarray(pixels).save(tmp_path / "images" / label / "a.png")
    return tmp_path


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2 and all("from harness import" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(workdir, index):
    rng = np.random.default_rng(1)
    cnn_model(workdir / "other.onnx", 16, (4,), seed=1)
    given = {  # what the evaluate example leaves to the reader
        "models": [str(workdir / "model.onnx"), str(workdir / "other.onnx")],
        "images": rng.integers(0, 256, (6, 16, 16, 3), np.uint8),
        "labels": np.array([0, 1, 0, 1, 0, 1]),
        "other": rng.integers(0, 256, (3, 16, 16, 3), np.uint8),
        "masks": rng.random((6, 16, 16)) > 0.7,
    }
    namespace = dict(given)
    exec(compile(BLOCKS[index], f"README python block {index + 1}", "exec"), namespace)
    if "scores" in namespace:
        assert namespace["scores"].height > 0


def test_readme_run_toml_lists_every_setting_and_parses(tmp_path):
    """The README's run.toml names every setting of a run (the Dask-only ones as
    comments) and is read and validated as it is."""
    import dataclasses

    from harness.inputs.settings import RunConfig, build_config, read_config
    from harness.results.decision import DecisionConfig
    from harness.salience.settings import SalienceConfig

    block = next(b for b in re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
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
