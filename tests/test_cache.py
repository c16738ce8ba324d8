"""The salience cache: hits, clean misses, damaged entries, and a whole run served
from it."""

import json
import sqlite3

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.execution.cache import CACHE_FILE, Entry, SalienceCache, entry_key
from harness.execution.plan import TWINS_DEFAULT
from tests.test_hostile import invoke_in


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def entry(value=0.5, provider="CPUExecutionProvider"):
    return Entry(np.full((7, 7), value, np.float32), 1.5, 0.8, 1, 50, provider)


def test_round_trip_and_keys(tmp_path):
    cache = SalienceCache(tmp_path / "c")
    key = entry_key("model", "image", "clean", '{"grid": 7}', "1")
    cache.put_many({key: entry()})
    got = cache.get_many([key, "missing"])
    assert list(got) == [key]
    e = got[key]
    assert np.array_equal(e.raw, entry().raw) and e.raw.dtype == np.float32
    assert (e.score, e.prob, e.predicted, e.passes, e.provider) == (1.5, 0.8, 1, 50,
                                                                     "CPUExecutionProvider")
    others = {entry_key(*parts) for parts in [("model2", "image", "clean", '{"grid": 7}', "1"),
                                              ("model", "image2", "clean", '{"grid": 7}', "1"),
                                              ("model", "image", "transform:hflip",
                                               '{"grid": 7}', "1"),
                                              ("model", "image", "clean", '{"grid": 8}', "1"),
                                              ("model", "image", "clean", '{"grid": 7}', "2")]}
    assert key not in others and len(others) == 5
    cache.close()
    assert len(SalienceCache(tmp_path / "c")) == 1  # it persists


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "provider"])
def test_damaged_entry_is_discarded(tmp_path, damage):
    cache = SalienceCache(tmp_path)
    good, bad = entry_key("m", "i1", "clean", "{}", "1"), entry_key("m", "i2", "clean", "{}", "1")
    cache.put_many({good: entry(), bad: entry(0.25)})
    db = sqlite3.connect(tmp_path / CACHE_FILE)
    blob = db.execute("SELECT value FROM maps WHERE key = ?", (bad,)).fetchone()[0]
    if damage == "flip a byte":
        db.execute("UPDATE maps SET value = ? WHERE key = ?",
                   (blob[:-3] + bytes([blob[-3] ^ 1]) + blob[-2:], bad))
    elif damage == "truncate":
        db.execute("UPDATE maps SET value = ? WHERE key = ?", (blob[:20], bad))
    else:
        db.execute("UPDATE maps SET provider = 'CUDAExecutionProvider' WHERE key = ?", (bad,))
    db.commit()
    db.close()
    got = cache.get_many([good, bad])
    assert list(got) == [good] and cache.discarded == 1
    assert len(cache) == 1  # deleted, so the next put stores a fresh one


def test_a_file_that_is_not_a_database_is_set_aside(tmp_path, caplog):
    (tmp_path / CACHE_FILE).write_bytes(b"this is not sqlite" * 100)
    with caplog.at_level("WARNING", logger="harness"):
        cache = SalienceCache(tmp_path)
    assert len(cache) == 0 and "not a usable cache" in caplog.text
    assert len(list(tmp_path.glob(f"{CACHE_FILE}.damaged-*"))) == 1


def run(zoo, out, *extra):
    res = invoke("run", "--zoo", zoo, "--out", out, "--quiet", *extra)
    assert res.exit_code == 0, res.output
    return json.loads((out / "run.json").read_text())


def test_second_run_reuses_every_map(cnn_zoo, tmp_path):
    first = run(cnn_zoo, tmp_path / "r1", "--cache", tmp_path / "cache")
    assert first["computed_passes"] == first["forward_passes"] > 0
    assert first["reused_maps"] == 0
    second = run(cnn_zoo, tmp_path / "r2", "--cache", tmp_path / "cache")
    assert second["computed_passes"] == 0
    # 3 models x (8 images x 33 cache entries: 22 maps, the degradation control's outputs
    # and the 10 randomised twins' maps; + 3 out-of-set images)
    reused = 3 * (8 * (23 + TWINS_DEFAULT) + 3)
    assert second["reused_maps"] == reused
    assert second["forward_passes"] == first["forward_passes"]
    a, b = (pl.read_parquet(tmp_path / r / "scores.parquet") for r in ("r1", "r2"))
    assert a.equals(b)
    res = invoke("run", "--zoo", cnn_zoo, "--out", tmp_path / "r3", "--cache",
                 tmp_path / "cache")
    assert f"reused {reused} maps" in res.output and "computed 0 of" in res.output


def test_changed_model_or_settings_miss(cnn_zoo, tmp_path):
    from tests.onnx_models import cnn_model

    cache = ("--cache", tmp_path / "cache")
    first = run(cnn_zoo, tmp_path / "r1", *cache)
    per_model = first["forward_passes"] // 3
    regrid = run(cnn_zoo, tmp_path / "r2", *cache, "--grid", 8)
    assert regrid["reused_maps"] == 0 and regrid["computed_passes"] == regrid["forward_passes"]
    cnn_model(cnn_zoo.parent / "solo.onnx", size=32, widths=(8, 8), seed=99,
              metadata={"harness.classes": "face,other"})
    retrained = run(cnn_zoo, tmp_path / "r3", *cache)
    assert retrained["computed_passes"] == per_model  # only the changed model
    fewer_levels = run(cnn_zoo, tmp_path / "r4", *cache, "--measures", "entropy,transforms")
    assert fewer_levels["computed_passes"] == 0  # a subset of what is cached


def test_a_new_curve_version_recomputes_the_curves_and_reuses_the_maps(cnn_zoo, tmp_path,
                                                                         monkeypatch):
    """A change to how curves are computed bumps their version alone: the maps that
    guide them stay cached."""
    from harness.execution import scheduler
    from harness.salience.curves import copies

    cache = ("--cache", tmp_path / "cache", "--measures", "road")
    first = run(cnn_zoo, tmp_path / "r1", *cache)
    monkeypatch.setattr(scheduler, "CURVE_VERSION", "next")
    second = run(cnn_zoo, tmp_path / "r2", *cache)
    curves = 3 * 8 * 2 * copies("road", 49)  # models x images x (road, road/chance)
    assert second["computed_passes"] == curves < first["computed_passes"]
    assert second["reused_maps"] == 3 * 8  # each image's clean map
    third = run(cnn_zoo, tmp_path / "r3", *cache)
    assert third["computed_passes"] == 0


def test_damaged_entries_are_recomputed_in_a_run(cnn_zoo, tmp_path):
    run(cnn_zoo, tmp_path / "r1")
    db = sqlite3.connect(tmp_path / "r1" / "cache" / CACHE_FILE)
    db.execute("UPDATE maps SET value = X'00' WHERE rowid IN (SELECT rowid FROM maps LIMIT 5)")
    db.commit()
    db.close()
    res = invoke("run", "--zoo", cnn_zoo, "--out", tmp_path / "r1")
    assert res.exit_code == 0 and "5 damaged entries discarded and recomputed" in res.output
    info = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert 0 < info["computed_passes"] < info["forward_passes"]
    clean = run(cnn_zoo, tmp_path / "r2")
    assert pl.read_parquet(tmp_path / "r1" / "scores.parquet").equals(
        pl.read_parquet(tmp_path / "r2" / "scores.parquet"))
    assert clean["reused_maps"] == 0


def test_a_database_damaged_inside_is_set_aside_and_rebuilt(cnn_zoo, tmp_path):
    """Flipped bytes in the database's pages (not just in one entry) made every rerun
    fail until the file was deleted by hand; the run now sets it aside, recomputes, and
    the next run is served from the rebuilt cache."""
    run(cnn_zoo, tmp_path / "r1")
    clean = pl.read_parquet(tmp_path / "r1" / "scores.parquet")
    path = tmp_path / "r1" / "cache" / CACHE_FILE
    blob = bytearray(path.read_bytes())
    assert len(blob) > 3 * 4096
    blob[4096:len(blob) - 4096] = b"\xff" * (len(blob) - 8192)
    path.write_bytes(bytes(blob))
    res = invoke_in(tmp_path, ["run", "--zoo", cnn_zoo, "--out", tmp_path / "r1"])
    assert res.exit_code == 0, res.output
    assert "not a usable cache" in res.output and "Traceback" not in res.output
    assert list(path.parent.glob(f"{CACHE_FILE}.damaged-*"))
    assert pl.read_parquet(tmp_path / "r1" / "scores.parquet").equals(clean)
    again = run(cnn_zoo, tmp_path / "r1")
    assert again["computed_passes"] == 0


def test_a_full_disk_is_one_line_and_the_cache_is_kept(tmp_path):
    """A disk that fills while maps are stored: `harness parity` stops with one line
    naming the cache (no sqlite3 traceback), and the cache is not set aside as damaged.
    The full disk is a file-size limit of the process (RLIMIT_FSIZE)."""
    import subprocess
    import sys
    import textwrap

    from tests.onnx_models import cnn_model

    model = cnn_model(tmp_path / "cnn.onnx", size=32, widths=(8, 8), seed=5)
    np.savez(tmp_path / "data.npz", images=np.random.default_rng(0).integers(
        0, 255, (24, 32, 32, 3), np.uint8))
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from harness.cli import main
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
        sys.argv = ["harness", "parity", {str(model)!r}, "--data", {str(tmp_path / 'data.npz')!r},
                    "--variants", "fp16", "--out", {str(tmp_path / 'out')!r},
                    "--cache", {str(tmp_path / 'cache')!r}, "--quiet"]
        main()
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, res.stderr
    assert len(errors) == 1 and "cannot write the salience cache" in errors[0], res.stderr
    assert [p.name for p in (tmp_path / "cache").iterdir()
            if "damaged" in p.name] == []


def test_a_larger_limit_computes_only_the_images_added(cnn_zoo, tmp_path):
    """--limit 4 then --limit 8: the second run reads the first's maps whole and computes
    the four new images' alone (its units never mix cached and new images), and scores
    them as a cold run of 8 does."""
    cache = ("--cache", tmp_path / "cache")
    small = run(cnn_zoo, tmp_path / "r4", *cache, "--limit", 4)
    grown = run(cnn_zoo, tmp_path / "r8", *cache, "--limit", 8)
    added = grown["forward_passes"] - small["forward_passes"]  # 4 more images per model
    assert grown["computed_passes"] == added > 0
    assert grown["reused_maps"] > 0
    run(cnn_zoo, tmp_path / "cold", "--limit", 8)
    assert pl.read_parquet(tmp_path / "r8" / "scores.parquet").drop("provider").equals(
        pl.read_parquet(tmp_path / "cold" / "scores.parquet").drop("provider"))
