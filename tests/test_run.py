import json

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from harness.cli import cli
from tests.test_hostile import invoke_in
from tests.test_measures import SIZE, centre_only, checkerboard, model_from_weights, pattern_images

FAST = "entropy,stability,agreement"


@pytest.fixture
def tiny_zoo(tmp_path):
    """Three linear face detectors (two in one family), a labelled image set with human
    maps and a split, and an out-of-set set, wired by a manifest."""
    root = tmp_path / "zoo"
    root.mkdir()
    model_from_weights(root / "a.onnx", centre_only(), metadata={"harness.classes": "yes,no"})
    model_from_weights(root / "b.onnx", centre_only() * 0.5, metadata={"harness.classes": "yes,no"})
    model_from_weights(root / "c.onnx", checkerboard(), metadata={"harness.classes": "yes,no"})
    images = (pattern_images(8) * 255).astype(np.uint8)
    masks = np.zeros((8, SIZE, SIZE), bool)
    masks[:4, 8:20, 8:20] = True
    np.savez(root / "data.npz", images=images, labels=np.array(["yes", "no"] * 4), masks=masks,
             split=np.array(["test"] * 6 + ["train"] * 2))
    np.savez(root / "other.npz", images=(pattern_images(3, seed=5) * 255).astype(np.uint8))
    (root / "manifest.toml").write_text(
        'data = "data.npz"\nsplit = "test"\nout_of_set = ["other.npz"]\n'
        '[[model]]\npath = "a.onnx"\nfamily = "centre"\n'
        '[[model]]\npath = "b.onnx"\nfamily = "centre"\n'
        '[[model]]\npath = "c.onnx"\n')
    return root / "manifest.toml"


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_run_writes_everything(tiny_zoo, tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", FAST, "--quiet")
    assert res.exit_code == 0, res.output
    for name in ("scores.parquet", "per_image.parquet", "pairs.parquet", "families.parquet",
                 "leaderboard.parquet", "leaderboard.csv", "leaderboard.md", "run.json"):
        assert (out / name).is_file(), name
    scores = pl.read_parquet(out / "scores.parquet")
    assert set(scores["model"]) == {"a", "b", "c"}
    assert scores.filter(pl.col("model") == "c", pl.col("measure") == "stability",
                         pl.col("statistic") == "headline")["value"][0] is None
    assert (scores["n"].filter(scores["statistic"] == "headline") <= 6).all()  # test split
    info = json.loads((out / "run.json").read_text())
    assert info["images"] == 6 and info["forward_passes"] == 3 * 6 * 50
    assert "entropy↓" in res.output and "agreement↑" in res.output
    assert max(len(line) for line in res.output.splitlines()[:-1]) <= 100  # the table
    assert len(pl.read_csv(out / "leaderboard.csv")) == 3


def test_all_measures_default_sets(tiny_zoo, tmp_path):
    res = invoke("run", "--zoo", tiny_zoo, "--out", tmp_path / "r", "--limit", 3, "--quiet")
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(tmp_path / "r" / "scores.parquet")
    assert set(scores["measure"]) == {"entropy", "out_of_set", "transforms", "stability",
                                      "degradation", "agreement", "sanity", "accuracy"}
    assert "wasserstein@other" in scores["statistic"].to_list()  # the zoo's out-of-set set


def test_two_runs_are_byte_identical(tiny_zoo, tmp_path):
    for name in ("r1", "r2"):
        res = invoke("run", "--zoo", tiny_zoo, "--out", tmp_path / name, "--measures", FAST,
                     "--seed", 7, "--quiet")
        assert res.exit_code == 0, res.output
    for file in ("scores.parquet", "per_image.parquet", "pairs.parquet", "families.parquet",
                 "leaderboard.csv"):
        assert (tmp_path / "r1" / file).read_bytes() == (tmp_path / "r2" / file).read_bytes()


def test_broken_models_are_reported_and_the_rest_finish(tiny_zoo, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    w = np.full((SIZE, SIZE), 1.0, np.float32)
    nan = model_from_weights(tmp_path / "nan.onnx", w, bias=[-1e9, 0], post="Sqrt")
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--model", junk, "--model", nan, "--out", out,
                 "--measures", FAST, "--quiet")
    assert res.exit_code == 0, res.output
    board = pl.read_parquet(out / "leaderboard.parquet")
    status = dict(zip(board["model"], board["status"], strict=True))
    assert status["junk"].startswith("failed: ") and "not an ONNX model" in status["junk"]
    assert "NaN or infinite" in status["nan"]
    assert status["a"] == status["b"] == status["c"] == "ok"
    assert board["model"].to_list()[-2:] == ["junk", "nan"] or \
        board["model"].to_list()[-2:] == ["nan", "junk"]
    assert "failed: " in res.output


def test_killed_run_leaves_no_leaderboard(tiny_zoo, tmp_path, monkeypatch):
    import harness.run

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.run, "build", crash)
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", "entropy", "--quiet")
    assert res.exit_code != 0
    assert not list(out.glob("leaderboard.*"))
    assert not list(out.glob(".*tmp*"))  # no half-written temporary file either


def test_failed_rerun_leaves_no_stale_leaderboard(tiny_zoo, tmp_path, monkeypatch):
    """A second run into a finished run's folder that crashes, or that stops at a user's
    mistake, must not leave the first run's leaderboard there to be gated."""
    import harness.run

    out = tmp_path / "run"
    assert invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", "entropy",
                  "--quiet").exit_code == 0
    assert (out / "leaderboard.csv").is_file() and (out / "scores.parquet").is_file()
    bad = invoke_in(tmp_path, ["run", "--zoo", tiny_zoo, "--data", tmp_path / "missing",
                               "--out", out, "--measures", "entropy", "--quiet"])
    assert bad.exit_code == 2
    assert not list(out.glob("leaderboard.*")) and not (out / "scores.parquet").exists()
    assert invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", "entropy",
                  "--quiet").exit_code == 0

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.run, "build", crash)
    assert invoke_in(tmp_path, ["run", "--zoo", tiny_zoo, "--out", out, "--measures",
                                "entropy", "--quiet"]).exit_code != 0
    assert not list(out.glob("leaderboard.*")) and not (out / "run.json").exists()


def test_leaderboard_rerenders(tiny_zoo, tmp_path):
    out = tmp_path / "run"
    invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", FAST, "--quiet")
    table = invoke("leaderboard", out)
    assert table.exit_code == 0 and "mean rank" in table.output
    md = invoke("leaderboard", out, "--format", "md").output
    # fit for a pull request: the verdict first, the table folded under it
    assert md.startswith("**Pick: ") and md.index("<details>") < md.index("| # | model |")
    assert md.rstrip().endswith("</details>") and "<summary>Leaderboard: 3 models" in md
    assert md == (out / "leaderboard.md").read_text()
    as_json = json.loads(invoke("leaderboard", out, "--format", "json").output)
    assert {r["model"] for r in as_json} == {"a", "b", "c"}
    csv = invoke("leaderboard", out, "--format", "csv").output
    assert csv == (out / "leaderboard.csv").read_text()
    by = json.loads(invoke("leaderboard", out, "--by", "agreement", "--format", "json").output)
    assert [r["agreement_rank"] for r in by] == sorted(r["agreement_rank"] for r in by)
    bad = invoke("leaderboard", out, "--by", "speed")
    assert bad.exit_code == 2 and "not a measure of this run" in bad.output
    missing = invoke("leaderboard", tmp_path)
    assert missing.exit_code == 2 and "no scores.parquet" in missing.output
    wide = invoke("leaderboard", out, "--wide")
    assert wide.exit_code == 0 and "centre" in wide.output and "[" in wide.output


def test_compare_states_the_verdicts(finished):
    res = invoke("compare", finished)
    assert res.exit_code == 0, res.output
    assert "entropy (lower is better):" in res.output and "pairs separable" in res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("Summary")  # the summary first, one line per measure
    summary = lines[1:lines.index("")]
    assert {x.split(":")[0].strip() for x in summary} == {"entropy", "agreement",
                                                          "accuracy"}
    # a measure's top set: the models whose rank set starts at 1
    board = json.loads(invoke("leaderboard", finished, "--format", "json").output)
    for line in summary:
        measure, top = line.split(":")[0].strip(), line.split("): ")[1].split(", ")
        if measure != "accuracy":
            assert sorted(top) == sorted(r["model"] for r in board
                                         if r[f"{measure}_rank_low"] == 1), line
    every = invoke("compare", finished, "--measure", "agreement", "--all")
    body = [line for line in every.output.splitlines() if line.startswith("  ")]
    assert len(body) == 3 and all(" agreement than " in line for line in body)  # 3 models
    families = invoke("compare", finished, "--families")  # one family: nothing to compare
    assert families.exit_code == 2 and "nothing to compare" in families.output
    bad = invoke("compare", finished, "--measure", "speed")
    assert bad.exit_code == 2 and "not a measure of this run" in bad.output


@pytest.fixture
def finished(tiny_zoo, tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--out", out, "--measures", FAST, "--quiet")
    assert res.exit_code == 0
    return out


def _rules(tmp_path, text):
    path = tmp_path / "gate.toml"
    path.write_text(text)
    return path


def test_gate_pass_fail_and_usage(finished, tmp_path):
    ok = _rules(tmp_path, 'rules = ["entropy <= 1.0", "agreement.images_with_mask >= 1"]\n')
    res = invoke("gate", finished, "--rules", ok)
    assert res.exit_code == 0, res.output
    assert "PASS" in res.output and "FAIL" not in res.output
    fail = _rules(tmp_path, 'rules = ["stability >= 0.5"]\n')  # model c has no family
    res = invoke("gate", finished, "--rules", fail)
    assert res.exit_code == 1 and "FAIL  c" in res.output and "n/a" in res.output
    best = _rules(tmp_path, 'rules = ["entropy <= 1.0"]\napplies_to = "best"\n')
    res = invoke("gate", finished, "--rules", best)
    assert res.exit_code == 0 and res.output.count("PASS") == 1
    for text, message in [('rules = ["entropy <== 1"]\n', "write it as"),
                          ('rules = ["speed >= 1"]\n', "measure 'speed' is not in this run"),
                          ('rules = ["entropy.flat >= 1"]\n', "did you mean 'flat_maps'"),
                          ('rules = ["entropy <= 1"]\nno_regresion = true\n',
                           "did you mean 'no_regression'"),
                          ('no_regression = true\n', "pass --baseline")]:
        res = invoke("gate", finished, "--rules", _rules(tmp_path, text))
        assert res.exit_code == 2 and message in res.output, (text, res.output)


def test_gate_when_baseline_skips_without_one_but_never_passes_on_nothing(finished, tmp_path):
    rules = _rules(tmp_path, 'rules = ["entropy <= 1.0"]\nno_regression = "when-baseline"\n')
    res = invoke("gate", finished, "--rules", rules)
    assert res.exit_code == 0 and "SKIP" in res.output and "1 skipped" in res.output
    compared = invoke("gate", finished, "--rules", rules, "--baseline", finished)
    assert compared.exit_code == 0 and "vs baseline" in compared.output
    alone = _rules(tmp_path, 'no_regression = "when-baseline"\n')
    res = invoke("gate", finished, "--rules", alone)
    assert res.exit_code == 2 and "the gate checked nothing" in res.output
    res = invoke("gate", finished, "--rules", _rules(tmp_path, 'no_regression = "maybe"\n'))
    assert res.exit_code == 2 and 'no_regression must be true, false or "when-baseline"' \
        in res.output


def test_gate_regression_against_baseline(finished, tmp_path):
    rules = _rules(tmp_path, "no_regression = true\n")
    worse = _variant(finished, tmp_path, "worse", lambda f: f, per_image=lambda f: f.with_columns(
        pl.when(pl.col("measure") == "entropy").then(pl.col("value") + 0.2)
        .otherwise(pl.col("value")).alias("value")))
    # six equal differences get p >= 1/32 (the sign-flip test's bound, which the
    # studentised test keeps for differences without spread), times the 11 tests: the
    # gate says it checked nothing, never that a regression of any size passed
    for run in (finished, worse):
        res = invoke("gate", run, "--rules", rules, "--baseline", finished)
        assert res.exit_code == 2, res.output
        assert "no change can reach p_adj < 0.05 on so few images" in res.output
    flips = _rules(tmp_path, 'no_regression = true\ntest = "sign-flip"\n')
    for run in (finished, worse):
        res = invoke("gate", run, "--rules", flips, "--baseline", finished)
        assert res.exit_code == 2, res.output
        assert "no change can reach p_adj < 0.05 on so few images" in res.output
    res = invoke("gate", worse, "--rules", _rules(tmp_path, 'rules = ["entropy <= 2"]\n'
                                                            "no_regression = true\n"
                                                            'test = "sign-flip"\n'),
                 "--baseline", finished)
    assert res.exit_code == 0 and "SKIP" in res.output and "score more images" in res.output
    bad = invoke("gate", finished, "--rules", _rules(tmp_path, 'rules = ["entropy <= 2"]\n'
                                                               'test = "t-test"\n'))
    assert bad.exit_code == 2 and "test must be one of bootstrap-t, sign-flip" in bad.output


def test_config_file_and_validation(tiny_zoo, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'zoo = ["{tiny_zoo}"]\nmeasures = ["entropy"]\n[salience]\ngrid = 4\n')
    res = invoke("run", "--config", config, "--out", tmp_path / "r", "--grid", 7, "--quiet")
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(tmp_path / "r" / "scores.parquet")
    assert json.loads(scores["salience_config"][0])["grid"] == 7  # the flag wins
    assert set(scores["measure"]) == {"entropy", "accuracy"}
    config.write_text(f'zoo = ["{tiny_zoo}"]\nmesures = ["entropy"]\n')
    res = invoke("run", "--config", config, "--quiet")
    assert res.exit_code == 2 and "unknown key 'mesures'; did you mean 'measures'" in res.output
    for flags, message in [(["--grid", 0], "grid must be"), (["--window", 9], "window must"),
                           (["--measures", "entropie"], "did you mean entropy"),
                           (["--baseline", "-1"], "grey level must lie in [0, 1]")]:
        res = invoke("run", "--zoo", tiny_zoo, "--out", tmp_path / "x", "--quiet", *flags)
        assert res.exit_code == 2 and message in res.output, (flags, res.output)
        assert not (tmp_path / "x").exists()


def test_json_output(tiny_zoo, tmp_path):
    res = invoke("run", "--zoo", tiny_zoo, "--out", tmp_path / "r", "--measures", "entropy",
                 "--json")
    assert res.exit_code == 0
    rows = json.loads(res.output)
    assert {r["model"] for r in rows} == {"a", "b", "c"}
    # the family is the model's identity, shown even when stability is not measured
    assert {r["model"]: r["family"] for r in rows} == {"a": "centre", "b": "centre", "c": None}


def _variant(finished, tmp_path, name, change, per_image=None):
    """A copy of the finished run, its scores changed by ``change(frame) -> frame`` (and
    its per-image values by ``per_image``)."""
    import shutil

    shutil.copytree(finished, tmp_path / name, ignore=shutil.ignore_patterns("cache"))
    for file, how in (("scores.parquet", change), ("per_image.parquet", per_image)):
        if how is not None:
            path = tmp_path / name / file
            how(pl.read_parquet(path)).write_parquet(path)
    return tmp_path / name


def test_gate_refuses_what_it_cannot_check(finished, tmp_path):
    """A malformed rule, an incomparable or damaged baseline, or nothing to check is a
    usage error (exit 2, one line), never a traceback or a pass; a model the baseline
    lacks fails."""
    rules = _rules(tmp_path, "no_regression = true\n")
    old = _variant(finished, tmp_path, "old", lambda f: f)
    (old / "per_image.parquet").unlink()
    cases = [
        (_variant(finished, tmp_path, "cam", lambda f: f.with_columns(
            salience_config=pl.lit('{"method": "cam"}'))), "other salience settings"),
        (_variant(finished, tmp_path, "images", lambda f: f.with_columns(
            image_set_hash=pl.lit("0" * 64))), "another image set"),
        (_variant(finished, tmp_path, "fewer", lambda f: f.filter(
            pl.col("measure") != "agreement"), lambda f: f.filter(
            pl.col("measure") != "agreement")), "the baseline has no agreement"),
        (_variant(finished, tmp_path, "column", lambda f: f.drop("ci_low")),
         "has no column 'ci_low'"),
        (_variant(finished, tmp_path, "seed", lambda f: f.with_columns(seed=pl.lit(99))),
         "another seed"),
        (old, "no per_image.parquet; the run was made by an older harness"),
    ]
    for baseline, message in cases:
        res = invoke_in(tmp_path, ["gate", finished, "--rules", rules, "--baseline", baseline])
        errors = [x for x in res.output.splitlines() if x.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1 and message in errors[0], res.output
    lacking = _variant(finished, tmp_path, "lacking", lambda f: f.filter(pl.col("model") != "c"),
                       lambda f: f.filter(pl.col("model") != "c"))
    res = invoke_in(tmp_path, ["gate", finished, "--rules", rules, "--baseline", lacking])
    assert res.exit_code == 1 and "model missing from the baseline" in res.output, res.output
    empty = _variant(finished, tmp_path, "empty", lambda f: f.clear())
    res = invoke_in(tmp_path, ["gate", empty, "--rules", rules, "--baseline", finished])
    assert res.exit_code == 2 and "scores.parquet: it has no rows" in res.output, res.output
    for text in ('rules = ["entropy <= 1.2.3"]\n', 'rules = ["entropy <= ."]\n'):
        res = invoke_in(tmp_path, ["gate", finished, "--rules", _rules(tmp_path, text)])
        assert res.exit_code == 2 and "write it as" in res.output, res.output


def test_print_config_round_trips_and_misplaced_keys_are_named(tiny_zoo, tmp_path,
                                                              monkeypatch):
    from harness.inputs.settings import build_config, read_config

    monkeypatch.chdir(tmp_path)
    res = invoke_in(tmp_path, ["run", "--zoo", tiny_zoo, "--grid", 9, "--limit", 5, "--target",
                               "own", "--measures", "entropy,sanity", "--print-config"])
    assert res.exit_code == 0 and "[salience]" in res.output and "grid = 9" in res.output
    assert not (tmp_path / "results").exists()  # printed, nothing run
    printed = tmp_path / "printed.toml"
    printed.write_text(res.output)
    again = build_config(**read_config(printed))
    assert again == build_config(zoo=(tiny_zoo,), limit=5, measures=("entropy", "sanity"),
                                 **{"salience.grid": 9, "salience.target": "own"})
    for text, message in [('method = "cam"\n', "unknown key 'method' at the top; did you mean "
                                                 "[salience] method?"),
                          ('[salience]\nlimit = 3\n', "unknown key 'limit' under [salience]; "
                                                      "did you mean limit at the top")]:
        config = tmp_path / "run.toml"
        config.write_text(text)
        res = invoke("run", "--config", config, "--quiet")
        assert res.exit_code == 2 and message in res.output, res.output


def test_images_at_the_probability_clip_are_counted_and_said(tmp_path):
    from tests.test_parity import _confident

    model = _confident(tmp_path / "confident.onnx")
    data = tmp_path / "images.npz"
    np.savez(data, images=np.random.default_rng(4).integers(0, 255, (12, 16, 16, 3), np.uint8))
    res = invoke("run", "--model", str(model), "--data", str(data), "--measures", "entropy",
                 "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"))
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(tmp_path / "out" / "scores.parquet")
    row = scores.filter((pl.col("measure") == "score") & (pl.col("statistic") == "saturated"))
    assert row.select("value", "n").rows() == [(12.0, 12)]
    # every map is flat: the score cannot move; the table says why, and every row says
    # what the model's values rest on
    text = " ".join(res.output.split())
    assert "At the probability clip" in text and "confident 12 of 12 images" in text
    assert "Flat clean maps" in text and "confident 12 of 12." in text
    assert scores["flat_fraction"].to_list() == [1.0] * scores.height


def test_every_row_states_the_models_flat_fraction_and_older_runs_still_read(
        finished, tmp_path):
    """``flat_fraction`` is on every row of a model (its share of flat clean maps, the
    same on every measure); a run written before the column existed reads with it empty,
    and the leaderboard then says nothing of flat maps."""
    scores = pl.read_parquet(finished / "scores.parquet")
    for _, rows in scores.group_by("model"):
        share = rows["flat_fraction"].unique().to_list()
        assert len(share) == 1 and 0.0 <= share[0] <= 1.0
    older = _variant(finished, tmp_path, "older", lambda f: f.drop("flat_fraction"))
    res = invoke("leaderboard", older)
    assert res.exit_code == 0 and "Flat clean maps" not in res.output, res.output


def test_a_run_of_many_models_holds_few_sessions_at_once(tmp_path, monkeypatch):
    """Sessions are opened for a model's units and closed after: the most open at once
    does not grow with the number of models (200 models once held 1.5 GB and, under an
    address-space cap, ran out of threads)."""
    import weakref

    from harness.model import classifier

    alive, peak = weakref.WeakSet(), [0]
    opened = classifier.create_bounded

    def counting(*args, **kwargs):
        session = opened(*args, **kwargs)
        alive.add(session)
        peak[0] = max(peak[0], len(alive))
        return session

    monkeypatch.setattr(classifier, "create_bounded", counting)
    for i in range(30):
        model_from_weights(tmp_path / f"m{i:02d}.onnx", centre_only() * (1 + i / 30))
    np.savez(tmp_path / "data.npz", images=(pattern_images(4) * 255).astype(np.uint8))
    models = [a for i in range(30) for a in ("--model", tmp_path / f"m{i:02d}.onnx")]
    res = invoke("run", *models, "--data", tmp_path / "data.npz", "--measures",
                 "entropy,sanity", "--grid", 7, "--out", tmp_path / "out", "--quiet")
    assert res.exit_code == 0, res.output
    scores = pl.read_parquet(tmp_path / "out" / "scores.parquet")
    assert set(scores["status"]) == {"ok"} and scores["model"].n_unique() == 30
    assert peak[0] <= 3, peak[0]  # a model, its randomised twin, one more in passing


def test_gate_rules_on_bounds_say_which_bound_they_tested(finished, tmp_path):
    """`entropy.ci_high >= t` passes where `entropy >= t` fails (t between the value and
    the interval's upper end), and `entropy.ci_high <= t` fails where `entropy <= t`
    passes; the rank set's worst rank is a rule too."""
    scores = pl.read_parquet(finished / "scores.parquet")
    c = scores.filter((pl.col("model") == "c") & (pl.col("measure") == "entropy")
                      & (pl.col("statistic") == "headline")).row(0, named=True)
    t = (c["value"] + c["ci_high"]) / 2
    assert c["value"] < t < c["ci_high"]

    def gate(rule):
        res = invoke("gate", finished, "--rules", _rules(tmp_path, f'rules = ["{rule}"]\n'))
        return res.exit_code, next(x for x in res.output.splitlines() if "  c  " in x)

    code, line = gate(f"entropy >= {t}")
    assert line.startswith("FAIL")
    code, line = gate(f"entropy.ci_high >= {t}")
    assert line.startswith("PASS") and "(the upper end of its 95% interval)" in line
    code, line = gate(f"entropy <= {t}")
    assert line.startswith("PASS")
    code, line = gate(f"entropy.ci_high <= {t}")
    assert line.startswith("FAIL") and code == 1
    code, line = gate(f"entropy.ci_low >= {c['ci_low'] - 1e-6}")
    assert line.startswith("PASS") and "(the lower end of its 95% interval)" in line
    ranks = scores.filter((pl.col("model") == "c") & (pl.col("measure") == "entropy")
                          & pl.col("statistic").is_in(["rank", "rank_low", "rank_high"]))
    low, high = (ranks.filter(pl.col("statistic") == s)["value"][0] for s in ("rank_low",
                                                                              "rank_high"))
    assert low <= ranks.filter(pl.col("statistic") == "rank")["value"][0] <= high
    code, line = gate(f"entropy.rank_high <= {high}")
    assert line.startswith("PASS") and "(the worst rank its rank set allows)" in line


def test_a_value_on_fewer_images_than_the_run_shows_its_n(finished, tmp_path):
    """Agreement rests on the images with a human map (4 of the 6) for every model: its
    header says so once, marked as too few to decide on; entropy on all 6 shows no n; a
    value resting on fewer images than the others' shows it in its own cell."""
    res = invoke("leaderboard", finished)
    assert res.exit_code == 0, res.output
    header = res.output.splitlines()[0]
    assert "agreement↑ n4!" in header and "entropy↓ " in header and "n6" not in res.output
    assert "nk: the value rests on k of the run's 6 images" in " ".join(res.output.split())
    board = json.loads(invoke("leaderboard", finished, "--format", "json").output)
    assert {r["agreement_n"] for r in board} == {4} and {r["images"] for r in board} == {6}
    fewer = _variant(finished, tmp_path, "fewer", lambda f: f.with_columns(
        pl.when((pl.col("model") == "c") & (pl.col("measure") == "entropy")
                & (pl.col("statistic") == "headline")).then(5).otherwise(pl.col("n"))
        .alias("n")))
    lines = invoke("leaderboard", fewer).output.splitlines()
    row = next(x for x in lines[2:5] if x.split()[1].rstrip("*") == "c")
    assert "0.945 #3 n5!" in row, lines
