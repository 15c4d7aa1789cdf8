"""report.verdict on synthetic samples from seeded generators: false alarms, power, minimum effect, tiny n."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from pytest_lxcexp.report.verdict import (
    ALPHA,
    BETTER,
    CANT_TELL,
    DEFAULT_MIN_EFFECT,
    MANN_WHITNEY,
    SAME,
    WILCOXON,
    WORSE,
    compare_outcomes,
    compare_paired,
    compare_samples,
    compare_values,
    decide,
    hodges_lehmann,
    paired_hodges_lehmann,
    paired_shift_ci,
    shift_ci,
)

MEDIAN = 0.010  # 10 ms, a start latency on a quiet host


def latencies(rng: np.random.Generator, n: int, factor: float = 1.0, spread: float = 0.3) -> list[float]:
    """Right-skewed like real start latencies (log-normal), scaled by factor."""
    return list(rng.lognormal(np.log(MEDIAN * factor), spread, n))


def drifting_pairs(
    rng: np.random.Generator, n: int, factor: float = 1.0, noise: float = 0.08
) -> list[tuple[float, float]]:
    """Interleaved builds on a host that slows down as VEs pile up: the latency at place k
    grows from 10 to 40 ms over the run, the same for both VEs of the place (they started
    side by side), each with its own noise; the candidate's `factor` slower."""
    level = MEDIAN * np.linspace(1.0, 4.0, n)
    baseline = level * rng.lognormal(0.0, noise, n)
    candidate = level * factor * rng.lognormal(0.0, noise, n)
    return list(zip(baseline.tolist(), candidate.tolist(), strict=True))


def test_identical_distributions_are_almost_never_worse() -> None:
    # Under no difference the test alone says "worse" at most alpha/2 of the time (two-sided);
    # over 200 seeds that is 1 expected, and more than the binomial's 99.9% point is a bug.
    seeds = 200
    bound = stats.binom.ppf(0.999, seeds, ALPHA / 2)
    found = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        verdict = compare_samples("start_latency", "A", "B", latencies(rng, 100), latencies(rng, 100))
        found.append(verdict.verdict)
    assert found.count(WORSE) <= bound, f"{found.count(WORSE)} false alarms in {seeds} (bound {bound:g})"
    assert set(found) <= {SAME, CANT_TELL, BETTER}
    assert found.count(BETTER) <= bound


def test_a_ten_percent_slowdown_of_200_samples_is_worse() -> None:
    # The target: a build 10% slower, 200 VEs a side, caught in at least 19 of 20 runs
    # (at this spread; how noisy the host is decides the spread, docs/benchmarks.md).
    verdicts = []
    for seed in range(20):
        rng = np.random.default_rng(1000 + seed)
        baseline, candidate = latencies(rng, 200, spread=0.15), latencies(rng, 200, 1.10, spread=0.15)
        verdicts.append(compare_samples("start_latency", "A", "B", baseline, candidate))
    assert sum(v.verdict == WORSE for v in verdicts) >= 19
    caught = next(v for v in verdicts if v.verdict == WORSE)
    assert caught.p_value <= ALPHA and caught.shift_percent > DEFAULT_MIN_EFFECT
    assert caught.ci_low < caught.shift < caught.ci_high
    assert 5 < caught.shift_percent < 15  # the estimate is near the 10% put in


def test_a_real_but_tiny_shift_is_same() -> None:
    # 1% slower, measured so precisely that the test is sure of it: below the minimum effect, so "same".
    rng = np.random.default_rng(7)
    baseline, candidate = latencies(rng, 2000, spread=0.1), latencies(rng, 2000, 1.01, spread=0.1)
    verdict = compare_samples("start_latency", "A", "B", baseline, candidate)
    assert verdict.p_value <= ALPHA  # the difference is real ...
    assert verdict.verdict == SAME  # ... and too small to matter
    low, high = verdict.ci_percent
    assert -DEFAULT_MIN_EFFECT < low < 1.0 < high < DEFAULT_MIN_EFFECT


def test_tiny_samples_cannot_tell_even_a_large_shift() -> None:
    verdict = compare_samples("start_latency", "A", "B", [0.010] * 5, [0.020] * 5)
    assert verdict.verdict == CANT_TELL and "too few samples (5 and 5" in verdict.reason
    assert verdict.p_value is None and verdict.shift is None


def test_a_noisy_small_sample_is_cant_tell_not_same() -> None:
    rng = np.random.default_rng(3)
    verdict = compare_samples("start_latency", "A", "B", latencies(rng, 15, spread=0.5), latencies(rng, 15, spread=0.5))
    assert verdict.verdict == CANT_TELL  # the CI reaches past +-5%


def test_faster_is_better_and_direction_follows_the_metric() -> None:
    rng = np.random.default_rng(11)
    slow, fast = latencies(rng, 300, 1.3, 0.2), latencies(rng, 300, 1.0, 0.2)
    assert compare_samples("start_latency", "A", "B", slow, fast).verdict == BETTER
    # A metric where lower is worse (VEs per second, say): the same numbers now say worse.
    assert compare_samples("rate", "A", "B", slow, fast, worse="lower").verdict == WORSE


def test_the_minimum_effect_decides_what_a_sure_shift_means() -> None:
    rng = np.random.default_rng(5)
    baseline, candidate = latencies(rng, 300, spread=0.2), latencies(rng, 300, 1.10, spread=0.2)
    assert compare_samples("s", "A", "B", baseline, candidate, min_effect=5).verdict == WORSE
    # The shift is about +11% (CI about +8..+15%): inside +-30% as a whole, no change that matters at that size.
    assert compare_samples("s", "A", "B", baseline, candidate, min_effect=30).verdict == SAME
    # The shift is under 12%, the CI reaches past it: maybe more, maybe less than the minimum effect.
    assert compare_samples("s", "A", "B", baseline, candidate, min_effect=12).verdict == CANT_TELL


def test_hodges_lehmann_is_the_median_of_pairwise_differences() -> None:
    assert hodges_lehmann([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == 1.0
    assert hodges_lehmann([0.0, 0.0, 10.0], [1.0, 1.0, 1.0]) == 1.0  # robust to the outlier
    rng = np.random.default_rng(2)
    x, y = rng.normal(0, 1, 2500), rng.normal(0.5, 1, 2500)  # 6.25 M pairs: the random-pairs path
    exact = float(np.median(np.subtract.outer(y, x)))
    assert hodges_lehmann(x, y) == pytest.approx(exact, abs=0.01)


def test_interval_covers_the_shift_and_is_reproducible() -> None:
    rng = np.random.default_rng(9)
    x, y = rng.normal(10, 1, 200), rng.normal(11, 1, 200)
    low, high = shift_ci(x, y)
    assert low < 1.0 < high and high - low < 0.6
    assert shift_ci(x, y) == (low, high)  # the same samples, the same interval
    assert shift_ci([5.0] * 20, [5.0] * 20) == (0.0, 0.0)  # identical samples: no spread at all


def test_interval_is_the_shifts_mann_whitney_does_not_reject() -> None:
    # Each end lies between a shift the test rejects at 5% and one it does not (on the rejected
    # side, so the closed interval is held), and on one of the pairwise differences y_j - x_i
    # (where the statistic steps): Moses' interval.
    rng = np.random.default_rng(31)
    x, y = rng.lognormal(0, 0.3, 30), rng.lognormal(0.1, 0.3, 40)
    low, high = shift_ci(x, y)
    span = (y.max() - x.min()) - (y.min() - x.max())
    step = span * 1e-5
    differences = np.subtract.outer(y, x).ravel()
    for end, outward in ((low, -step), (high, step)):
        assert stats.mannwhitneyu(y - (end - outward), x).pvalue > 0.05
        assert stats.mannwhitneyu(y - end, x).pvalue <= 0.05
        assert np.min(np.abs(differences - end)) < step
    assert low < hodges_lehmann(x, y) < high


@pytest.mark.parametrize(
    ("p", "shift", "ci", "verdict"),
    [
        (0.001, 10.0, (6.0, 14.0), WORSE),
        (0.001, -10.0, (-14.0, -6.0), BETTER),
        (0.001, 2.0, (1.0, 3.0), SAME),  # significant but tiny
        (0.5, 0.5, (-3.0, 4.0), SAME),
        (0.5, 0.5, (-8.0, 9.0), CANT_TELL),
        (0.001, 4.0, (1.0, 7.0), CANT_TELL),  # a difference, maybe beyond the minimum effect
        (0.02, 10.0, (1.0, 19.0), CANT_TELL),  # big but not significant at 0.01
    ],
)
def test_decide(p: float, shift: float, ci: tuple[float, float], verdict: str) -> None:
    assert decide(p, shift, ci, 5.0, "higher")[0] == verdict


def test_a_place_that_fails_only_on_the_candidate_is_named_but_not_worse_by_itself() -> None:
    baseline = {(1, k): False for k in range(1, 101)}
    candidate = dict(baseline) | {(1, 7): True}
    verdict = compare_outcomes("completed", "A", "B", baseline, candidate, paired=True)
    # One failed start in 100 is what a flaky host does now and then: named, not "worse".
    assert verdict.verdict == CANT_TELL and verdict.new_failures == ("(1, 7)",)
    assert verdict.method == "McNemar exact (paired)" and verdict.p_value == 1.0
    assert "1 place(s) fine on the baseline are not on the candidate: (1, 7)" in verdict.reason
    # Failing at the same place on both sides is not the candidate's doing.
    both = compare_outcomes("completed", "A", "B", dict(candidate), candidate, paired=True)
    assert both.verdict == SAME and both.new_failures == ()
    # Ten places bad on the candidate only, none on the baseline only: p = 2 * 0.5**10.
    ten = dict(baseline) | {(1, k): True for k in range(1, 11)}
    worse = compare_outcomes("completed", "A", "B", baseline, ten, paired=True)
    assert worse.verdict == WORSE and worse.p_value == pytest.approx(2 * 0.5**10)
    assert worse.new_failures[:3] == ("(1, 1)", "(1, 2)", "(1, 3)")  # in place order, not as text
    assert compare_outcomes("completed", "A", "B", ten, baseline, paired=True).verdict == BETTER


def test_outcomes_of_identical_builds_on_a_flaky_host_are_rarely_worse() -> None:
    # A/A: both builds fail 0.5% of their starts at random places; 400 comparisons of 100
    # places. When any place bad on the candidate only was "worse", 42% of them were.
    rng = np.random.default_rng(5)
    said = []
    for _ in range(400):
        a, b = (rng.random(100) < 0.005 for _ in range(2))
        baseline = {(0, k): bool(a[k]) for k in range(100)}
        candidate = {(0, k): bool(b[k]) for k in range(100)}
        said.append(compare_outcomes("completed", "A", "B", baseline, candidate, paired=True).verdict)
    assert said.count(WORSE) <= 2  # at most alpha/2 of 400 expected: 2
    assert said.count(BETTER) <= 2


def test_outcome_counts_of_two_runs_use_fishers_test() -> None:
    baseline = {("a", k): k <= 2 for k in range(1, 101)}
    candidate = {("b", k): k <= 30 for k in range(1, 101)}  # other places: only the counts compare
    assert compare_outcomes("completed", "A", "B", baseline, candidate).verdict == WORSE
    assert compare_outcomes("completed", "A", "B", candidate, baseline).verdict == BETTER
    assert compare_outcomes("completed", "A", "B", baseline, baseline).verdict == SAME
    assert compare_outcomes("completed", "A", "B", {}, baseline).verdict == CANT_TELL
    few = {("b", k): k <= 4 for k in range(1, 101)}  # 2 against 4 of 100: not told from chance
    assert compare_outcomes("completed", "A", "B", baseline, few).verdict == CANT_TELL


def test_one_value_each_is_held_against_the_minimum_effect_only() -> None:
    assert compare_values("takedown_s", "A", "B", 10.0, 13.0, min_effect=20).verdict == WORSE
    assert compare_values("takedown_s", "A", "B", 10.0, 11.0, min_effect=20).verdict == SAME
    assert compare_values("takedown_s", "A", "B", 10.0, 7.0, min_effect=20).verdict == BETTER
    unjudged = compare_values("takedown_s", "A", "B", 10.0, 13.0, judged=False)
    assert unjudged.verdict == CANT_TELL and unjudged.shift == 3.0  # one value each is no evidence
    missing = compare_values("takedown_s", "A", "B", None, 7.0)
    assert missing.verdict == CANT_TELL and missing.method == "one value each"


def test_verdicts_are_json_without_infinities() -> None:
    rng = np.random.default_rng(4)
    verdicts = [
        compare_samples("start_latency", "A", "B", latencies(rng, 50), latencies(rng, 50)),
        compare_outcomes("completed", "A", "B", {1: False}, {1: True}),
        compare_values("setup_s", "A", "B", 0.0, 1.0),  # from zero: an infinite relative change
    ]
    text = json.dumps([v.to_dict() for v in verdicts], allow_nan=False)
    loaded = json.loads(text)
    assert loaded[0]["metric"] == "start_latency" and loaded[0]["method"] == "Mann-Whitney U"
    assert loaded[2]["shift_percent"] is None and loaded[2]["verdict"] == WORSE


def test_paired_hodges_lehmann_is_the_median_of_walsh_averages() -> None:
    assert paired_hodges_lehmann([1.0, 2.0, 3.0]) == 2.0
    # Walsh averages of 0, 0, 10: 0, 0, 0, 5, 5, 10 -> 2.5 (the median of the differences, 0,
    # would ignore the third pair entirely; the mean, 3.3, would follow the outlier).
    assert paired_hodges_lehmann([0.0, 0.0, 10.0]) == 2.5
    rng = np.random.default_rng(12)
    d = rng.normal(0.5, 1.0, 2900)  # 4.2 M Walsh averages: the random-pairs path
    i, j = np.triu_indices(d.size)
    assert paired_hodges_lehmann(d) == pytest.approx(float(np.median((d[i] + d[j]) / 2)), abs=0.01)


def test_paired_interval_covers_the_shift_and_is_reproducible() -> None:
    rng = np.random.default_rng(13)
    d = rng.normal(1.0, 1.0, 200)
    low, high = paired_shift_ci(d)
    assert low < 1.0 < high and high - low < 0.6
    assert paired_shift_ci(d) == (low, high)
    assert paired_shift_ci([0.0] * 20) == (0.0, 0.0)
    assert paired_shift_ci([0.3] * 20) == (0.3, 0.3)  # one difference, whatever the pair


def test_paired_interval_of_ten_is_tukeys_between_walsh_averages() -> None:
    # The textbook interval (Hollander & Wolfe, table A.4): with 10 pairs the signed-rank test
    # rejects at 5% for T+ <= 8 (P = 25/1024 a side), so the 95% interval runs from the 9th
    # smallest to the 9th largest of the 55 Walsh averages.
    rng = np.random.default_rng(17)
    d = rng.normal(0.4, 1.0, 10)
    i, j = np.triu_indices(d.size)
    walsh = np.sort((d[i] + d[j]) / 2)
    low, high = paired_shift_ci(d)
    span = d.max() - d.min()
    assert low == pytest.approx(walsh[8], abs=span * 1e-5)
    assert high == pytest.approx(walsh[-9], abs=span * 1e-5)


def test_paired_memory_with_most_pairs_equal_is_not_same_when_a_quarter_grew() -> None:
    # Memory in bytes: 72 of 100 places charged exactly the same on both builds, 28 charged 40%
    # more on the candidate. The Walsh averages' median is 0, and the signed-rank test drops the
    # zero differences, so at the estimate itself it rejects (p ~ 1e-13); every shift just above
    # it, up to ~20%, it does not. The interval once collapsed to [0, 0] and said "same".
    base = 40 * 4096.0
    pairs = [(base, base)] * 72 + [(base, base * 1.4)] * 28
    verdict = compare_paired("cgroup_memory", "A", "B", pairs)
    assert verdict.shift == 0.0 and verdict.p_value <= ALPHA
    assert verdict.ci_low <= verdict.shift <= verdict.ci_high
    assert verdict.ci_percent[1] > 15.0  # the shifts the test does not reject reach ~20%
    differences = np.array([c - b for b, c in pairs])
    assert stats.wilcoxon(differences - verdict.ci_high / 2).pvalue > 0.05
    assert verdict.verdict == CANT_TELL


def test_a_few_tied_pairs_are_not_searched_with_permutation_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    # 12 pairs of memory in whole pages tie everywhere: scipy answers up to 13 differences
    # with ties or zeros by a permutation test (0.3-0.6 s each here), and the interval's
    # search made ~40 of them: 20-30 s for one metric. The exact null distribution (scipy
    # rounds a tied statistic the conservative way) gives each step at once.
    rng = np.random.default_rng(3)
    pairs = list(zip(4096.0 * rng.integers(30, 33, 12), 4096.0 * rng.integers(30, 34, 12), strict=True))
    searched = []
    original = stats.permutation_test
    monkeypatch.setattr(stats, "permutation_test", lambda *a, **k: searched.append(1) or original(*a, **k))
    verdict = compare_paired("monitor_pss", "A", "B", pairs)
    assert verdict.ci_low <= verdict.shift <= verdict.ci_high
    assert len(searched) <= 1  # the verdict's own p-value may take one


def test_an_interval_ending_on_the_minimum_effect_is_not_inside_it() -> None:
    # Memory in whole pages, a baseline median of 30 pages: the signed-rank test keeps every
    # shift up to 1.5 pages (5% exactly, where it starts to reject) but not that one. The
    # interval (Tukey's, closed) reaches 5%; its search stopped a hair inside, at 4.999997%,
    # and the verdict said "same" (the CI inside +-5%).
    rng = np.random.default_rng(3)
    pairs = list(zip(4096.0 * rng.integers(30, 33, 12), 4096.0 * rng.integers(30, 34, 12), strict=True))
    verdict = compare_paired("monitor_pss", "A", "B", pairs)
    assert verdict.baseline_value == 30 * 4096
    assert verdict.ci_high >= 1.5 * 4096 and verdict.ci_low <= -0.5 * 4096
    assert verdict.verdict == CANT_TELL


def test_drift_hides_a_slowdown_from_the_unpaired_test_and_pairs_find_it() -> None:
    # 100 places a side, the host slowing 4x over the run, the candidate 8% slower: the spread
    # between places (10-40 ms) swamps 8% for two independent samples; within each place
    # it does not, so the pairs tell.
    rng = np.random.default_rng(21)
    pairs = drifting_pairs(rng, 100, 1.08)
    baseline, candidate = [b for b, _ in pairs], [c for _, c in pairs]
    unpaired = compare_samples("start_latency", "A", "B", baseline, candidate)
    paired = compare_paired("start_latency", "A", "B", pairs)
    assert unpaired.method == MANN_WHITNEY and unpaired.verdict == CANT_TELL and unpaired.p_value > 0.1
    assert paired.method == WILCOXON and paired.verdict == WORSE and paired.p_value < 1e-6
    assert paired.n_baseline == paired.n_candidate == 100
    assert 5 < paired.shift_percent < 11 and paired.ci_low < paired.shift < paired.ci_high


def test_paired_identical_builds_on_a_drifting_host_are_almost_never_worse() -> None:
    # A/A on the same drifting host: at most the binomial bound of alpha/2 over 200 seeds.
    seeds = 200
    bound = stats.binom.ppf(0.999, seeds, ALPHA / 2)
    found = [
        compare_paired("start_latency", "A", "B", drifting_pairs(np.random.default_rng(500 + s), 100))
        for s in range(seeds)
    ]
    verdicts = [v.verdict for v in found]
    assert verdicts.count(WORSE) <= bound and verdicts.count(BETTER) <= bound
    # With pairs the CI is narrow enough to show "same" (inside +-5%) most of the time.
    assert verdicts.count(SAME) > seeds / 2, verdicts


def test_a_ten_percent_slowdown_of_100_pairs_on_a_drifting_host_is_worse() -> None:
    verdicts = [
        compare_paired("start_latency", "A", "B", drifting_pairs(np.random.default_rng(900 + s), 100, 1.10))
        for s in range(20)
    ]
    assert sum(v.verdict == WORSE for v in verdicts) >= 19


def test_paired_too_few_or_missing_values() -> None:
    verdict = compare_paired("start_latency", "A", "B", [(0.01, 0.02)] * 9 + [(0.01, None)])  # type: ignore[list-item]
    assert verdict.verdict == CANT_TELL and "too few pairs (9; at least 10)" in verdict.reason
    assert verdict.p_value is None and verdict.n_baseline == 9
    same = compare_paired("monitor_pss", "A", "B", [(400_000.0, 400_000.0)] * 20)
    assert same.verdict == SAME and same.p_value == 1.0 and same.shift == 0.0


def test_swapping_the_sides_mirrors_the_verdict() -> None:
    # B is 5.2% slower than A; A is then 1/1.052 of B, 4.94% faster: beyond the same 5% as a ratio.
    assert decide(1e-50, 5.20, (5.06, 5.35), 5.0, "higher")[0] == WORSE
    assert decide(1e-50, -4.94, (-5.08, -4.81), 5.0, "higher")[0] == BETTER
    assert decide(1e-50, 4.94, (4.81, 5.08), 5.0, "lower")[0] == BETTER  # a figure where lower is worse
    # "Same" is the same band both ways: -4.76% .. +5% of the baseline.
    assert decide(0.5, 0.0, (-4.7, 4.9), 5.0, "higher")[0] == SAME
    assert decide(0.5, 0.0, (-4.8, 4.9), 5.0, "higher")[0] == CANT_TELL
