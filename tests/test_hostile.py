"""Untrusted models and images, bad input and hostile settings: each gets one clear line
and a non-zero exit (or, in a run, a failed model), and nothing is written outside the
output folder."""

import os
import subprocess
import sys

import numpy as np
import onnx
import polars as pl
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from harness.cli import cli
from tests.onnx_models import IR_VERSION, OPSET, linear_model, slow_model

SIZE = 8


def snapshot(root):
    """Every file under root with its size and modification time."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder, f)
            st_ = os.stat(p)
            out[p] = (st_.st_size, st_.st_mtime_ns)
    return out


@pytest.fixture
def sandbox(tmp_path, rng):
    """A model, a folder of images and an output path inside tmp_path."""
    model = linear_model(tmp_path / "model.onnx", rng.normal(size=(2, SIZE, SIZE, 3)))
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)).save(images / f"{i}.png")
    return tmp_path, model, images


def run_salience(tmp_path, model, images, *extra):
    """Run `harness salience`; returns (exit code, error lines), and checks nothing
    changed outside the output folder."""
    out = tmp_path / "out" / "maps.npz"
    before = snapshot(tmp_path)
    res = CliRunner().invoke(cli, ["salience", str(model), str(images), "--out", str(out),
                                   "--grid", "4", *map(str, extra)])
    after = snapshot(tmp_path)
    changed = {p for p in set(before) | set(after)
               if before.get(p) != after.get(p) and not p.startswith(str(tmp_path / "out"))}
    assert not changed, changed
    assert "Traceback" not in res.output
    return res.exit_code, [line for line in res.output.splitlines() if line.startswith("error:")]


def invoke_in(root, args):
    """Run the CLI and check that nothing under ``root`` changed outside the folders
    named by ``--out`` and ``--cache``, and that no traceback was printed."""
    args = [str(a) for a in args]
    outputs = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--out", "--cache")]
    before = snapshot(root)
    res = CliRunner().invoke(cli, args)
    after = snapshot(root)
    changed = {p for p in set(before) | set(after)
               if before.get(p) != after.get(p) and not any(p.startswith(o) for o in outputs)}
    assert not changed, changed
    assert "Traceback" not in res.output
    return res


def child_peak(*args) -> tuple[int, int]:
    """Run ``harness ARGS`` in a child process: its exit code and peak resident memory
    in KiB (RUSAGE_CHILDREN of a fresh parent, so only this child counts)."""
    command = [sys.executable, "-m", "harness.cli", *map(str, args)]
    probe = ("import resource, subprocess\n"
             f"res = subprocess.run({command!r}, capture_output=True, text=True, timeout=120)\n"
             "print(res.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), int(out[1])


def _raw_model(path, nodes, inputs, outputs, inits=(), opsets=(("", OPSET),)):
    """Save a model without running the checker (hostile files are not checked)."""
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(inits)),
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = IR_VERSION
    onnx.save(model, str(path))
    return path


def _io(shape=("N", 3, SIZE, SIZE)):
    return ([helper.make_tensor_value_info("image", TensorProto.FLOAT, list(shape))],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])])


def test_model_failing_the_checker(sandbox):
    tmp, _, images = sandbox
    ins, outs = _io()
    bad = _raw_model(tmp / "bad.onnx", [helper.make_node("Flatten", ["nowhere"], ["logits"])],
                     ins, outs)
    code, errors = run_salience(tmp, bad, images)
    assert code == 2 and len(errors) == 1 and "fails onnx.checker" in errors[0]


@pytest.mark.parametrize("location", ["/etc/passwd", "../outside.bin", "sub/../../x.bin"])
def test_external_data_outside_the_model_folder(sandbox, location):
    tmp, _, images = sandbox
    (tmp / "models").mkdir()
    ins, outs = _io()
    weight = numpy_helper.from_array(np.ones((SIZE * SIZE * 3, 2), np.float32), "W")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    model = _raw_model(tmp / "models" / "ext.onnx",
                       [helper.make_node("Flatten", ["image"], ["f"]),
                        helper.make_node("MatMul", ["f", "W"], ["logits"])], ins, outs, [weight])
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1
    assert "outside the model's folder; refused" in errors[0] and location in errors[0]


def test_unavailable_custom_op_domain(sandbox):
    tmp, _, images = sandbox
    ins, outs = _io()
    model = _raw_model(tmp / "custom.onnx",
                       [helper.make_node("Backdoor", ["image"], ["logits"], domain="com.evil")],
                       ins, outs, opsets=(("", OPSET), ("com.evil", 1)))
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1
    assert "custom domain 'com.evil'" in errors[0] and "'Backdoor'" in errors[0]


def test_absurd_input_size(sandbox):
    tmp, _, images = sandbox
    ins, outs = _io(("N", 3, 100000, 100000))
    model = _raw_model(tmp / "huge.onnx",
                       [helper.make_node("GlobalAveragePool", ["image"], ["g"]),
                        helper.make_node("Flatten", ["g"], ["f"]),
                        helper.make_node("Slice", ["f", "s0", "s1", "ax"], ["logits"])], ins, outs,
                       [numpy_helper.from_array(np.array([0]), "s0"),
                        numpy_helper.from_array(np.array([2]), "s1"),
                        numpy_helper.from_array(np.array([1]), "ax")])
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1
    assert "100000 x 100000 would take 111.8 GiB" in errors[0]


def test_model_timeout_marks_the_model_failed_and_the_run_goes_on(sandbox):
    tmp, model, images = sandbox
    slow = slow_model(tmp / "slow.onnx")
    out = tmp / "out"
    before = snapshot(tmp)
    res = CliRunner().invoke(cli, ["run", "--model", str(model), "--model", str(slow),
                                   "--data", str(images), "--grid", "4", "--measures", "entropy",
                                   "--model-timeout", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "did not finish within --model-timeout 1 s" in res.output
    status = dict(pl.read_parquet(out / "leaderboard.parquet").select("model", "status").rows())
    assert status["model"] == "ok" and status["slow"].startswith("failed: ")
    changed = {p for p, v in snapshot(tmp).items()
               if before.get(p) != v and not p.startswith(str(out))}
    assert not changed


def test_decompression_bomb_is_refused(sandbox, monkeypatch):
    tmp, model, images = sandbox
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20)  # 8 x 8 = 64 > 2 x 20
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1
    assert "refused: larger than Pillow's decompression-bomb limit of 20 pixels" in errors[0]


@pytest.mark.parametrize("case,message", [
    ("truncated", "cannot read image"),
    ("zero_byte", "cannot read image"),
    ("text_as_png", "cannot read image"),
])
def test_unreadable_images_are_refused(sandbox, case, message):
    tmp, model, images = sandbox
    target = images / "bad.png"
    if case == "truncated":
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(target)
        target.write_bytes(target.read_bytes()[:40])
    elif case == "zero_byte":
        target.write_bytes(b"")
    else:
        target.write_text("hello, I am text")
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1 and "bad.png" in errors[0] and message in errors[0]


def _mode_image(case):
    """(PIL image, expected RGB uint8 array) for each convertible kind of image."""
    grey = np.arange(SIZE * SIZE, dtype=np.uint8).reshape(SIZE, SIZE) * 3
    if case == "grey":
        return Image.fromarray(grey), np.repeat(grey[..., None], 3, -1)
    if case == "16bit":
        wide = grey.astype(np.uint16) * 257
        return Image.fromarray(wide), np.repeat(grey[..., None], 3, -1)
    if case == "alpha":
        rgba = np.zeros((SIZE, SIZE, 4), np.uint8)
        rgba[..., 0] = 200
        rgba[:4, ..., 3] = 255  # top half opaque red-ish, bottom half fully transparent
        expected = np.zeros((SIZE, SIZE, 3), np.uint8)
        expected[:4] = (200, 0, 0)
        expected[4:] = 255  # composited over white
        return Image.fromarray(rgba), expected
    if case == "palette":
        rgb = np.zeros((SIZE, SIZE, 3), np.uint8)
        rgb[:, :4] = (10, 200, 30)
        return Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4), rgb
    if case == "cmyk":
        rgb = np.full((SIZE, SIZE, 3), (0, 255, 0), np.uint8)
        return Image.fromarray(rgb).convert("CMYK"), rgb
    raise AssertionError(case)


@pytest.mark.parametrize("case,ext", [("grey", ".png"), ("16bit", ".png"), ("alpha", ".png"),
                                      ("palette", ".gif"), ("cmyk", ".jpg")])
def test_image_modes_are_converted_as_documented(tmp_path, case, ext):
    from harness.inputs.images import load_image_set

    image, expected = _mode_image(case)
    image.save(tmp_path / f"x{ext}")
    got = load_image_set(tmp_path / f"x{ext}").images[0]
    tolerance = 3 if ext == ".jpg" else 0
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance


def test_an_exif_orientation_is_applied(tmp_path):
    """A phone's photo stored sideways with EXIF orientation 6 (rotate 90 degrees
    clockwise to view) is read upright, as a viewer shows it."""
    from harness.inputs.images import load_image_set

    stored = np.zeros((4, 8, 3), np.uint8)  # 8 wide, 4 high as stored
    stored[0, 0] = (255, 0, 0)  # a red corner: stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    got = load_image_set(tmp_path / "photo.png").images[0]
    assert got.shape == (8, 4, 3)  # upright: 4 wide, 8 high
    assert tuple(got[0, -1]) == (255, 0, 0)  # turned clockwise: top-left went top-right


def test_a_rise_mask_bank_over_the_limit_is_refused_in_one_line(sandbox, monkeypatch):
    tmp, model, images = sandbox
    code, errors = run_salience(tmp, model, images, "--method", "rise", "--n-masks", 10**9)
    assert code == 2 and len(errors) == 1 and "n_masks 1,000,000,000 is above the limit of " \
        "100,000 (HARNESS_MAX_RISE_MASKS)" in errors[0]
    monkeypatch.setenv("HARNESS_MAX_RISE_MASKS", "10")
    code, errors = run_salience(tmp, model, images, "--method", "rise", "--n-masks", 11)
    assert code == 2 and "above the limit of 10" in errors[0]


def test_wrong_extension_is_read_by_content(sandbox):
    tmp, model, images = sandbox
    (images / "0.png").rename(images / "0.jpg")  # a PNG named .jpg
    code, errors = run_salience(tmp, model, images)
    assert code == 0 and not errors


def test_non_utf8_file_names_work(sandbox, rng):
    tmp, model, images = sandbox
    raw = os.path.join(os.fsencode(images), b"caf\xe9-\xff.png")
    Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), np.uint8)).save(os.fsdecode(raw))
    code, errors = run_salience(tmp, model, images, "--png", tmp / "out" / "png")
    assert code == 0 and not errors
    with np.load(tmp / "out" / "maps.npz", allow_pickle=False) as maps:
        assert len(maps["names"]) == 4
    assert len(list((tmp / "out" / "png").glob("*.png"))) == 4


def test_pickled_npz_is_refused(sandbox):
    tmp, model, _ = sandbox
    evil = tmp / "evil.npz"
    np.savez(evil, images=np.array([object()], dtype=object))
    code, errors = run_salience(tmp, model, evil)
    assert code == 2 and len(errors) == 1 and "cannot read .npz" in errors[0]


def test_no_np_load_allows_pickle():
    import pathlib
    import re

    root = pathlib.Path(__file__).parents[1] / "harness"
    for source in root.rglob("*.py"):
        for call in re.findall(r"np\.load\([^)]*\)", source.read_text()):
            assert "allow_pickle=False" in call, (source, call)


@pytest.mark.parametrize("text,message", [
    ("[salience]\ngrid = 0\n", "grid must be an integer >= 1"),
    ("noise_levels = [-0.1, 0.5]\n", "noise_levels must be increasing numbers in (0, 1]"),
    ("[salience]\ngrid = 4\nwindow = 5\n", "window must be an integer in [1, grid=4]"),
    ("limit = -3\n", "limit must be an integer >= 0"),
    ("model_timeout = 0\n", "model_timeout must be a number of seconds > 0"),
    ("[salience]\ngrid = 6\n", "grid 6 is too coarse for out_of_set, stability, degradation"),
    ("sed = 1\n", "unknown key 'sed'; did you mean 'seed'?"),
    ("[salience]\nmetod = 'rise'\n", "unknown key 'metod'; did you mean 'method'?"),
    ("measures = 5\n", "measures must be a list of measure names"),
    ("seed = 'abc'\n", "seed must be an integer in [0, 2^63)"),
    ("seed = 18446744073709551616\n", "seed must be an integer in [0, 2^63)"),
    ("limit = true\n", "limit must be an integer >= 0"),
    ("noise_levels = [0.5, true]\n", "noise_levels must be increasing numbers in (0, 1]"),
    ("model_timeout = inf\n", "model_timeout must be a number of seconds > 0"),
    ("model_timeout = 1e300\n", "model_timeout must be a number of seconds > 0"),
    ("data = 5\n", "data must be a path (a string)"),
    ("zoo = [5]\n", "zoo must be a path or a list of paths"),
    ("[salience]\nseed = 'abc'\n", "seed must be an integer in [0, 2^63 - 1)"),
    ("[salience]\nbaseline = true\n", "baseline must be 'blur', 'mean' or a number"),
])
def test_settings_out_of_range_are_refused_before_work(sandbox, text, message):
    tmp, model, images = sandbox
    config = tmp / "run.toml"
    config.write_text(text)
    out = tmp / "out"
    res = CliRunner().invoke(cli, ["run", "--config", str(config), "--model", str(model),
                                   "--data", str(images), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], res.output
    assert not out.exists()


def test_unknown_gate_key(sandbox):
    tmp, *_ = sandbox
    rules = tmp / "gate.toml"
    rules.write_text('rules = ["entropy <= 1"]\napplies = "best"\n')
    res = CliRunner().invoke(cli, ["gate", str(tmp), "--rules", str(rules)])
    assert res.exit_code == 2 and "unknown key 'applies'; did you mean 'applies_to'?" in res.output


# --- fuzzing: every mutated file is scored or refused in one line, in its own process ---

def _cli_in_subprocess(tmp, model, images):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "harness.cli", "salience", str(model),
                           str(images), "--grid", "4", "--out", str(tmp / "out" / "m.npz")],
                          capture_output=True, text=True, timeout=120, env=env)


def _mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        buf[pos % len(buf)] = value
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8)


def _assert_clean_outcome(proc):
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    if proc.returncode == 2:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, proc.stderr


FUZZ = settings(max_examples=6, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(edits=EDITS)
def test_fuzzed_onnx_is_scored_or_refused(sandbox, edits):
    tmp, model, images = sandbox
    fuzzed = tmp / "fuzzed.onnx"
    fuzzed.write_bytes(_mutate(model.read_bytes(), edits))
    _assert_clean_outcome(_cli_in_subprocess(tmp, fuzzed, images))


@FUZZ
@given(edits=EDITS)
def test_fuzzed_png_is_scored_or_refused(sandbox, edits):
    tmp, model, images = sandbox
    png = images / "0.png"
    png.write_bytes(_mutate(png.read_bytes(), edits))
    _assert_clean_outcome(_cli_in_subprocess(tmp, model, images))


def test_decompression_bomb_mask_is_refused(sandbox, monkeypatch):
    tmp, model, images = sandbox
    (images / "masks").mkdir()
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(images / "masks" / "0.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # the 8 x 8 images pass, the mask not
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1 and "masks/0.png: refused" in errors[0]


def test_retrained_weights_behind_a_byte_identical_onnx_file(tmp_path, rng):
    """A checkpoint saved with external data keeps its .onnx byte for byte when only the
    weights change: the model's identity must cover the weights file, so the cache
    misses and --resume refuses the swap."""
    import json
    import shutil

    from tests.onnx_models import cnn_model

    for name, seed in (("old", 1), ("new", 2)):
        proto = onnx.load(str(cnn_model(tmp_path / f"{name}.onnx", 16, (4,), seed=seed)))
        (tmp_path / name).mkdir()
        onnx.save_model(proto, str(tmp_path / name / "m.onnx"), save_as_external_data=True,
                        all_tensors_to_one_file=True, location="m.weights", size_threshold=0)
    model = tmp_path / "old" / "m.onnx"
    assert model.read_bytes() == (tmp_path / "new" / "m.onnx").read_bytes()
    np.savez(tmp_path / "data.npz", images=rng.integers(0, 256, (3, 16, 16, 3), np.uint8))
    common = ["run", "--model", str(model), "--data", str(tmp_path / "data.npz"),
              "--measures", "entropy", "--cache", str(tmp_path / "cache"), "--quiet"]

    def run(out):
        res = invoke_in(tmp_path, [*common, "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
        info = json.loads((tmp_path / out / "run.json").read_text())
        sha = pl.read_parquet(tmp_path / out / "scores.parquet")["model_sha256"][0]
        return info, sha

    first, sha_first = run("first")
    assert first["computed_passes"] > 0
    shutil.copyfile(tmp_path / "new" / "m.weights", tmp_path / "old" / "m.weights")
    resumed = invoke_in(tmp_path, ["run", "--resume", str(tmp_path / "first")])
    assert resumed.exit_code == 2 and "models changed since this run started" in resumed.output
    second, sha_second = run("second")
    assert sha_second != sha_first
    assert second["reused_maps"] == 0 and second["computed_passes"] == first["computed_passes"]


@pytest.mark.parametrize("link", ["labels.csv", "2.png", "masks/0.png"])
def test_links_out_of_the_data_folder_are_refused(sandbox, link):
    """A labels.csv (or image, or mask) linking to a file elsewhere, say the process's
    environment, is refused without reading it, let alone printing it."""
    tmp, model, images = sandbox
    secret = tmp / "secrets.env"
    secret.write_text("API_TOKEN=hunter2-do-not-print\n")
    target = images / link
    target.parent.mkdir(exist_ok=True)
    target.unlink(missing_ok=True)
    target.symlink_to(secret)
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1
    assert "outside" in errors[0] and "refused" in errors[0] and "hunter2" not in errors[0]


def test_a_bad_labels_row_is_quoted_short_and_printable(sandbox):
    tmp, model, images = sandbox
    row = "API_TOKEN=" + "x" * 200 + "\x1b[2J"
    (images / "labels.csv").write_text(f"0.png,real\n{row}\n")
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1 and "each row must be 'path,label'" in errors[0]
    assert "x" * 41 not in errors[0] and "\x1b" not in errors[0] and len(errors[0]) < 200


@pytest.mark.parametrize("arrays, says", [
    ({"labels": np.array([0, 10**12, 1])}, "integer labels must lie in [0, 99999]"),
    ({"labels": np.array([0, -1, 1])}, "integer labels must lie in [0, 99999]"),
    ({"labels": np.array([0, 5, 1]), "label_names": np.array(["a", "b"])},
     "integer labels must lie in [0, 1]"),
    ({"labels": np.zeros((3, 2), np.int64)}, "'labels' must be one value per image"),
    ({"labels": np.array(1)}, "'labels' must be one value per image"),
    ({"names": np.array("x")}, "'names' must be one value per image"),
])
def test_npz_labels_are_checked_before_anything_is_made_from_them(sandbox, arrays, says):
    tmp, model, _ = sandbox
    data = tmp / "data.npz"
    np.savez(data, images=np.zeros((3, SIZE, SIZE, 3), np.uint8), **arrays)
    code, errors = run_salience(tmp, model, data)
    assert code == 2 and len(errors) == 1 and says in errors[0], errors


def test_a_huge_label_costs_no_memory(sandbox):
    """One label of 10**12 once made a class name for every integer below it (22.9 GB);
    the child that reads it must stay small."""
    tmp, model, _ = sandbox
    data = tmp / "data.npz"
    np.savez(data, images=np.zeros((3, SIZE, SIZE, 3), np.uint8),
             labels=np.array([0, 10**12, 1]))
    code, peak_kib = child_peak("salience", model, data, "--grid", 4, "--out",
                                tmp / "out" / "m.npz")
    assert code == 2 and peak_kib < 1024 * 1024  # under 1 GiB


@pytest.mark.parametrize("height, width, says", [
    (2000, 10, "one side over 8 times the other"),
    (5000, 5000, "over the limit of 16,777,216 per image (HARNESS_MAX_IMAGE_PIXELS)"),
])
def test_images_too_large_or_too_thin_are_refused_before_decoding(sandbox, height, width,
                                                                   says):
    """A 20000 x 10 PNG once took 6.3 GB in the guided blur and a 258 KB 9000 x 9000 PNG
    4.3 GB; a child reading such files must stay small."""
    tmp, model, images = sandbox
    Image.fromarray(np.zeros((height, width), np.uint8)).save(images / "big.png")
    code, errors = run_salience(tmp, model, images)
    assert code == 2 and len(errors) == 1 and says in errors[0]
    code, peak_kib = child_peak("salience", model, images, "--grid", 4, "--out",
                                tmp / "out" / "m.npz")
    assert code == 2 and peak_kib < 512 * 1024  # under 512 MiB


def test_large_images_get_smaller_units(tmp_path, rng):
    from harness.execution.plan import shard_images

    assert shard_images(64, (64, 64)) == 64 and shard_images(64, (224, 224)) == 64
    assert shard_images(64, (448, 448)) == 16 and shard_images(64, (4096, 4096)) == 1
    model = linear_model(tmp_path / "model.onnx", rng.normal(size=(2, SIZE, SIZE, 3)))
    np.savez(tmp_path / "big.npz", images=rng.integers(0, 256, (3, 1100, 1100, 3), np.uint8))
    res = invoke_in(tmp_path, ["run", "--model", str(model), "--data",
                                   str(tmp_path / "big.npz"), "--measures", "entropy",
                                   "--baseline", "0.5",
                                   "--out", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    units = (tmp_path / "run" / "units.log").read_text().split()
    assert units == ["model|in-set|0:2", "model|in-set|2:3"]



@pytest.mark.parametrize("line, message", [
    ("path = 5", "path must be a path (a string), got 5"),
    ("path = 'model.onnx'\noutput = 'PROBS'", "output='PROBS' must be one of logits, "
                                              "probabilities"),
    ("path = 'model.onnx'\ninput_size = [8]", "input_size must be [height, width]"),
    ("path = 'model.onnx'\nclasses = [1, 2]", "classes must be a list of strings"),
])
def test_manifest_values_of_the_wrong_kind(sandbox, line, message):
    tmp, model, images = sandbox
    manifest = tmp / "zoo.toml"
    manifest.write_text(f"[[model]]\n{line}\n")
    res = invoke_in(tmp, ["run", "--zoo", str(manifest), "--data", str(images),
                                   "--out", str(tmp / "out"), "--quiet"])
    errors = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and message in errors[0], res.output
    assert "Traceback" not in res.output and not (tmp / "out").exists()


def test_manifest_choices_ignore_case(sandbox):
    """``color = "bgr"`` once aborted the whole run; it means BGR."""
    tmp, model, images = sandbox
    manifest = tmp / "zoo.toml"
    manifest.write_text("[[model]]\npath = 'model.onnx'\ncolor = 'bgr'\nlayout = 'nchw'\n")
    from harness.inputs.zoo import read_manifest

    spec = read_manifest(manifest).models[0].spec
    assert (spec.color, spec.layout) == ("BGR", "NCHW")


def test_unwritable_outputs_are_refused_before_any_work(sandbox, monkeypatch):
    """An --out or --cache that cannot be created, or a read-only place, is one line
    before any forward pass; so is harness salience's --out."""
    tmp, model, images = sandbox
    blocker = tmp / "a-file"
    blocker.write_text("")

    def run(*extra):
        res = invoke_in(tmp, ["run", "--model", str(model), "--data", str(images),
                                       "--grid", "4", "--measures", "entropy", "--quiet",
                                       *map(str, extra)])
        errors = [x for x in res.output.splitlines() if x.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1 and "Traceback" not in res.output
        return errors[0]

    assert "cannot create the output folder" in run("--out", blocker / "out")
    assert "cannot create the cache folder" in run("--out", tmp / "o1", "--cache", blocker / "c")
    assert not (tmp / "o1").exists()
    code, errors = run_salience(tmp, model, images)  # a writable --out works
    assert code == 0
    res = invoke_in(tmp, ["salience", str(model), str(images), "--out",
                                   str(blocker / "m.npz")])
    assert res.exit_code == 2 and "cannot create the folder of --out" in res.output
    readonly = tmp / "readonly"
    readonly.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(readonly)
                        else real_access(p, mode))
    assert "is read-only" in run("--out", readonly / "out")


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(sandbox, monkeypatch):
    import errno

    tmp, model, images = sandbox
    out = tmp / "out"
    real_replace = os.replace

    def full(src, dst):
        if str(dst).endswith("leaderboard.parquet"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    res = invoke_in(tmp, ["run", "--model", str(model), "--data", str(images),
                                   "--grid", "4", "--measures", "entropy", "--out", str(out),
                                   "--quiet"])
    errors = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2 and len(errors) == 1 and "No space left" in errors[0]
    assert not list(out.glob("leaderboard.*")) and not list(out.glob(".*tmp*"))


def _one_bad_model(tmp, kind):
    """A model that cannot be scored, each in its own way."""
    ins, outs = _io()
    path = tmp / f"{kind}.onnx"
    if kind in ("nan_size", "inf_size"):
        linear_model(path, np.ones((2, SIZE, SIZE, 3)), batch="N",
                     metadata={"harness.input_size": "nan,nan" if kind == "nan_size"
                               else "inf,8"})
    elif kind == "nul_location":
        weight = numpy_helper.from_array(np.ones((SIZE * SIZE * 3, 2), np.float32), "W")
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = "location", "w\0.bin"
        _raw_model(path, [helper.make_node("Flatten", ["image"], ["f"]),
                          helper.make_node("MatMul", ["f", "W"], ["logits"])], ins, outs,
                   [weight])
    elif kind == "one_row":  # (1, 2) whatever the batch
        _raw_model(path, [helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0),
                          helper.make_node("Reshape", ["m", "one"], ["m1"]),
                          helper.make_node("Concat", ["m1", "m1"], ["logits"], axis=1)],
                   ins, outs, [numpy_helper.from_array(np.array([1, 1], np.int64), "one")])
    elif kind == "strings":
        string_out = [helper.make_tensor_value_info("logits", TensorProto.STRING, ["N", 2])]
        _raw_model(path, [helper.make_node("Flatten", ["image"], ["f"]),
                          helper.make_node("Slice", ["f", "s", "e", "a"], ["two"]),
                          helper.make_node("Cast", ["two"], ["logits"], to=TensorProto.STRING)],
                   ins, string_out,
                   [numpy_helper.from_array(np.array([v], np.int64), n)
                    for n, v in (("s", 0), ("e", 2), ("a", 1))])
    return path


BAD_KINDS = {"nan_size": "harness.input_size must be 'height,width' in whole pixels",
             "inf_size": "harness.input_size must be 'height,width' in whole pixels",
             "nul_location": "names no file; refused",
             "one_row": "for a batch of 3; it must have one row per image",
             "strings": "holds object values, not numbers"}


def test_every_per_model_failure_marks_that_model_failed_and_the_run_goes_on(sandbox):
    tmp, model, images = sandbox
    bad = [_one_bad_model(tmp, kind) for kind in BAD_KINDS]
    out = tmp / "out"
    args = ["run", "--model", str(model), *[a for p in bad for a in ("--model", str(p))],
            "--data", str(images), "--grid", "4", "--measures", "entropy", "--out", str(out),
            "--quiet"]
    res = invoke_in(tmp, args)
    assert res.exit_code == 0, res.output
    status = dict(pl.read_parquet(out / "leaderboard.parquet").select("model", "status").rows())
    assert status["model"] == "ok"
    for kind, says in BAD_KINDS.items():
        assert status[kind].startswith("failed: ") and says in status[kind], (kind, status[kind])


def test_tiny_images_nan_pixels_and_wrong_class_names(sandbox):
    tmp, model, images = sandbox
    data = tmp / "tiny.npz"
    np.savez(data, images=np.zeros((3, 1, 1, 3), np.uint8))
    res = invoke_in(tmp, ["run", "--model", str(model), "--data", str(data),
                                   "--method", "cam", "--measures", "transforms", "--out",
                                   str(tmp / "out"), "--quiet"])
    assert res.exit_code == 2 and "needs images of at least 7x7" in res.output, res.output
    np.savez(tmp / "nan.npz", images=np.full((3, SIZE, SIZE, 3), np.nan, np.float32))
    code, errors = run_salience(tmp, model, tmp / "nan.npz")
    assert code == 2 and len(errors) == 1 and "without NaN or infinity" in errors[0]
    named = linear_model(tmp / "named.onnx", np.ones((2, SIZE, SIZE, 3)),
                         metadata={"harness.classes": "a,b,c"})
    code, errors = run_salience(tmp, named, images)
    assert code == 2 and "3 class names declared for an output of 2 classes" in errors[0]


def test_declared_weights_and_constants_are_capped(sandbox, monkeypatch):
    """A few hundred bytes can declare gigabytes: a weight behind a sparse external file,
    or a ConstantOfShape of constant shape. Both are refused before ONNX Runtime
    allocates anything, and the limits can be raised."""
    tmp, _, images = sandbox
    ins, outs = _io()
    (tmp / "models").mkdir()
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[SIZE * SIZE * 3, 2 * 10**6])
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    with open(tmp / "models" / "w.bin", "wb") as fh:  # sparse: no disk used
        fh.truncate(SIZE * SIZE * 3 * 2 * 10**6 * 4)
    heavy = _raw_model(tmp / "models" / "heavy.onnx",
                       [helper.make_node("Flatten", ["image"], ["f"]),
                        helper.make_node("MatMul", ["f", "W"], ["logits"])], ins, outs, [weight])
    code, errors = run_salience(tmp, heavy, images)
    assert code == 2 and "GiB of weights, over the limit of 1 GiB" in errors[0]
    assert "HARNESS_MAX_WEIGHT_BYTES" in errors[0]
    filler = _raw_model(tmp / "filler.onnx", [
        helper.make_node("ConstantOfShape", ["shape"], ["big"]),
        helper.make_node("ReduceMean", ["big"], ["m"], keepdims=0),
        helper.make_node("Flatten", ["image"], ["f"]),
        helper.make_node("Slice", ["f", "s", "e", "a"], ["two"]),
        helper.make_node("Add", ["two", "m"], ["logits"])], ins, outs,
        [numpy_helper.from_array(np.array([1 << 14, 1 << 14], np.int64), "shape")]
        + [numpy_helper.from_array(np.array([v], np.int64), n)
           for n, v in (("s", 0), ("e", 2), ("a", 1))])
    code, errors = run_salience(tmp, filler, images)
    assert code == 2 and "would fill 1.00 GiB, over the limit of 0.25 GiB" in errors[0]
    for hostile in (heavy, filler):  # refused before anything is allocated
        code, peak_kib = child_peak("salience", hostile, images, "--grid", 4, "--out",
                                    tmp / "out" / "m.npz")
        assert code == 2 and peak_kib < 512 * 1024
    monkeypatch.setenv("HARNESS_MAX_CONSTANT_BYTES", "abc")
    code, errors = run_salience(tmp, filler, images)
    assert code == 2 and "HARNESS_MAX_CONSTANT_BYTES='abc' must be a whole number" in errors[0]


def test_model_timeout_covers_loading(sandbox):
    """Folding a large constant product happens while ONNX Runtime loads the model,
    before any batch; the time limit covers it."""
    tmp, _, images = sandbox
    ins, outs = _io()
    side = 3072
    rng = np.random.default_rng(0)
    mats = [numpy_helper.from_array(rng.random((side, side), np.float32), n) for n in "AB"]
    model = _raw_model(tmp / "folding.onnx", [
        helper.make_node("MatMul", ["A", "B"], ["AB"]),
        helper.make_node("ReduceMean", ["AB"], ["m"], keepdims=0),
        helper.make_node("Flatten", ["image"], ["f"]),
        helper.make_node("Slice", ["f", "s", "e", "a"], ["two"]),
        helper.make_node("Add", ["two", "m"], ["logits"])], ins, outs,
        mats + [numpy_helper.from_array(np.array([v], np.int64), n)
                for n, v in (("s", 0), ("e", 2), ("a", 1))])
    code, errors = run_salience(tmp, model, images, "--model-timeout", "0.05")
    assert code == 2 and "did not finish loading the model within --model-timeout 0.05 s" \
        in errors[0], errors


def test_runs_have_a_time_limit_by_default(sandbox):
    """Without --model-timeout a run still bounds each model (300 s), and so does
    harness salience."""
    from harness.inputs.settings import build_config

    assert build_config().model_timeout == 300
    res = CliRunner().invoke(cli, ["salience", "--help"])
    assert "--model-timeout" in res.output and "300" in res.output
