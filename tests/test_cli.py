import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import cli
from tests.onnx_models import linear_model


@pytest.fixture
def image_dir(tmp_path, rng):
    root = tmp_path / "images"
    for label in ("face", "other"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (14, 14, 3), np.uint8)).save(
                root / label / f"{i}.png")
    return root


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.mark.parametrize("method", ["occlusion", "rise"])
def test_salience_writes_maps_and_overlays(tmp_path, linear_path, image_dir, method):
    out, png = tmp_path / "maps.npz", tmp_path / "png"
    res = _run("salience", linear_path, image_dir, "--method", method, "--n-masks", 20,
               "--out", out, "--png", png)
    assert res.exit_code == 0, res.output
    with np.load(out, allow_pickle=False) as maps:
        assert maps["raw"].shape == (4, 7, 7) and maps["q"].dtype == np.uint8
        assert maps["names"].tolist() == ["face/0.png", "face/1.png", "other/0.png", "other/1.png"]
    pictures = sorted(p.name for p in png.glob("*.png"))
    assert pictures == ["face__0.png", "face__1.png", "other__0.png", "other__1.png"]
    assert Image.open(png / pictures[0]).size == (224, 224)
    assert "provider CPUExecutionProvider" in res.output


def _bad(tmp_path, case, image_dir, linear_path):
    """(model, images) for each kind of user mistake."""
    if case == "missing_model":
        return tmp_path / "nope.onnx", image_dir
    if case == "not_onnx":
        (tmp_path / "junk.onnx").write_text("hello")
        return tmp_path / "junk.onnx", image_dir
    if case == "non_image_model":
        from tests.test_model import _non_image_model
        return _non_image_model(tmp_path / "vec.onnx"), image_dir
    if case == "truncated_image":
        png = image_dir / "face" / "0.png"
        png.write_bytes(png.read_bytes()[:50])
        return linear_path, image_dir
    if case == "empty_folder":
        (tmp_path / "empty").mkdir()
        return linear_path, tmp_path / "empty"
    if case == "nan_model":
        w = np.full((2, 14, 14, 3), 1.0 / (14 * 14 * 3), np.float32)
        nan = linear_model(tmp_path / "nan.onnx", w, bias=[-2.0, -2.0], post="Sqrt")
        return nan, image_dir
    raise AssertionError(case)


@pytest.mark.parametrize("case,message", [
    ("missing_model", "no such model file"),
    ("not_onnx", "not an ONNX model"),
    ("non_image_model", "not an image batch"),
    ("truncated_image", "face/0.png: cannot read image"),
    ("empty_folder", "no images found"),
    ("nan_model", "NaN or infinite scores for face/0.png, face/1.png, other/0.png"),
])
def test_user_mistakes_get_one_line(tmp_path, image_dir, linear_path, case, message):
    model, images = _bad(tmp_path, case, image_dir, linear_path)
    out = tmp_path / "maps.npz"
    res = _run("salience", model, images, "--out", out)
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists()


def test_bad_options(tmp_path, linear_path, image_dir):
    res = _run("salience", linear_path, image_dir, "--grid", 20, "--out", tmp_path / "m.npz")
    assert res.exit_code == 2 and "grid 20 is larger than the 14x14 images" in res.output
    res = _run("salience", linear_path, image_dir, "--baseline", "pink")
    assert res.exit_code == 2 and "--baseline 'pink'" in res.output


def test_help_lists_the_measures_and_no_summary_is_cut_off():
    from harness.cli.run import DEFAULT_MEASURES, MEASURE_NAMES
    from harness.measures import DEFAULT, MEASURES

    assert MEASURE_NAMES == tuple(MEASURES)  # the list --help shows without loading them
    assert DEFAULT_MEASURES == DEFAULT
    top = CliRunner().invoke(cli, ["--help"]).output
    assert "..." not in top.split("Commands:")[1]  # click cuts a long summary with ...
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    assert all(name in run_help for name in MEASURE_NAMES) and "[default: (7)]" in run_help
    assert "2 when the gate cannot check" in " ".join(
        CliRunner().invoke(cli, ["gate", "--help"]).output.split())  # wrapped by click
