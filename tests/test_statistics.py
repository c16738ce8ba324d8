"""The statistics behind every verdict, checked against known truth: simulated per-image
values (NumPy only, no models) whose true differences are set by hand."""

import itertools

import numpy as np
import polars as pl
import pytest

from harness.measures.base import mean_stat
from harness.results.comparisons import family_pairs, model_pairs, values
from harness.results.gate import Rules, check
from harness.results.leaderboard import build, directions, render
from harness.results.schema import per_image_frame, to_frame
from harness.results.verdicts import verdicts
from harness.stats.bootstrap import Bootstrap
from harness.stats.families import family_draws, family_means, family_test
from harness.stats.paired import FLIPS, holm, paired, sign_flip_p
from harness.stats.ranks import pareto, rank_sets, separable_ranks, value_ranks

N = 60
KEYS = [f"{i:064x}" for i in range(N)]


def correlated(rng, n_images, n_models, rho, shift=None):
    """Per-image values, unit variance per model, correlation ``rho`` between models
    (a shared image effect: models agree on which images are hard); ``shift`` adds a
    true mean per model."""
    image = rng.standard_normal((n_images, 1)) * np.sqrt(rho)
    noise = rng.standard_normal((n_images, n_models)) * np.sqrt(1 - rho)
    return image + noise + (0 if shift is None else np.asarray(shift))


# -- the paired interval and test -------------------------------------------------------

def test_paired_interval_covers_a_zero_difference_at_its_nominal_rate():
    """2,000 datasets of 60 correlated pairs with no true difference (normal): the 95%
    paired interval covers 0 in 93-97% of them (binomial SE at 95%: 0.5 points). Ten
    bootstraps of 200 datasets each, the datasets side by side as columns."""
    rng = np.random.default_rng(0)
    covered = []
    for k in range(10):
        v = correlated(rng, N, 400, 0.8)
        result = paired(v[:, :200] - v[:, 200:], Bootstrap(k, KEYS))
        covered.append((result.ci_low <= 0) & (0 <= result.ci_high))
    rate = np.concatenate(covered).mean()
    assert 0.93 <= rate <= 0.97, rate


@pytest.mark.parametrize(("test", "datasets"), [("sign-flip", 400), ("bootstrap-t", 100)])
def test_holm_keeps_the_family_wise_error_of_15_models_at_5_percent(test, datasets):
    """Datasets of 15 models with equal true means: Holm-adjusted paired tests over the
    105 pairs reject any pair in at most 5% of datasets plus two Monte Carlo SEs (the
    studentised test on fewer datasets: it costs 10,000 resamples of 105 columns)."""
    rng = np.random.default_rng(1)
    models = 15
    pairs = list(itertools.combinations(range(models), 2))
    any_rejected = 0
    for k in range(datasets):
        v = correlated(rng, N, models, 0.8)
        d = np.stack([v[:, i] - v[:, j] for i, j in pairs], axis=1)
        p = sign_flip_p(d, seed=k) if test == "sign-flip" else \
            paired(d, Bootstrap(k, KEYS)).p_value
        any_rejected += (holm(p) < 0.05).any()
    bound = 0.05 + 2 * np.sqrt(0.05 * 0.95 / datasets)
    assert any_rejected / datasets <= bound, any_rejected / datasets


def test_paired_test_finds_what_overlapping_intervals_miss():
    """A true difference of 0.3 SD between two models that agree on which images are
    hard (correlation 0.8): the paired test rejects in well over half of 300 datasets;
    the old rule (separate intervals that do not overlap) in far fewer."""
    rng = np.random.default_rng(2)
    datasets = 300
    paired_hits = old_hits = 0
    for k in range(datasets):
        v = correlated(rng, N, 2, 0.8, shift=[0.3, 0.0])
        result = paired(v[:, 0] - v[:, 1], Bootstrap(k, KEYS))
        paired_hits += result.p_value[0] < 0.05
        # the old rule: each model on its own resamples, separable if intervals are apart
        a = mean_stat("a", v[:, 0], Bootstrap(2 * k, KEYS))
        b = mean_stat("b", v[:, 1], Bootstrap(2 * k + 1, KEYS))
        old_hits += a.ci_low > b.ci_high
    assert paired_hits / datasets >= 0.8, paired_hits / datasets
    assert old_hits / datasets <= 0.2, old_hits / datasets


@pytest.mark.parametrize("n", [5, 8, 12])
def test_sign_flip_p_matches_exact_enumeration(n):
    rng = np.random.default_rng(n)
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=n)))
    for case in range(4):
        d = rng.standard_normal(n) + 0.4 * case
        exact = np.mean(np.abs(patterns @ d) >= np.abs(d.sum()) - 1e-12)
        estimate = sign_flip_p(d[:, None], seed=case)[0]
        error = 4 * np.sqrt(exact * (1 - exact) / FLIPS) + 2 / (FLIPS + 1)
        assert abs(estimate - exact) <= error, (n, case, estimate, exact)


def test_sign_flip_ignores_missing_images_and_is_seeded():
    rng = np.random.default_rng(3)
    d = rng.standard_normal(20) + 0.5
    with_gaps = np.concatenate([d, np.full(7, np.nan)])
    keys = [f"k{i}" for i in range(27)]
    gapped = paired(with_gaps, Bootstrap(0, keys))
    assert gapped.n[0] == 20 and gapped.diff[0] == pytest.approx(d.mean())
    assert paired(with_gaps, Bootstrap(0, keys)).p_value == gapped.p_value
    assert paired(np.zeros(8), Bootstrap(0, keys[:8])).p_value[0] == 1.0  # no difference


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 -> max(0.04, 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 0.5 x 2 = 1; 0.9 kept monotone
    out = holm([0.02, np.nan, 0.01])
    assert np.isnan(out[1]) and out[[0, 2]] == pytest.approx([0.02, 0.02])


# -- the shared bootstrap ---------------------------------------------------------------

def test_bootstrap_depends_on_the_set_of_images_not_their_order():
    boot = Bootstrap(5, KEYS)
    assert boot.counts.shape == (9999, N) and (boot.counts.sum(axis=1) == N).all()
    # the first 1,000 resamples are those a 1,000-resample bootstrap draws
    assert np.array_equal(Bootstrap(5, KEYS, resamples=1000).counts, boot.counts[:1000])
    order = np.random.default_rng(0).permutation(N)
    shuffled = Bootstrap(5, [KEYS[i] for i in order])
    assert np.array_equal(shuffled.counts, boot.counts[:, order])
    assert not np.array_equal(Bootstrap(6, KEYS).counts, boot.counts)
    assert boot.interval(np.full(N, 0.25)) == (0.25, 0.25)
    with pytest.raises(ValueError, match="distinct"):
        Bootstrap(0, ["a", "a"])


def test_repeated_images_get_distinct_keys():
    from harness.execution.plan import image_keys

    images = np.zeros((3, 4, 4, 3), np.uint8)
    images[1] += 1
    keys = image_keys(images)
    assert keys[2] == keys[0] + ":2" and len(set(keys)) == 3
    Bootstrap(0, keys)  # accepted: one key per image


# -- ranks, Pareto front, families ------------------------------------------------------

def test_ranks_and_pareto_front():
    better = np.zeros((4, 4), bool)
    better[0, 1] = better[0, 2] = better[1, 2] = True  # 0 > 1 > 2; 3 not separable
    scored = np.array([True, True, True, False])
    assert separable_ranks(better, scored)[:3].tolist() == [1, 2, 3]
    assert np.isnan(separable_ranks(better, scored)[3])
    assert value_ranks(np.array([0.2, 0.5, 0.5, np.nan]), higher=True)[:3].tolist() == [3, 1, 1]
    other = np.zeros((4, 4), bool)
    other[2, 0] = True  # model 2 beats model 0 on a second measure, so 0 no longer
    # dominates 2, but 1 still does (better once, never worse); 3 is never compared
    assert pareto([better, other]).tolist() == [True, False, False, True]
    other[2, 1] = True
    assert pareto([better, other]).tolist() == [True, False, True, True]
    low, high = rank_sets(better, scored)
    assert low[:3].tolist() == [1, 2, 3] and high[:3].tolist() == [1, 2, 3]
    assert np.isnan(low[3]) and np.isnan(high[3])
    undecided = np.zeros((4, 4), bool)
    undecided[0, 2] = True  # only 0 > 2 is decided among three scored models
    low, high = rank_sets(undecided, scored)
    assert low[:3].tolist() == [1, 1, 2] and high[:3].tolist() == [2, 3, 3]


def test_rank_sets_hold_every_true_rank_at_once():
    """15 models with a known order (means 0.15 SD apart, images shared): the rank sets
    from Holm-adjusted paired tests contain all 15 true ranks at once in >= 95% of
    datasets, and every printed rank lies in its own set."""
    from harness.results.comparisons import better_matrix, model_pairs, values

    k, n, datasets = 15, 30, 120
    means = 0.15 * np.arange(k)  # model 0 lowest; higher is better: true rank k - index
    truth = k - np.arange(k)
    held = 0
    for d in range(datasets):
        rng = np.random.default_rng(1000 + d)
        v = correlated(rng, n, k, 0.6, shift=means)
        scores, per_image = synthetic_run({f"m{i:02d}": v[:, i] for i in range(k)},
                                          measure="agreement", higher=True, seed=d,
                                          keys=KEYS[:n])
        models = [f"m{i:02d}" for i in range(k)]
        better = better_matrix(model_pairs(values(scores, per_image)), "agreement", models,
                               True)
        low, high = rank_sets(better, np.ones(k, bool))
        rank = separable_ranks(better, np.ones(k, bool))
        assert ((low <= rank) & (rank <= high)).all()
        held += bool(((low <= truth) & (truth <= high)).all())
    assert held / datasets >= 0.95, held / datasets


def test_family_bootstrap_separates_recipes_not_seeds():
    rng = np.random.default_rng(4)
    shift = [0.0] * 4 + [0.8] * 4  # two recipes, four seeds each
    v = correlated(rng, N, 8, 0.8, shift=shift)
    boot = Bootstrap(0, KEYS)
    a, b = family_draws(v, [0, 1, 2, 3], boot, "a"), family_draws(v, [4, 5, 6, 7], boot, "b")
    assert b.value - a.value == pytest.approx(v[:, 4:].mean() - v[:, :4].mean())
    n, low, high, p = family_test(b, a, family_means(v, [4, 5, 6, 7]) - family_means(
        v, [0, 1, 2, 3]), boot)
    assert n == N and 0 < low < 0.8 < high and p < 0.01
    a, b = family_draws(v, [0, 1], boot, "a"), family_draws(v, [2, 3], boot, "b")
    n, low, high, p = family_test(a, b, family_means(v, [0, 1]) - family_means(v, [2, 3]),
                                  boot)
    assert low < 0 < high and p > 0.05


# -- from per-image values to a leaderboard, verdicts and a gate ----------------------

def synthetic_run(per_model: dict, measure="entropy", higher=False, seed=0, family=None,
                  keys=KEYS):
    """The scores and per-image frames a run of these per-image values would write."""
    boot = Bootstrap(seed, keys)
    records = []
    for model, v in per_model.items():
        stat = mean_stat("headline", v, boot)
        records.append({"model": model, "family": (family or {}).get(model),
                        "measure": measure, "statistic": "headline", "value": stat.value,
                        "ci_low": stat.ci_low, "ci_high": stat.ci_high, "n": stat.n,
                        "higher_is_better": higher, "image_set_hash": "h",
                        "salience_config": "{}", "seed": seed, "status": "ok"})
    per_image = per_image_frame([(m, measure, v) for m, v in per_model.items()], list(keys))
    return to_frame(records), per_image


def test_leaderboard_ranks_by_paired_verdicts_never_by_name():
    rng = np.random.default_rng(5)
    v = correlated(rng, N, 3, 0.9, shift=[0.0, 0.0, -0.5])  # lower is better: "zz" wins
    scores, per_image = synthetic_run({"aa": v[:, 0], "ab": v[:, 1], "zz": v[:, 2]})
    pairs = model_pairs(values(scores, per_image))
    board = build(scores, per_image, pairs)
    assert board["model"].to_list()[0] == "zz"
    assert board.filter(pl.col("model") == "zz")["entropy_rank"][0] == 1
    assert set(board.filter(pl.col("model") != "zz")["entropy_rank"]) == {2}
    assert board["pareto"].to_list() == [True, False, False]
    # a tie in separable rank is broken by the point value, not the name
    point = {m: v for m, v in zip(board["model"], board["entropy"], strict=True)}
    assert board["model"].to_list()[1] == min(("aa", "ab"), key=point.get)
    text = render(board, directions(scores), "table")
    assert max(len(line) for line in text.splitlines()) <= 100
    lines = verdicts(pairs, {"entropy": False})
    assert lines[0] == "entropy (lower is better): 2 of 3 pairs separable (Holm-adjusted p < 0.05)"
    assert all(line.strip().startswith("zz has lower entropy than a") for line in lines[1:])


def test_families_frame_from_a_run():
    rng = np.random.default_rng(6)
    v = correlated(rng, N, 4, 0.8, shift=[0.0, 0.0, 1.0, 1.0])
    family = {"a1": "a", "a2": "a", "b1": "b", "b2": "b"}
    scores, per_image = synthetic_run(dict(zip(family, v.T, strict=True)), higher=True,
                                      family=family)
    frame = family_pairs(values(scores, per_image))
    row = frame.row(0, named=True)
    assert (row["family_a"], row["family_b"], row["n"]) == ("a", "b", N)
    assert row["diff"] == pytest.approx(row["value_a"] - row["value_b"])
    assert row["ci_high"] < 0 and row["p_adjusted"] < 0.05


def _gate_runs(change, tolerance=0.0):
    rng = np.random.default_rng(7)
    base = 0.5 + 0.2 * rng.standard_normal(N)
    baseline = synthetic_run({"m": base})
    run = synthetic_run({"m": base + change(rng)})
    rules = Rules((), no_regression=True, tolerance=tolerance)
    checks = check(run[0], rules, baseline[0], per_image=run[1], baseline_per_image=baseline[1])
    return run[0], baseline[0], checks


def test_gate_catches_a_paired_regression_inside_overlapping_intervals():
    run, base, checks = _gate_runs(lambda rng: 0.04 + 0.01 * rng.standard_normal(N))
    assert run["ci_low"][0] < base["ci_high"][0]  # the old interval rule would pass it
    assert [c.passed for c in checks] == [False] and ": worse" in checks[0].detail
    _, _, tolerated = _gate_runs(lambda rng: 0.04 + 0.01 * rng.standard_normal(N), 0.05)
    assert tolerated[0].passed and "worse, within tolerance" in tolerated[0].detail
    _, _, improved = _gate_runs(lambda rng: -0.04 + 0.01 * rng.standard_normal(N))
    assert improved[0].passed and ": better" in improved[0].detail
    _, _, unchanged = _gate_runs(lambda rng: 0.01 * rng.standard_normal(N))
    assert unchanged[0].passed


def test_gate_fails_a_model_the_baseline_lacks():
    rng = np.random.default_rng(8)
    values_ = 0.5 + 0.1 * rng.standard_normal(N)
    baseline = synthetic_run({"m": values_})
    run = synthetic_run({"m": values_, "new": values_})
    checks = check(run[0], Rules((), no_regression=True), baseline[0], per_image=run[1],
                   baseline_per_image=baseline[1])
    verdict = {c.model: c for c in checks}
    assert verdict["m"].passed and not verdict["new"].passed
    assert "model missing from the baseline" in verdict["new"].detail


def test_counts_that_would_widen_the_table_past_100_columns_move_to_its_footnote():
    """A value on 55 of the 60 images says n55 in its cell while the table fits, and one
    on 6 is marked n6!; with names that fill the width the n55 moves to the footnote."""
    rng = np.random.default_rng(9)
    v = correlated(rng, N, 3, 0.5)
    v[:5, 0] = np.nan  # model 0: 55 images
    v[6:, 2] = np.nan  # model 2: 6 images, too few

    def table(per_model):
        scores, per_image = synthetic_run(per_model)
        board = build(scores, per_image, model_pairs(values(scores, per_image)))
        text = render(board, directions(scores), "table")
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= 100, text
        return {x.split()[1].rstrip("*"): x for x in lines[2:2 + len(per_model)]}, \
            " ".join(text.split())

    rows, text = table({"a": v[:, 0], "b": v[:, 1], "c": v[:, 2]})
    assert " n55" in rows["a"] and " n6!" in rows["c"] and "on fewer images" not in text
    long = ["m" * 82, "n" * 82]
    rows, text = table({long[0]: v[:, 0], long[1]: v[:, 1]})
    assert " n55" not in rows[long[0]] and "on fewer images: entropy n55 (1 model)" in text


def test_the_footnote_never_breaks_a_model_name_at_its_hyphens():
    """The flat-map line names many hyphenated models; wrapped to 100 columns, each name
    stays on one line."""
    rng = np.random.default_rng(3)
    v = correlated(rng, N, 12, 0.5)
    names = [f"faces-cyborg-{i}" for i in range(12)]
    scores, per_image = synthetic_run(dict(zip(names, v.T, strict=True)))
    scores = scores.with_columns(flat_fraction=pl.lit(0.05))
    board = build(scores, per_image, model_pairs(values(scores, per_image)))
    text = render(board, directions(scores), "table")
    assert "Flat clean maps" in text
    assert all(f"{name} 3 of {N}" in text for name in names), text
