"""Does the verdict's 95% CI hold the true shift 95% of the time? Seeded simulations, counted.

    .venv/bin/python benchmarks/ci_coverage.py --trials 1000
    .venv/bin/python benchmarks/ci_coverage.py --trials 200 --sizes 10 20 --effect 8

Per-VE start latencies are drawn the way a run of this host gives them: right-skewed
(lognormal), and, for two builds interleaved in one run, with a "place" effect the two
VEs of a pair share (the host's state when they started). For each number of samples a
side and each scenario (A/A: nothing changed; A/B: the candidate `--effect` percent
slower), it draws `--trials` experiments and counts how often the interval held the true
shift (the pseudo-median of the differences, paired; the median of all differences, two
runs; both computed from a million-sample draw), and what the verdict said at the default
minimum effect: a "same" in an A/B trial says "no regression" about a real one.

Side by side for each: the tool's interval (the set of shifts its rank test does not
reject: report/verdict.py) and the percentile bootstrap the tool used before (scipy's,
over pairs, of the same Hodges-Lehmann statistic on at most 10,000 pairs), with the
median width of each and the milliseconds one interval took.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.report import verdict  # noqa: E402

MEDIAN = 0.02  # a start latency of 20 ms
PLACE_SIGMA, NOISE_SIGMA = 0.3, 0.25  # log-scale spread of the shared place effect and each VE's own
TRUTH_DRAWS = 1_000_000
BOOTSTRAP_PAIRS = 10_000
INVERTED = "inverted test"  # the tool's interval


def draw(rng: np.random.Generator, n: int, factor: float, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    """Baseline and candidate latencies of n VEs a side; the candidate `factor` times slower."""
    if paired:
        place = rng.lognormal(0.0, PLACE_SIGMA, n)
        return (
            place * rng.lognormal(np.log(MEDIAN), NOISE_SIGMA, n),
            place * rng.lognormal(np.log(MEDIAN * factor), NOISE_SIGMA, n),
        )
    spread = float(np.hypot(PLACE_SIGMA, NOISE_SIGMA))  # two runs: the place effect is each VE's own
    return rng.lognormal(np.log(MEDIAN), spread, n), rng.lognormal(np.log(MEDIAN * factor), spread, n)


def true_shift(factor: float, paired: bool) -> float:
    """What the estimate estimates, from a large draw: the differences' pseudo-median (paired),
    the median of candidate - baseline over independent draws (two runs)."""
    rng = np.random.default_rng(7)
    x, y = draw(rng, TRUTH_DRAWS, factor, paired)
    if paired:
        d = y - x
        i, j = rng.integers(0, d.size, TRUTH_DRAWS), rng.integers(0, d.size, TRUTH_DRAWS)
        return float(np.median((d[i] + d[j]) / 2))
    return float(np.median(y - x[rng.permutation(x.size)]))


def bootstrap_ci(x: np.ndarray, y: np.ndarray, paired: bool, seed: int) -> tuple[float, float]:
    """The percentile bootstrap of the Hodges-Lehmann shift, as the tool computed it before."""
    rng = np.random.default_rng(seed)
    if paired:
        d = y - x
        i, j = np.triu_indices(d.size)
        if i.size > BOOTSTRAP_PAIRS:
            first, second = rng.integers(0, d.size, BOOTSTRAP_PAIRS), rng.integers(0, d.size, BOOTSTRAP_PAIRS)
            i, j = np.minimum(first, second), np.maximum(first, second)
        data: tuple[np.ndarray, ...] = (d,)

        def statistic(ds: np.ndarray, axis: int = -1) -> np.ndarray:
            return np.median((ds[..., i] + ds[..., j]) / 2, axis=-1)
    else:
        i, j = np.meshgrid(np.arange(x.size), np.arange(y.size), indexing="ij")
        i, j = i.ravel(), j.ravel()
        if i.size > BOOTSTRAP_PAIRS:
            i, j = rng.integers(0, x.size, BOOTSTRAP_PAIRS), rng.integers(0, y.size, BOOTSTRAP_PAIRS)
        data = (x, y)

        def statistic(xs: np.ndarray, ys: np.ndarray, axis: int = -1) -> np.ndarray:  # type: ignore[misc]
            return np.median(ys[..., j] - xs[..., i], axis=-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            data, statistic, n_resamples=1000, batch=50, vectorized=True, method="percentile", rng=rng
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def tool_ci(x: np.ndarray, y: np.ndarray, paired: bool) -> tuple[float, float]:
    return verdict.paired_shift_ci(y - x) if paired else verdict.shift_ci(x, y)


def judged(x: np.ndarray, y: np.ndarray, paired: bool, interval: tuple[float, float]) -> str:
    """The verdict at the default minimum effect with this interval."""
    base = float(np.median(x))
    if paired:
        p_value, shift = verdict.signed_rank_p(y - x), verdict.paired_hodges_lehmann(y - x)
        effect = verdict.DEFAULT_MIN_EFFECT
    else:
        p_value, shift = verdict.rank_sum_p(x, y), verdict.hodges_lehmann(x, y)
        effect = verdict.DEFAULT_MIN_EFFECT_ACROSS_RUNS
    ci = (100 * interval[0] / base, 100 * interval[1] / base)
    return verdict.decide(p_value, 100 * shift / base, ci, effect, "higher")[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500, help="experiments drawn per row (default 500)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50, 200, 1000], help="VEs a side")
    parser.add_argument("--effect", type=float, default=8.0, help="the A/B candidate is this %% slower (default 8)")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    if args.trials < 1 or min(args.sizes) < verdict.MIN_SAMPLES:
        parser.error(f"--trials must be >= 1 and --sizes >= {verdict.MIN_SAMPLES} (fewer are never judged)")
    factor = 1 + args.effect / 100
    print(
        f"{args.trials} seeded trials a row; latencies lognormal around {MEDIAN * 1000:g} ms; "
        f"A/B: candidate {args.effect:g}% slower; min effect {verdict.DEFAULT_MIN_EFFECT:g}% paired, "
        f"{verdict.DEFAULT_MIN_EFFECT_ACROSS_RUNS:g}% two runs"
    )
    header = (
        "| test | scenario | n a side | way | covered | median width (ms) | ms per CI | worse | same | can't tell |"
    )
    print(header)
    print("| --- " * 10 + "|")
    for paired in (True, False):
        for scenario, scenario_factor in (("A/A", 1.0), ("A/B", factor)):
            truth = true_shift(scenario_factor, paired)
            for n in args.sizes:
                rows: dict[str, dict[str, list]] = {
                    way: {"covered": [], "width": [], "seconds": [], "verdicts": []} for way in (INVERTED, "bootstrap")
                }
                rng = np.random.default_rng([args.seed, n, int(paired), int(scenario_factor * 1000)])
                for trial in range(args.trials):
                    x, y = draw(rng, n, scenario_factor, paired)
                    for way in rows:
                        began = time.perf_counter()
                        interval = tool_ci(x, y, paired) if way == INVERTED else bootstrap_ci(x, y, paired, trial)
                        rows[way]["seconds"].append(time.perf_counter() - began)
                        rows[way]["covered"].append(interval[0] <= truth <= interval[1])
                        rows[way]["width"].append(interval[1] - interval[0])
                        rows[way]["verdicts"].append(judged(x, y, paired, interval))
                test = "signed-rank (paired)" if paired else "Mann-Whitney (two runs)"
                for way, row in rows.items():
                    counts = {v: row["verdicts"].count(v) for v in (verdict.WORSE, verdict.SAME, verdict.CANT_TELL)}
                    print(
                        f"| {test} | {scenario} | {n} | {way} "
                        f"| {np.mean(row['covered']):.3f} | {1000 * np.median(row['width']):.2f} "
                        f"| {1000 * np.mean(row['seconds']):.1f} | {counts[verdict.WORSE]} | {counts[verdict.SAME]} "
                        f"| {counts[verdict.CANT_TELL]} |",
                        flush=True,
                    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
