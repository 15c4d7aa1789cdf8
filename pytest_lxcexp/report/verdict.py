"""Is the candidate worse than the baseline? Per-VE samples of two groups -> a verdict with its uncertainty.

Pure numbers in, a Verdict out: no results files, no LXC (compare.py feeds this).
The method, its defaults and their sources (asv, Chromium's Pinpoint, Google
benchmark's compare.py) are written down in docs/verdicts.md:

- samples (per-VE latencies, memory) of two independent groups (two runs): two-sided
  Mann-Whitney U; the shift is the Hodges-Lehmann estimate (median of all candidate -
  baseline differences);
- paired samples (builds interleaved in one run: the k-th VE of each build started side
  by side, at the same "place"): the Wilcoxon signed-rank test on the differences
  candidate - baseline of each place; the shift is the paired Hodges-Lehmann estimate
  (median of the differences' Walsh averages);
- either way the 95% CI of the shift is the set of shifts the same test does not reject
  (the interval that belongs to the estimate: at 10 pairs the percentile bootstrap used
  before held the true shift in 92-93% of 2000 seeded trials, this one in 95-96%;
  benchmarks/ci_coverage.py, docs/verdicts.md);
- "worse" needs p <= ALPHA *and* a shift beyond the minimum effect (asv's factor) the bad
  way, "same" needs the whole CI inside +-minimum effect, anything else is "can't tell"
  (Pinpoint's UNKNOWN): more samples would decide it;
- outcomes (completed, failed to start, ...): McNemar's exact test on the places bad on
  one side only (paired) or Fisher's exact test on the counts (two runs); the places
  newly bad are named whatever the test says;
- one value per side (a run's setup time, its memory per VE): no test is possible,
  the change is held against the minimum effect alone, and the verdict says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

# numpy and scipy are imported where a verdict is computed, not with this module: every
# pytest session and `lxcexp` command loads the report plugin, and scipy.stats alone
# takes seconds to import on a busy host.

WORSE, BETTER, SAME, CANT_TELL = "worse", "better", "same", "can't tell"
# Pinpoint's threshold for DIFFERENT; asv's is stricter (0.002), compare.py's looser (0.05).
# Two-sided, so at most ALPHA / 2 of identical pairs come out "worse" by the test alone.
ALPHA = 0.01
# Below this many samples a side, nothing is decided (compare.py warns below 9 repetitions).
MIN_SAMPLES = 10
# The default minimum effect in percent of the baseline's median (docs/verdicts.md says why):
# within one run, where builds are interleaved and meet the same host, half of the 10%
# slowdown a build must be caught at (asv's 10% would catch a true 10% only half the time);
# across runs, where the whole run moves with the host (A/A runs here moved 10-22%, see
# docs/benchmarks.md) and the per-VE test cannot see that, a larger one.
DEFAULT_MIN_EFFECT = 5.0
DEFAULT_MIN_EFFECT_ACROSS_RUNS = 20.0
# The Hodges-Lehmann shift uses every pair up to this many; beyond, a fixed random set of this
# many (an incomplete U-statistic: its extra variance is negligible against the estimate's own).
EXACT_PAIRS = 4_000_000
# Each end of a CI is found to this share of the samples' widest shift (a millionth: far
# below the 0.01% the report shows), in at most this many bisection steps.
INTERVAL_PRECISION = 1e-6
INTERVAL_STEPS = 60
# scipy's wilcoxon tests up to this many differences with ties or zeros by permutation.
PERMUTATION_DIFFERENCES = 13
SEED = 20261130  # fixed, so the same samples give the same CI every time
MANN_WHITNEY = "Mann-Whitney U"
WILCOXON = "Wilcoxon signed-rank (paired)"
FISHER = "Fisher exact"
MCNEMAR = "McNemar exact (paired)"
OUTCOME_METHODS = (FISHER, MCNEMAR)


@dataclass(frozen=True)
class Verdict:
    """One metric, baseline group against candidate group. Values in stored units (seconds, bytes, VEs)."""

    metric: str
    baseline: str  # group names: a build, a run
    candidate: str
    method: str  # MANN_WHITNEY, WILCOXON, FISHER, MCNEMAR, "one value each"
    verdict: str  # WORSE, BETTER, SAME, CANT_TELL
    reason: str  # why, in a few words
    n_baseline: int  # samples; for paired samples, the pairs (both sides)
    n_candidate: int
    baseline_value: float | None  # median of the samples, or the count / the one value
    candidate_value: float | None
    shift: float | None  # candidate - baseline (Hodges-Lehmann for samples)
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    min_effect: float  # percent of the baseline value
    worse_direction: str  # "higher" or "lower"
    new_failures: tuple[str, ...] = ()  # outcomes: places bad on the candidate only

    @property
    def shift_percent(self) -> float | None:
        return _percent(self.shift, self.baseline_value)

    @property
    def ci_percent(self) -> tuple[float, float] | None:
        low, high = _percent(self.ci_low, self.baseline_value), _percent(self.ci_high, self.baseline_value)
        return None if low is None or high is None else (low, high)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["new_failures"] = list(self.new_failures)
        data["shift_percent"] = _finite(self.shift_percent)
        data["p_value"] = _finite(self.p_value)
        return data


def _finite(value: float | None) -> float | None:
    """JSON has no infinities: an infinite relative change (from zero) is stored as null."""
    return None if value is None or not math.isfinite(value) else value


def _percent(value: float | None, base: float | None) -> float | None:
    if value is None or base is None:
        return None
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return value / abs(base) * 100.0


def _bad(value: float, worse: str) -> float:
    """Turn a change so that positive is the bad direction."""
    return value if worse == "higher" else -value


def _pair_indexes(n: int, m: int, rng: np.random.Generator, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) pair when there are at most `limit`, else `limit` random ones."""
    import numpy as np

    if n * m <= limit:
        i, j = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
        return i.ravel(), j.ravel()
    return rng.integers(0, n, limit), rng.integers(0, m, limit)


def hodges_lehmann(baseline: Sequence[float], candidate: Sequence[float], seed: int = SEED) -> float:
    """The shift from baseline to candidate: the median of all pairwise differences candidate - baseline."""
    import numpy as np

    x, y = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("hodges_lehmann needs samples on both sides")
    i, j = _pair_indexes(x.size, y.size, np.random.default_rng(seed), EXACT_PAIRS)
    return float(np.median(y[j] - x[i]))


def _inverted_interval(
    p_above_at: Callable[[float], float],
    p_below_at: Callable[[float], float],
    estimate: float,
    widest: tuple[float, float],
    confidence: float,
) -> tuple[float, float]:
    """The shifts d the rank test does not reject at 1 - confidence when d is taken off the
    candidate: the confidence interval that belongs to the test and its Hodges-Lehmann
    estimate (Lehmann's and Moses' interval, the one R's wilcox.test(conf.int = TRUE) gives).
    The two-sided test rejects where either one-sided test does at half the level; each
    one-sided p-value moves one way with d (`p_above_at`, "the shift is above d", rejects
    the d that are too low), so each end is found by bisection across the widest shifts the
    samples allow, not from the estimate: with many zero differences the signed-rank test
    drops them and can reject at the estimate itself while keeping every shift next to it
    (the interval once collapsed onto the estimate there). Widened to hold the estimate, if
    ties ever make the two ends cross."""
    tail = (1.0 - confidence) / 2
    span = widest[1] - widest[0]
    if span <= 0:  # no spread at all
        return estimate, estimate
    # Just past the widest shift: at it exactly a difference is zero (or two values tie), and
    # scipy answers a small sample with zeros or ties by a permutation test, 100x slower.
    outer_low, outer_high = widest[0] - span / 100, widest[1] + span / 100

    def end(p_at: Callable[[float], float], rejected: float, kept: float) -> float:
        """The end between the last shift rejected and the first kept: the rejected one, so the
        interval holds its closure (Tukey's and Moses' are closed: with values in whole pages
        the end is often a shift the test just rejects, 5% exactly, and the kept side of it,
        4.999997%, once made a "same")."""
        if p_at(rejected) > tail:  # too few samples to reject even there: the interval is that wide
            return rejected
        for _ in range(INTERVAL_STEPS):
            middle = (rejected + kept) / 2
            if middle in (rejected, kept) or abs(rejected - kept) <= span * INTERVAL_PRECISION:
                break
            if p_at(middle) > tail:
                kept = middle
            else:
                rejected = middle
        return rejected

    low, high = end(p_above_at, outer_low, outer_high), end(p_below_at, outer_high, outer_low)
    return min(low, high, estimate), max(low, high, estimate)


def rank_sum_p(baseline: Sequence[float], candidate: Sequence[float], alternative: str = "two-sided") -> float:
    """Mann-Whitney U p-value (two-sided, or "greater": the candidate above the baseline, or
    "less"); 1.0 when every value is the same on both sides."""
    from scipy import stats

    p_value = float(stats.mannwhitneyu(candidate, baseline, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def shift_ci(
    baseline: Sequence[float], candidate: Sequence[float], confidence: float = 0.95, estimate: float | None = None
) -> tuple[float, float]:
    """Confidence interval of the Hodges-Lehmann shift (`estimate`, when already computed): the
    shifts Mann-Whitney U does not reject."""
    import numpy as np

    x, y = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    return _inverted_interval(
        lambda d: rank_sum_p(x, y - d, "greater"),
        lambda d: rank_sum_p(x, y - d, "less"),
        hodges_lehmann(x, y) if estimate is None else estimate,
        (float(y.min() - x.max()), float(y.max() - x.min())),
        confidence,
    )


def decide(
    p_value: float,
    shift_pct: float | None,
    ci_pct: tuple[float, float] | None,
    min_effect: float,
    worse: str,
    alpha: float = ALPHA,
) -> tuple[str, str]:
    """(verdict, reason) from a test's p-value, the relative shift and its CI (percent of the baseline).

    The minimum effect is a ratio: `min_effect`% worse is candidate/baseline beyond 1 + m, better
    below 1 / (1 + m), so swapping the sides mirrors the verdict (+5.2% worse one way is -4.94%,
    better, the other)."""
    if shift_pct is None or ci_pct is None:
        return CANT_TELL, "no baseline value to scale the shift by"
    bad_shift = _bad(shift_pct, worse)
    good_effect = 100.0 * min_effect / (100.0 + min_effect)  # the same ratio, the other way
    significant = p_value <= alpha
    if significant and bad_shift > min_effect:
        return WORSE, f"p <= {alpha:g} and the shift is beyond the {min_effect:g}% minimum effect"
    if significant and bad_shift < -good_effect:
        return BETTER, f"p <= {alpha:g} and the shift is beyond the {min_effect:g}% minimum effect (as a ratio)"
    bad_low, bad_high = sorted((_bad(ci_pct[0], worse), _bad(ci_pct[1], worse)))
    if -good_effect < bad_low and bad_high < min_effect:
        return SAME, f"the 95% CI lies inside +-{min_effect:g}% (as a ratio)"
    if significant:
        return CANT_TELL, f"a difference (p <= {alpha:g}), but the CI reaches past +-{min_effect:g}%"
    return CANT_TELL, f"p > {alpha:g} and the CI reaches past +-{min_effect:g}%"


def _finite_values(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _samples_verdict(
    common: dict[str, Any],
    tested: tuple[float, float, float, float] | None,
    min_effect: float,
    worse: str,
    alpha: float,
    too_few: str,
) -> Verdict:
    """A Verdict from a test's (p-value, shift, CI low, CI high), or "can't tell" (`too_few`) without one."""
    if tested is None:
        return Verdict(**common, verdict=CANT_TELL, reason=too_few, shift=None, ci_low=None, ci_high=None, p_value=None)
    p_value, shift, low, high = tested
    base = common["baseline_value"]
    pct = _percent(shift, base)
    ci_pct = _percent(low, base), _percent(high, base)
    verdict, reason = decide(
        p_value,
        pct,
        None if None in ci_pct else ci_pct,  # type: ignore[arg-type]
        min_effect,
        worse,
        alpha,
    )
    return Verdict(**common, verdict=verdict, reason=reason, shift=shift, ci_low=low, ci_high=high, p_value=p_value)


def _sample_fields(
    metric: str,
    baseline_name: str,
    candidate_name: str,
    method: str,
    x: Sequence[float],
    y: Sequence[float],
    min_effect: float,
    worse: str,
) -> dict[str, Any]:
    """What every samples verdict says of its two sides, whatever the test."""
    import numpy as np

    return {
        "metric": metric,
        "baseline": baseline_name,
        "candidate": candidate_name,
        "method": method,
        "n_baseline": len(x),
        "n_candidate": len(y),
        "baseline_value": float(np.median(x)) if x else None,
        "candidate_value": float(np.median(y)) if y else None,
        "min_effect": min_effect,
        "worse_direction": worse,
    }


def compare_samples(
    metric: str,
    baseline_name: str,
    candidate_name: str,
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    worse: str = "higher",
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = ALPHA,
    min_samples: int = MIN_SAMPLES,
) -> Verdict:
    """Per-VE samples of one metric on both sides, independent of each other (two runs) -> a
    Verdict (Mann-Whitney U, Hodges-Lehmann shift and the CI that inverts the test)."""
    x, y = _finite_values(baseline), _finite_values(candidate)
    common = _sample_fields(metric, baseline_name, candidate_name, MANN_WHITNEY, x, y, min_effect, worse)
    tested = None
    if len(x) >= min_samples and len(y) >= min_samples:
        shift = hodges_lehmann(x, y)
        tested = (rank_sum_p(x, y), shift, *shift_ci(x, y, estimate=shift))
    too_few = f"too few samples ({len(x)} and {len(y)}; at least {min_samples} a side)"
    return _samples_verdict(common, tested, min_effect, worse, alpha, too_few)


def _walsh_indexes(n: int, rng: np.random.Generator, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i <= j) of the Walsh averages of n differences: all n(n+1)/2 of them when
    there are at most `limit`, else `limit` random ones (an incomplete U-statistic, as above)."""
    import numpy as np

    if n * (n + 1) // 2 <= limit:
        return np.triu_indices(n)
    first, second = rng.integers(0, n, limit), rng.integers(0, n, limit)
    return np.minimum(first, second), np.maximum(first, second)


def paired_hodges_lehmann(differences: Sequence[float], seed: int = SEED) -> float:
    """The shift of paired samples: the median of the Walsh averages (d_i + d_j) / 2, i <= j,
    of the differences candidate - baseline; the estimate that belongs to the signed-rank test."""
    import numpy as np

    d = np.asarray(differences, dtype=float)
    if d.size == 0:
        raise ValueError("paired_hodges_lehmann needs at least one difference")
    i, j = _walsh_indexes(d.size, np.random.default_rng(seed), EXACT_PAIRS)
    return float(np.median((d[i] + d[j]) / 2))


def paired_shift_ci(
    differences: Sequence[float], confidence: float = 0.95, estimate: float | None = None
) -> tuple[float, float]:
    """Confidence interval of the paired Hodges-Lehmann shift (`estimate`, when already
    computed): the shifts the signed-rank test does not reject (an interval between two Walsh
    averages, Tukey's)."""
    import numpy as np

    d = np.asarray(differences, dtype=float)
    # Up to 13 differences with a zero or a tie, scipy's "auto" is a permutation test (0.3-0.6 s
    # a call here, ~40 calls an interval): its exact distribution instead, the same without ties.
    method = "exact" if d.size <= PERMUTATION_DIFFERENCES else "auto"
    return _inverted_interval(
        lambda shift: signed_rank_p(d - shift, "greater", method),
        lambda shift: signed_rank_p(d - shift, "less", method),
        paired_hodges_lehmann(d) if estimate is None else estimate,
        (float(d.min()), float(d.max())),
        confidence,
    )


def signed_rank_p(differences: Sequence[float], alternative: str = "two-sided", method: str = "auto") -> float:
    """Wilcoxon signed-rank p-value of the differences (two-sided, or "greater": centred above
    zero, or "less"; zeros dropped, as Wilcoxon did); 1.0 when every difference is zero:
    nothing to tell apart. `method` as scipy's ("exact": its exact null distribution, a tied
    statistic rounded the conservative way)."""
    from scipy import stats

    if not any(differences):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few non-zero differences: the normal approximation is said to be rough
        result = stats.wilcoxon(differences, zero_method="wilcox", alternative=alternative, method=method)
        p_value = float(result.pvalue)
    return 1.0 if math.isnan(p_value) else p_value


def compare_paired(
    metric: str,
    baseline_name: str,
    candidate_name: str,
    pairs: Sequence[tuple[float, float]],
    *,
    worse: str = "higher",
    min_effect: float = DEFAULT_MIN_EFFECT,
    alpha: float = ALPHA,
    min_samples: int = MIN_SAMPLES,
) -> Verdict:
    """Paired per-VE samples (baseline, candidate) of one metric, one pair per place (the k-th VE
    of each build, started side by side) -> a Verdict (Wilcoxon signed-rank, paired
    Hodges-Lehmann shift and the CI that inverts the test). A pair with a value missing is left out."""

    kept = [
        (float(b), float(c))
        for b, c in pairs
        if b is not None and c is not None and math.isfinite(b) and math.isfinite(c)
    ]
    x = [b for b, _ in kept]
    y = [c for _, c in kept]
    common = _sample_fields(metric, baseline_name, candidate_name, WILCOXON, x, y, min_effect, worse)
    tested = None
    if len(kept) >= min_samples:
        differences = [c - b for b, c in kept]
        shift = paired_hodges_lehmann(differences)
        tested = (signed_rank_p(differences), shift, *paired_shift_ci(differences, estimate=shift))
    too_few = f"too few pairs ({len(kept)}; at least {min_samples})"
    return _samples_verdict(common, tested, min_effect, worse, alpha, too_few)


def _places(keys: Iterable[Any]) -> tuple[str, ...]:
    """Places as text, in their own order ((0, 2) before (0, 10))."""
    keys = list(keys)
    try:
        keys.sort()
    except TypeError:  # places of mixed kinds: their text's order
        keys.sort(key=str)
    return tuple(str(key) for key in keys)


def compare_outcomes(
    metric: str,
    baseline_name: str,
    candidate_name: str,
    baseline: Mapping[Any, bool],
    candidate: Mapping[Any, bool],
    *,
    paired: bool = False,
    alpha: float = ALPHA,
) -> Verdict:
    """Per-place bad outcomes (True = the VE there failed in this way) -> a Verdict.

    `paired`: the places' VEs started side by side (builds interleaved in one run): McNemar's
    exact test on the places bad on one side only (a binomial test of the candidate-only ones
    among them). Else (two runs) Fisher's exact test on the two sides' counts. Worse or better
    at p <= alpha; "same" when the sides do not differ at all (no place bad on one side only;
    across runs, the same share bad); else "can't tell". A place fine on the baseline and bad
    on the candidate is named in the reason, whatever the test says: a host where 0.5% of
    starts fail now and then made an identical build "worse" in 42% of comparisons when any
    such place was "worse" by rule (docs/verdicts.md).
    """
    from scipy import stats

    bad_base, bad_cand = sum(baseline.values()), sum(candidate.values())
    n_base, n_cand = len(baseline), len(candidate)
    new = _places(key for key in candidate if candidate[key] and key in baseline and not baseline[key])
    fixed = _places(key for key in baseline if baseline[key] and key in candidate and not candidate[key])
    rate_base = bad_base / n_base if n_base else 0.0
    rate_cand = bad_cand / n_cand if n_cand else 0.0
    if paired:
        method, discordant = MCNEMAR, len(new) + len(fixed)
        p_value = float(stats.binomtest(len(new), discordant, 0.5).pvalue) if discordant else 1.0
        more, fewer, alike = len(new) > len(fixed), len(new) < len(fixed), discordant == 0
    else:
        method = FISHER
        table = [[bad_cand, n_cand - bad_cand], [bad_base, n_base - bad_base]]
        p_value = float(stats.fisher_exact(table).pvalue) if n_base and n_cand else 1.0
        more, fewer, alike = rate_cand > rate_base, rate_cand < rate_base, rate_cand == rate_base
    test = "McNemar" if paired else "Fisher"
    if not n_base or not n_cand:
        verdict, reason = CANT_TELL, "no VEs on one side"
    elif p_value <= alpha and more:
        verdict, reason = WORSE, f"more VEs bad, {test} p <= {alpha:g}"
    elif p_value <= alpha and fewer:
        verdict, reason = BETTER, f"fewer VEs bad, {test} p <= {alpha:g}"
    elif alike:
        verdict, reason = SAME, "no place bad on one side only" if paired else "the same share of VEs bad"
    else:
        verdict, reason = CANT_TELL, f"a difference {test}'s test cannot tell from chance (p > {alpha:g})"
    if new:
        shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
        reason += f"; {len(new)} place(s) fine on the baseline are not on the candidate: {shown}"
    return Verdict(
        metric=metric,
        baseline=baseline_name,
        candidate=candidate_name,
        method=method,
        verdict=verdict,
        reason=reason,
        n_baseline=n_base,
        n_candidate=n_cand,
        baseline_value=float(bad_base),
        candidate_value=float(bad_cand),
        shift=float(bad_cand - bad_base),
        ci_low=None,
        ci_high=None,
        p_value=p_value,
        min_effect=0.0,
        worse_direction="higher",
        new_failures=new,
    )


def compare_values(
    metric: str,
    baseline_name: str,
    candidate_name: str,
    baseline: float | None,
    candidate: float | None,
    *,
    worse: str = "higher",
    min_effect: float = DEFAULT_MIN_EFFECT,
    judged: bool = True,
) -> Verdict:
    """One value per side (a run's takedown time): no test is possible. Judged (a fail rule asked
    for a threshold): the change against the minimum effect alone; else "can't tell", with the change."""
    common = {
        "metric": metric,
        "baseline": baseline_name,
        "candidate": candidate_name,
        "method": "one value each",
        "n_baseline": int(baseline is not None),
        "n_candidate": int(candidate is not None),
        "baseline_value": baseline,
        "candidate_value": candidate,
        "ci_low": None,
        "ci_high": None,
        "p_value": None,
        "min_effect": min_effect,
        "worse_direction": worse,
    }
    if baseline is None or candidate is None:
        return Verdict(**common, verdict=CANT_TELL, reason="missing in one of the runs", shift=None)
    shift = candidate - baseline
    bad = _bad(_percent(shift, baseline) or 0.0, worse)
    if not judged:
        return Verdict(
            **common, verdict=CANT_TELL, reason="one value each: no test (a rule on it sets a threshold)", shift=shift
        )
    if bad > min_effect:
        verdict = WORSE
    elif bad < -min_effect:
        verdict = BETTER
    else:
        verdict = SAME
    return Verdict(
        **common, verdict=verdict, reason=f"one value each, no test: the change against {min_effect:g}%", shift=shift
    )
