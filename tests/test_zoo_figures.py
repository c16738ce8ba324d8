"""The zoo study's figures in the README and docs are generated, never typed: every
marked block is what ``model_zoo/faces/experiment.py`` renders from the stored run
summaries (named by hash in the block's marker), and the CAM blocks are what a fresh
``harness run --method cam`` of the zoo gives."""

import importlib.util
import json

import pytest
from click.testing import CliRunner

from harness.cli import cli

SPEC = importlib.util.spec_from_file_location(
    "zoo_experiment", __import__("pathlib").Path(__file__).resolve().parents[1]
    / "model_zoo" / "faces" / "experiment.py")
experiment = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(experiment)


def _documents():
    return {path: path.read_text() for path in experiment.DOCUMENTS}


def test_every_zoo_block_is_rendered_from_the_stored_summaries():
    summaries = experiment.stored()
    assert set(summaries) == set(experiment.RUNS)
    found = []
    for path, text in _documents().items():
        for name, whole, _ in experiment.blocks(text):
            marker, body = experiment.render(name, summaries)
            assert whole == f"{marker}{body}<!-- /zoo:{name} -->", f"{path.name}: zoo:{name}"
            found.append(name)
    # every figure the script renders is shown
    assert set(found) == set(experiment.RENDER)


def test_a_block_from_another_run_is_found(tmp_path, monkeypatch):
    """An edited number, or a summary replaced without rewriting the blocks, fails the
    check with the block's name."""
    text = _documents()[experiment.DOCUMENTS[0]]
    name, whole, body = next(b for b in experiment.blocks(text) if "families" in b[0])
    edited = text.replace(whole, whole.replace(body, body.replace("0.", "0.9", 1)))
    assert experiment.rewrite(edited, experiment.stored()) == text
    summaries = experiment.stored()
    changed = json.loads(json.dumps(summaries["occlusion"]))
    changed["run"]["seconds"] += 1
    monkeypatch.setattr(experiment, "SUMMARIES", tmp_path)
    for key, summary in summaries.items():
        experiment.store(key, changed if key == "occlusion" else summary)
    assert experiment.rewrite(text, experiment.stored()) != text


@pytest.mark.slow
def test_the_cam_blocks_match_a_fresh_cam_run_of_the_zoo(tmp_path):
    """Every block rendered from the CAM run is the same when the summary comes from a
    run made now (its seconds, which no rerun repeats, taken from the stored one)."""
    out = tmp_path / "zoo-cam"
    res = CliRunner().invoke(cli, ["run", "--method", "cam", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    fresh = experiment.summarise("cam", out)
    summaries = experiment.stored()
    fresh["run"]["seconds"] = summaries["cam"]["run"]["seconds"]
    for key in ("models", "families", "family_pairs", "separable", "references"):
        assert key in fresh
    now = summaries | {"cam": fresh}
    checked = 0
    for path, text in _documents().items():
        for name, _, body in experiment.blocks(text):
            if "cam" in experiment.RENDER[name][0]:
                assert experiment.render(name, now)[1] == body, f"{path.name}: zoo:{name}"
                checked += 1
    assert checked >= 6
