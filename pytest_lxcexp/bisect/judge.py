"""Is this commit's build worse than the good build? Rounds side by side until the verdict says.

A run is one side-by-side measurement (`Measure`) of one round or more: the good build
and the candidate interleaved, every VE's record as results.json holds it, its `build` being
GOOD_NAME or CANDIDATE_NAME. After each run the verdict (report/verdict.py) is taken on
every round so far, pooled: "worse" -> the commit is bad; "same" or "better" -> good;
"can't tell" -> one more run (Pinpoint adds runs on UNKNOWN), up to max_rounds, after
which the commit is skipped, as one that does not build is. A timing verdict is taken only
while the good build's own A/A control (report/compare.py's a_a_control) holds: when it
comes out "worse" or "better", the host moved more than the test allows for, and the step
runs one more round instead of deciding on it. Rounds keep their number in
each VE's `round`, so outcomes are compared place by place within a round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..report.compare import a_a_control, build_groups, discount_failed_starts, pairs_by_place, verdict_text
from ..report.metrics import ALIASES, OUTCOMES, VE_METRICS
from ..report.verdict import BETTER, CANT_TELL, MIN_SAMPLES, SAME, WORSE, Verdict, compare_outcomes, compare_paired
from .search import BAD, GOOD, SKIPPED

GOOD_NAME, CANDIDATE_NAME = "good", "candidate"
# Per-VE figures results.json does not hold yet (docs/verdicts.md): no run can bisect on them.
NOT_RECORDED = ("monitor_pss", "cgroup_memory")
# What a bisect may be on: a per-VE figure (a verdict with a test) or a per-VE outcome.
BISECT_METRICS = (*(name for name in VE_METRICS if name not in NOT_RECORDED), *OUTCOMES, *ALIASES)

VE = dict[str, Any]
# measure(first_round) -> the VEs of one more side-by-side run (both builds), of one round or,
# with --rounds, several; each VE's `round` numbered on from first_round (1-based).
Measure = Callable[[int], list[VE]]
Say = Callable[[str], None]


class MeasureError(RuntimeError):
    """A round that produced nothing to judge (the session failed before its VEs ran)."""


def metric_name(metric: str) -> str:
    """The verdict a --metric names: start_p50 and the other percentiles name start_latency's."""
    return ALIASES.get(metric, metric)


def verdict_of(ves: list[VE], metric: str, min_effect: float) -> Verdict:
    """The candidate against the good build on one metric, over every VE given: per-VE figures
    pair by pair, place by place (the builds were interleaved), as `lxcexp compare` judges the
    same run (report/compare.py's compare_builds), so the bisect and the run's report agree."""
    name = metric_name(metric)
    groups = {group.name: group for group in build_groups({"ves": ves})}
    good, candidate = groups.get(GOOD_NAME), groups.get(CANDIDATE_NAME)
    if good is None or candidate is None:
        raise MeasureError(f"the run holds no VEs of the {'good' if good is None else 'candidate'} build")
    if name in OUTCOMES:
        bad = OUTCOMES[name]
        return compare_outcomes(
            name,
            GOOD_NAME,
            CANDIDATE_NAME,
            {place: bad(ve) for place, ve in zip(good.places, good.ves, strict=True)},
            {place: bad(ve) for place, ve in zip(candidate.places, candidate.ves, strict=True)},
            paired=True,  # the builds were interleaved: the k-th VEs of a round started side by side
        )
    figure = VE_METRICS[name]
    verdict = compare_paired(
        name,
        GOOD_NAME,
        CANDIDATE_NAME,
        pairs_by_place(figure, good, candidate),
        worse=figure.worse,
        min_effect=min_effect,
    )
    return discount_failed_starts(verdict, good, candidate)


def samples_of(ves: list[VE], metric: str, build: str) -> int:
    """How many values of a per-VE figure one build gave (a pair needs both builds' VE at a place)."""
    figure = VE_METRICS[metric_name(metric)]
    return len(figure.samples([ve for ve in ves if ve.get("build") == build]))


@dataclass(frozen=True)
class Judgement:
    outcome: str  # GOOD, BAD or SKIPPED
    verdict: Verdict  # on every round pooled
    rounds: int
    why: str


def outcome_of(verdict: Verdict) -> str | None:
    """GOOD or BAD when the verdict decides it, None for "can't tell"."""
    if verdict.verdict == WORSE:
        return BAD
    if verdict.verdict in (SAME, BETTER):
        return GOOD
    return None


def judge(measure: Measure, metric: str, min_effect: float, max_rounds: int, say: Say, label: str) -> Judgement:
    """Runs until the verdict is not "can't tell", or until max_rounds rounds have run."""
    ves: list[VE] = []
    verdict: Verdict | None = None
    rounds = 0
    why = f"{CANT_TELL} after {max_rounds} round(s) (--max-rounds)"
    while rounds < max_rounds:
        new = measure(rounds + 1)
        first, rounds = rounds + 1, rounds + max(1, len({ve.get("round") for ve in new}))
        ves += new
        verdict = verdict_of(ves, metric, min_effect)
        shown = f"round {rounds}" if first == rounds else f"rounds {first}-{rounds}"
        say(f"{label} {shown}: {metric_name(metric)} {verdict_text(verdict)}")
        if metric_name(metric) in VE_METRICS and (good := samples_of(ves, metric, GOOD_NAME)) < MIN_SAMPLES:
            raise MeasureError(
                f"the good build gave {good} {metric_name(metric)} samples: its VEs did not start, "
                "or the runs do not record it per VE"
            )
        if metric_name(metric) in VE_METRICS and (found := samples_of(ves, metric, CANDIDATE_NAME)) < MIN_SAMPLES:
            # Adding rounds does not help a build whose VEs do not start.
            name = metric_name(metric)
            why = f"its build gave {found} {name} samples in {rounds} round(s) (its VEs did not start?)"
            return Judgement(SKIPPED, verdict, rounds, why)
        outcome = outcome_of(verdict)
        if outcome is not None and (failed := _failed_control(ves, metric, min_effect)) is not None:
            more = "; one more round" if rounds < max_rounds else ""
            say(f"{label} {shown}: not decided: the good build's A/A control came out {failed}{more}")
            outcome = None
            why = f"the good build's A/A control failed after {rounds} round(s) (--max-rounds)"
        else:
            why = f"{CANT_TELL} after {rounds} round(s) (--max-rounds)"
        if outcome is not None:
            return Judgement(outcome, verdict, rounds, f"{verdict.verdict} after {rounds} round(s)")
    assert verdict is not None
    return Judgement(SKIPPED, verdict, rounds, why)


def _failed_control(ves: list[VE], metric: str, min_effect: float) -> str | None:
    """The good build's A/A control as text when it says "worse" or "better" (a timing metric
    only: outcomes are judged place by place, and the control is on start latency); else None."""
    if metric_name(metric) not in VE_METRICS:
        return None
    good = next(group for group in build_groups({"ves": ves}) if group.name == GOOD_NAME)
    control = a_a_control(good, min_effect)
    return verdict_text(control) if control.verdict in (WORSE, BETTER) else None
