"""`lxcexp bisect`: the first commit whose build is worse than the good one, found by building and measuring.

The steps, each printed as it goes:

1. build --good and --bad (build-lxc, cached per commit); a side that does not build is
   an error naming its option;
2. the endpoints: --bad against --good, side by side, rounds until a verdict. Unless it
   is "worse", there is nothing to bisect and the command refuses, as `git bisect` does
   when the "bad" commit is not bad: "same"/"better" says bad is not worse, "can't
   tell" after --max-rounds says the measurement cannot see a difference;
3. midpoints (search.py): each built and run side by side with the good build; "worse"
   is bad, "same"/"better" good, "can't tell" after --max-rounds and a build that fails
   are skipped (git bisect skip), and said so. A midpoint is held to half the shift the
   endpoints showed (at least the minimum effect): one that carries the regression shows
   about all of it, one that does not shows none, so half is where the two meet;
4. the answer: the first bad commit, or the commits it may be (skips, --max-steps),
   and a table of every step's verdict.

Building and measuring are injected (`Build`, `Sessions`), so the logic is tested
without LXC; runs.py has the real ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..engine.build_lxc import BuildError
from ..engine.errors import ConfigError
from ..report.compare import verdict_text
from ..report.metrics import VE_METRICS
from ..report.verdict import Verdict
from .history import Commit, History
from .judge import Judgement, Measure, Say, judge, metric_name
from .search import GOOD, SKIPPED, Search

# build(commit) -> its prefix; raises BuildError when it does not build.
Build = Callable[[Commit], str]
# sessions(good_prefix, candidate_prefix, label) -> the candidate's rounds beside the good build.
Sessions = Callable[[str, str, str], Measure]


class BisectRefused(ConfigError):
    """Nothing to bisect (the endpoints do not differ, an endpoint does not build); `option` names why.
    Found by building and measuring, so not bad input: the command exits 1, not 2."""


@dataclass(frozen=True)
class Plan:
    metric: str
    min_effect: float  # percent: the endpoints' minimum effect, and the floor for midpoints'
    max_rounds: int
    max_steps: int


@dataclass(frozen=True)
class Step:
    commit: Commit
    outcome: str  # GOOD, BAD, SKIPPED
    why: str
    verdict: Verdict | None  # None: it did not build
    rounds: int


@dataclass
class Result:
    history: History
    endpoints: Judgement
    midpoint_effect: float
    steps: list[Step] = field(default_factory=list)
    first_bad: Commit | None = None
    candidates: tuple[Commit, ...] = ()
    stopped_by: str = ""  # why the search ended before naming one commit, if it did
    builds: int = 0  # build-lxc calls that compiled (not found cached)
    rounds: int = 0  # side-by-side sessions run
    seconds: float = 0.0


def midpoint_effect(plan: Plan, endpoints: Verdict) -> float:
    """Half the endpoints' shift, at least the plan's minimum effect (sample metrics only)."""
    if metric_name(plan.metric) not in VE_METRICS or endpoints.shift_percent is None:
        return plan.min_effect
    return max(plan.min_effect, round(abs(endpoints.shift_percent) / 2, 1))


class Bisection:
    def __init__(self, history: History, plan: Plan, build: Build, sessions: Sessions, say: Say) -> None:
        self.history = history
        self.plan = plan
        self.build = build
        self.sessions = sessions
        self.say = say
        self.rounds = 0

    def _counted(self, measure: Measure) -> Measure:
        def counted(round_number: int) -> list[dict]:
            self.rounds += 1
            return measure(round_number)

        return counted

    def _judge(self, prefix: str, label: str, min_effect: float) -> Judgement:
        measure = self._counted(self.sessions(self.good_prefix, prefix, label))
        return judge(measure, self.plan.metric, min_effect, self.plan.max_rounds, self.say, label)

    def _build_endpoint(self, option: str, commit: Commit) -> str:
        self.say(f"bisect: building {option.removeprefix('--')} {commit}")
        try:
            return self.build(commit)
        except BuildError as error:
            raise BisectRefused(option, f"{commit.describe} does not build: {error}") from None

    def run(self) -> Result:
        began = time.monotonic()
        history, plan = self.history, self.plan
        commits = history.commits
        search = Search(len(commits))
        plural = "s" if len(commits) != 1 else ""
        self.say(
            f"bisect: {len(commits)} commit{plural} after good {history.good.describe} "
            f"up to bad {commits[-1].describe}; "
            f"about {search.steps_left()} midpoints to try; metric {plan.metric}"
        )
        self.good_prefix = self._build_endpoint("--good", history.good)
        bad_prefix = self._build_endpoint("--bad", commits[-1])
        endpoints = self._judge(bad_prefix, f"endpoints: bad {commits[-1].describe} vs good", plan.min_effect)
        if endpoints.outcome == GOOD:
            raise BisectRefused(
                "--bad",
                f"{commits[-1].describe} is not worse than --good {history.good.describe} on {plan.metric} "
                f"({verdict_text(endpoints.verdict)}): nothing to bisect",
            )
        if endpoints.outcome == SKIPPED:
            raise BisectRefused(
                "--bad",
                f"can't tell whether {commits[-1].describe} is worse than --good {history.good.describe} on "
                f"{plan.metric}: {endpoints.why}; {verdict_text(endpoints.verdict)}. More VEs a side (--count) or "
                "rounds (--max-rounds) may tell",
            )
        effect = midpoint_effect(plan, endpoints.verdict)
        self.say(f"bisect: bad is worse; a midpoint is bad when worse by more than {effect:.1f}% (half the shift)")
        result = Result(history, endpoints, effect)
        while (position := search.next_position()) is not None:
            if len(result.steps) >= plan.max_steps:
                result.stopped_by = f"--max-steps {plan.max_steps} reached"
                break
            commit = commits[position]
            label = f"step {len(result.steps) + 1} (about {search.steps_left()} left): {commit.describe}"
            self.say(f"bisect: {label}: building {commit}")
            try:
                prefix = self.build(commit)
            except BuildError as error:
                step = Step(commit, SKIPPED, f"does not build: {error}", None, 0)
            else:
                judged = self._judge(prefix, label, effect)
                step = Step(commit, judged.outcome, judged.why, judged.verdict, judged.rounds)
            search.record(position, step.outcome)
            result.steps.append(step)
            self.say(f"bisect: {label}: {step.outcome.upper()} ({step.why})")
        answer = search.answer()
        result.candidates = tuple(commits[p] for p in answer.candidates)
        if answer.first_bad is not None:
            result.first_bad = commits[answer.first_bad]
        elif not result.stopped_by:
            result.stopped_by = "skipped commits left it open"
        result.rounds = self.rounds
        result.seconds = time.monotonic() - began
        return result


def summary_lines(result: Result, metric: str) -> list[str]:
    """The final word: every step's verdict, then the first bad commit or the ones it may be."""
    history = result.history
    lines = [
        f"bisect summary: {metric}, good {history.good.describe}, bad {history.commits[-1].describe}, "
        f"{len(history.commits)} commits; {len(result.steps)} midpoints, {result.rounds} side-by-side runs, "
        f"{result.builds} builds compiled, {result.seconds / 60:.1f} min",
        f"  endpoints  bad vs good: {verdict_text(result.endpoints.verdict)}",
        f"  midpoints held to: worse by more than {result.midpoint_effect:.1f}%",
    ]
    for number, step in enumerate(result.steps, 1):
        shown = verdict_text(step.verdict) if step.verdict is not None else step.why
        lines.append(f"  step {number}  {step.commit.short} {step.commit.describe:<24} {step.outcome:<7} {shown}")
    if result.first_bad is not None:
        lines.append(f"first bad commit: {result.first_bad}")
    else:
        lines.append(f"not narrowed to one commit ({result.stopped_by}); the first bad commit is one of:")
        skipped = {step.commit.sha for step in result.steps if step.outcome == SKIPPED}
        lines += [f"  {c}{'  (skipped)' if c.sha in skipped else ''}" for c in result.candidates]
    return lines
