"""The decision (which model to ship, how sure, what would change it) on simulated
per-image values with a known truth, and through the command line on a tiny zoo."""

import json

import numpy as np
import polars as pl
import pytest

from harness.errors import HarnessError
from harness.results.comparisons import model_pairs, values
from harness.results.decision import DecisionConfig, decide, lines
from harness.results.leaderboard import build, rank_rows
from harness.stats import best
from harness.stats.bootstrap import Bootstrap
from tests.test_run import invoke
from tests.test_run import tiny_zoo as tiny_zoo  # a fixture
from tests.test_statistics import correlated, synthetic_run

MEASURES = {"entropy": False, "agreement": True, "accuracy": True}


def run_of(per_measure: dict, n: int, seed: int = 0):
    """scores (with rank rows), per-image values, pairs and board of a simulated run;
    ``per_measure``: measure -> model -> ``(n,)`` values."""
    keys = [f"{i:064x}" for i in range(n)]
    frames = [synthetic_run(per_model, measure, MEASURES[measure], seed, keys=keys)
              for measure, per_model in per_measure.items()]
    scores = pl.concat([f[0] for f in frames])
    per_image = pl.concat([f[1] for f in frames])
    pairs = model_pairs(values(scores, per_image))
    board = build(scores, per_image, pairs)
    return pl.concat([scores, rank_rows(scores, board)]), per_image, pairs, board


def decided(per_measure, n, seed=0, **config):
    scores, per_image, pairs, board = run_of(per_measure, n, seed)
    return decide(values(scores, per_image), scores, pairs, board,
                  DecisionConfig.checked(**config))


def test_p_best_of_a_clearly_better_model_tends_to_one():
    """Five models, one better than the rest by 0.5 SD on agreement: its P(best) grows
    with the images and passes 0.95 by 300."""
    shares = []
    for n in (20, 80, 300):
        rng = np.random.default_rng(n)
        v = correlated(rng, n, 5, 0.5, shift=[0.5, 0, 0, 0, 0])
        d = decided({"agreement": {f"m{i}": v[:, i] for i in range(5)}}, n,
                    objective="agreement")
        assert d["pick"] == "m0"
        shares.append(d["p_best"])
    assert shares == sorted(shares) and shares[-1] > 0.95, shares


def test_p_best_among_identical_models_is_near_one_in_k():
    """Five models with one truth: over 300 datasets a given model comes first in about a
    fifth of the resamples, and the pick's own P(best) stays far from certainty."""
    k, n = 5, 60
    keys = [f"{i:064x}" for i in range(n)]
    first_model, picks = [], []
    for d in range(300):
        rng = np.random.default_rng(100 + d)
        v = correlated(rng, n, k, 0.5)
        first_model.append(best.first_share(Bootstrap(d, keys).means(v))[0])
        if d < 20:
            per = {"agreement": {f"m{i}": v[:, i] for i in range(k)}}
            picks.append(decided(per, n, seed=d, objective="agreement")["p_best"])
    assert abs(np.mean(first_model) - 1 / k) < 0.03, np.mean(first_model)
    assert np.median(picks) < 0.6, np.median(picks)


def three_models(n=80, seed=3):
    """``good`` leads on agreement and entropy but is least accurate; ``fair`` is close
    behind; ``poor`` trails."""
    rng = np.random.default_rng(seed)
    a = correlated(rng, n, 3, 0.6, shift=[0.8, 0.5, 0.0])
    e = correlated(rng, n, 3, 0.6, shift=[-0.8, -0.5, 0.0])
    acc = (rng.random((n, 3)) < [0.70, 0.95, 0.95]).astype(float)
    names = ["good", "fair", "poor"]
    return {"agreement": dict(zip(names, a.T, strict=True)),
            "entropy": dict(zip(names, e.T, strict=True)),
            "accuracy": dict(zip(names, acc.T, strict=True))}, n


def test_the_default_pick_with_its_top_set_runner_up_and_power():
    per, n = three_models()
    d = decided(per, n)
    assert d["objective"] == "mean_rank" and d["pick"] == "good"
    assert 0.5 < d["p_best"] <= 1 and d["top_set"][0] == "good"
    close = d["closest"]
    assert close["model"] == "fair" and close["diff"] > 0 and close["ci_low"] <= close["diff"]
    power = d["power"]
    assert power["runner_up"] == "fair" and power["images"] == n and power["detectable"] > 0
    said = lines(d)
    assert said[0].startswith("Pick: good, P(best) ") and any("Power: 80 images" in x
                                                              for x in said)


def test_a_constraint_that_excludes_the_pick_moves_it_and_says_why():
    per, n = three_models()
    margin = decided(per, n, constraints=["accuracy not worse than the best by more than 0.05"])
    assert margin["pick"] == "fair"
    assert margin["excluded"]["good"].startswith("accuracy not shown within 0.05 of the best")
    threshold = decided(per, n, constraints=["agreement <= 0.6"])
    assert threshold["pick"] != "good" and "agreement" in threshold["excluded"]["good"]
    everyone = decided(per, n, constraints=["agreement >= 9"])
    assert everyone["pick"] is None and everyone["reason"] == "no model meets the constraints"
    assert lines(everyone)[0].startswith("Pick: none (no model meets the constraints")


def test_objectives_one_measure_and_weights():
    per, n = three_models()
    on_accuracy = decided(per, n, objective="accuracy")
    assert on_accuracy["pick"] in ("fair", "poor") and on_accuracy["units"] == "accuracy"
    weighted = decided(per, n, objective={"agreement": 1, "entropy": 1})
    assert weighted["pick"] == "good" and weighted["units"] == "weighted objective"
    same = decided(per, n, objective="agreement=1,entropy=1")
    assert same == weighted


def test_an_objective_on_too_few_images_is_never_the_pick():
    per, n = three_models()
    per["agreement"]["good"] = per["agreement"]["good"].copy()
    per["agreement"]["good"][9:] = np.nan  # nine images left
    d = decided(per, n, objective="agreement")
    assert d["pick"] == "fair" and "rests on 9 images" in d["excluded"]["good"]


@pytest.mark.parametrize(("config", "message"), [
    ({"objective": "agreemnt"}, "did you mean 'agreement'"),
    ({"constraints": ["sanity >= 0.5"]}, "'sanity' is not a measure of this run"),
    ({"constraints": ["sanity >= x"]}, "write 'measure <op> number'"),
    ({"objective": {"agreement": -1}}, "weights must be a table of measure = number > 0"),
])
def test_a_decision_naming_what_the_run_lacks_is_one_line(config, message):
    per, n = three_models(n=20)
    with pytest.raises(HarnessError, match=message.replace("(", r"\(")):
        decided(per, n, **config)


def test_pick_reproduces_the_runs_decision_and_the_gate_tests_p_best(tiny_zoo, tmp_path):
    out = tmp_path / "run"
    res = invoke("run", "--zoo", tiny_zoo, "--out", out, "--quiet", "--measures",
                 "entropy,agreement")
    assert res.exit_code == 0, res.output
    assert any(x.startswith("Pick: ") for x in res.output.splitlines())
    stored = json.loads((out / "run.json").read_text())["decision"]
    again = invoke("pick", out, "--json")
    assert again.exit_code == 0 and json.loads(again.output) == stored
    board = invoke("leaderboard", out)
    assert any(x.startswith("Pick: ") for x in board.output.splitlines())
    other = json.loads(invoke("pick", out, "--json", "--objective", "entropy").output)
    assert other["objective"] == "entropy" and other["units"] == "entropy"
    rules = tmp_path / "gate.toml"
    rules.write_text(f'rules = ["p_best >= {stored["p_best"] - 1e-9}"]\n')
    passed = invoke("gate", out, "--rules", rules)
    assert passed.exit_code == 0 and "the share of resamples in which the pick comes first" \
        in passed.output
    rules.write_text(f'rules = ["p_best >= {stored["p_best"] + 1e-6}"]\n')
    assert invoke("gate", out, "--rules", rules).exit_code == 1
    rules.write_text('rules = ["p_best.ci_low >= 0.5"]\n')
    bad = invoke("gate", out, "--rules", rules)
    assert bad.exit_code == 2 and "p_best has no statistic" in bad.output
