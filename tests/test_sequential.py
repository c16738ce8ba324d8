"""Sequential evaluation: repeated intervals whose error rate holds when they are looked
at after every shard, on simulated data with known truth, and the questions a look
decides."""

import math

import numpy as np
import pytest

from harness.sequential import Question, judge, plan_looks
from harness.stats import sequential as design

N, LOOK, DATASETS = 1000, 10, 600
LOOKS = np.arange(LOOK, N + 1, LOOK)


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _lognormal(rng, shape):
    """Differences with mean 0 and SD 1, skewed as exp(N(0, 1)) is."""
    return (np.exp(rng.standard_normal(shape)) - math.exp(0.5)) / math.sqrt(
        (math.e - 1) * math.e)


def _running(x):
    """Per dataset and look: n, mean, sd and skewness of the first n values, as
    :func:`harness.stats.sequential.moments` gives them."""
    n = LOOKS
    s1, s2, s3 = (np.cumsum(x ** p, axis=1)[:, n - 1] for p in (1, 2, 3))
    mean, e2, e3 = s1 / n, s2 / n, s3 / n
    m2 = e2 - mean ** 2
    m3 = e3 - 3 * mean * e2 + 2 * mean ** 3
    sd = np.sqrt(m2 * n / (n - 1))
    return n, mean, sd, m3 / sd ** 3


def _first_rejection(x, critical):
    """The images at the first look whose interval excludes 0 (N when none does), and
    whether any did."""
    n, mean, sd, skew = _running(x)
    low, high = design.interval(n, mean, sd, skew, critical)
    hit = (low > 0) | (high < 0)
    return np.where(hit.any(axis=1), LOOKS[hit.argmax(axis=1)], N), hit.any(axis=1)


def test_boundaries_spend_alpha_exactly_over_brownian_looks():
    """One look is the fixed-n 1.96; over 2, 6 and 20 equally spaced looks the chance
    that a Brownian path crosses any boundary is alpha (400,000 paths)."""
    assert design.boundaries([1.0], 0.05)[0] == pytest.approx(1.959964, abs=1e-4)
    assert design.boundaries([0.5, 1.0], 0.05)[0] == pytest.approx(1.959964 / math.sqrt(0.5),
                                                                   abs=1e-4)
    rng = np.random.default_rng(0)
    for k in (2, 6, 20):
        t = np.arange(1, k + 1) / k
        b = design.boundaries(t, 0.05)
        path = np.cumsum(rng.standard_normal((400_000, k)) * math.sqrt(1 / k), axis=1)
        crossed = (np.abs(path / np.sqrt(t)) >= b).any(axis=1).mean()
        assert crossed == pytest.approx(0.05, abs=0.0015), (k, crossed)


@pytest.mark.parametrize("draw", [_normal, _lognormal], ids=["normal", "lognormal"])
def test_no_true_difference_gives_a_false_verdict_at_most_alpha_over_100_looks(draw):
    """A look after every 10 of 1,000 images: the repeated intervals exclude a true 0 in
    at most 5% + 2 Monte Carlo SE of 600 datasets, while the fixed-n interval checked at
    the same looks does so far more often (so this test can fail)."""
    x = draw(np.random.default_rng(11), (DATASETS, N))
    _, any_false = _first_rejection(x, design.boundaries(LOOKS / N, 0.05))
    limit = 0.05 + 2 * math.sqrt(0.05 * 0.95 / DATASETS)
    _, fixed_false = _first_rejection(x, np.full(len(LOOKS), 1.959964))
    print(f"{draw.__name__[1:]}: any false verdict in {any_false.mean():.1%} of {DATASETS} "
          f"datasets, fixed-n at every look {fixed_false.mean():.1%}")
    assert any_false.mean() <= limit, any_false.mean()
    assert fixed_false.mean() > 3 * limit, fixed_false.mean()


def test_a_bound_free_confidence_sequence_fails_on_skewed_values():
    """Why a group-sequential design: Robbins' normal-mixture confidence sequence with
    the running SD (asymptotic, bound-free), tuned for 100 images, excludes a true 0 on
    far more than 5% of lognormal datasets over the same looks."""
    x = _lognormal(np.random.default_rng(13), (DATASETS, N))
    n, mean, sd, _ = _running(x)
    alpha, rho2 = 0.05, (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 100
    radius = sd * np.sqrt(2 * (n * rho2 + 1) / (n ** 2 * rho2)
                          * np.log(np.sqrt(n * rho2 + 1) / alpha))
    rate = (np.abs(mean) > radius).any(axis=1).mean()
    print(f"normal-mixture sequence on lognormal values: {rate:.1%}")
    assert rate > 0.1


@pytest.mark.parametrize("draw", [_normal, _lognormal], ids=["normal", "lognormal"])
def test_a_true_difference_of_half_an_sd_stops_in_the_first_quarter(draw):
    x = draw(np.random.default_rng(12), (300, N)) + 0.5
    stops, found = _first_rejection(x, design.boundaries(LOOKS / N, 0.05))
    print(f"{draw.__name__[1:]}: median stop at {np.median(stops):.0f} of {N} images")
    assert found.all() and np.median(stops) < 0.25 * N, np.median(stops)


def test_the_skew_corrected_interval_inverts_halls_statistic():
    """The interval's ends are where sqrt(n) g((mean - m) / sd) equals the critical
    value; without skew it is the t interval; without spread the point."""
    n, mean, sd, skew, c = 40, 0.3, 1.2, 2.0, 2.5
    low, high = design.interval(n, mean, sd, skew, c)

    def statistic(m):
        u = (mean - m) / sd
        return math.sqrt(n) * (u + skew * u ** 2 / 3 + skew ** 2 * u ** 3 / 27
                               + skew / (6 * n))

    assert statistic(low) == pytest.approx(c) and statistic(high) == pytest.approx(-c)
    t_low, t_high = design.interval(n, mean, sd, 0.0, c)
    assert (t_low, t_high) == pytest.approx((mean - c * sd / math.sqrt(n),
                                             mean + c * sd / math.sqrt(n)))
    assert design.interval(5, 0.2, 0.0, 0.0, c) == (0.2, 0.2)
    assert design.moments(np.array([1.0, np.nan, 3.0]))[:3] == (2, 2.0, math.sqrt(2))


def test_looks_are_planned_to_the_budget():
    assert plan_looks(60, 10, 0) == [10, 20, 30, 40, 50, 60]
    assert plan_looks(60, 25, 0) == [25, 50, 60]
    assert plan_looks(60, 10, 35) == [10, 20, 30, 35]
    assert plan_looks(8, 10, 0) == [8]


def test_a_question_is_decided_only_when_its_interval_allows():
    regression = Question("m", "entropy", "regression", "entropy vs baseline",
                          tolerance=0.01, higher=False)
    assert judge(regression, 0.02, 0.1) == "fail"  # worse by more than 0.01, shown
    assert judge(regression, -0.05, 0.01) == "pass"  # within the tolerance, shown
    assert judge(regression, 0.0, 0.05) is None
    below = Question("m", "entropy", "rule", "entropy.ci_high <= 0.6", "<=", 0.6)
    assert judge(below, 0.4, 0.55) == "pass" and judge(below, 0.61, 0.7) == "fail"
    assert judge(below, 0.5, 0.65) is None
    above = Question("m", "stability", "rule", "stability >= 0.5", ">=", 0.5)
    assert judge(above, 0.55, 0.7) == "pass" and judge(above, 0.3, 0.45) == "fail"
    pair = Question("a", "entropy", "pair", "entropy: a vs b", other="b")
    assert judge(pair, 0.01, 0.2) == "decided" and judge(pair, -0.1, 0.2) is None


def test_boundaries_that_do_not_spend_what_was_planned_are_refused(monkeypatch):
    """The recursion checks itself: a boundary placed where its paths do not carry the
    planned error (here a crossing moved by 10%), or an error larger than the paths
    left can carry, stops the run with one line instead of giving verdicts at another
    level."""
    from harness.errors import HarnessError
    from harness.sequential import Looks

    question = [Question("m", "entropy", "pair", "entropy: m vs n", other="n")]
    assert np.isfinite(Looks(question, [10, 20, 30]).critical[-1])
    crossing = design._crossing
    monkeypatch.setattr(design, "_crossing", lambda x, m, t: 0.9 * crossing(x, m, t))
    with pytest.raises(HarnessError, match="--until-decided: the boundaries spend"):
        Looks(question, [10, 20, 30])
    monkeypatch.setattr(design, "_crossing", crossing)
    monkeypatch.setattr(design, "spent", lambda t, alpha: 1.5 * np.asarray(t))
    with pytest.raises(HarnessError, match="cannot spend the planned error"):
        Looks(question, [10, 20, 30])
