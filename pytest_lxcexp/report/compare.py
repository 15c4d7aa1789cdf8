"""Hold a candidate against a baseline: verdicts per metric, for two runs or for the builds of one run.

The groups: a run without builds is one group; a run whose VEs carry `build` (--ve-lxc)
has one group per build, the first build being the baseline. Builds of one run are
compared pair by pair: the k-th VE of each build started side by side, at the same
"place", and met the same host (paired test). Across runs every per-VE sample of both
runs is used as two independent samples (per build when both runs have the same builds). The
statistics are report/verdict.py's; which run may be a reference is comparable.py's.

--ve-compare-fail METRIC[:N%] fails the session when METRIC's verdict is "worse"; N is
the minimum effect (verdict.DEFAULT_MIN_EFFECT without it).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .archive import RESULTS_FILE, latest_run
from .comparable import RunKey, key_of, latest_comparable, mismatches
from .metrics import ALIASES, METRICS, OUTCOMES, RUN_VALUES, VE_METRICS, VEMetric
from .results import Results, ResultsError, load_results
from .verdict import (
    BETTER,
    CANT_TELL,
    DEFAULT_MIN_EFFECT,
    DEFAULT_MIN_EFFECT_ACROSS_RUNS,
    OUTCOME_METHODS,
    SAME,
    WORSE,
    Verdict,
    compare_outcomes,
    compare_paired,
    compare_samples,
    compare_values,
)

# Options that name things (paths, interfaces) or housekeeping: they differ between runs
# without changing what is measured, so they do not make two runs incomparable.
# ve_first/ve_last: which of the run's VEs one host ran (a run over several hosts).
NAMING_OPTIONS = frozenset(
    {"root", "bridge", "subnet", "base_cache", "base_refresh", "keep", "timeout", "ve_first", "ve_last"}
)
RULE_METRICS = (*VE_METRICS, *OUTCOMES, *RUN_VALUES, *ALIASES)


class CompareError(ValueError):
    """A bad --ve-compare / --ve-compare-fail value; the message says why."""


@dataclass(frozen=True)
class FailRule:
    metric: str  # as the user named it (start_p90, start_latency, completed, ...)
    percent: float | None  # the minimum effect; None: the default

    @property
    def verdict_metric(self) -> str:
        return ALIASES.get(self.metric, self.metric)

    def __str__(self) -> str:
        return self.metric if self.percent is None else f"{self.metric}:{self.percent:g}%"


_RULE = re.compile(r"^\s*([a-z0-9_]+)\s*(?::\s*([0-9]+(?:\.[0-9]+)?)\s*%)?\s*$")


def parse_fail_rule(text: str) -> FailRule:
    """'start_p90:10%' -> FailRule('start_p90', 10.0); 'completed' -> FailRule('completed', None)."""
    match = _RULE.match(text)
    if not match:
        raise CompareError(f"{text!r} is not METRIC or METRIC:N% (for instance start_latency:5% or completed)")
    name, number = match.groups()
    if name not in RULE_METRICS:
        raise CompareError(f"{text!r}: unknown metric {name!r}; known: {', '.join(RULE_METRICS)}")
    return FailRule(name, None if number is None else float(number))


def parse_fail_rules(texts: list[str]) -> list[FailRule]:
    rules = []
    for text in texts:
        # "a:1%,b" is accepted as well as repeating the option.
        rules += [parse_fail_rule(part) for part in text.split(",") if part.strip()]
    return rules


def min_effects(rules: Iterable[FailRule]) -> dict[str, float]:
    """Each ruled metric's minimum effect: the smallest N% a rule on it gives. A one-value metric
    (takedown_s) is judged only when a rule names it, at the across-runs default without N%."""
    found: dict[str, float] = {}
    for rule in rules:
        name = rule.verdict_metric
        percent = rule.percent
        if percent is None and name in RUN_VALUES:
            percent = DEFAULT_MIN_EFFECT_ACROSS_RUNS
        if percent is not None:
            found[name] = min(found.get(name, math.inf), percent)
    return found


def resolve_ref(ref: str, report_dir: str | None) -> str:
    """REF (a results.json, a run folder, or a run name in the report dir) -> a results.json path."""
    candidates = [ref]
    if report_dir and not os.path.isabs(ref):
        candidates.append(os.path.join(report_dir, ref))
    for candidate in candidates:
        if os.path.isdir(candidate):
            path = os.path.join(candidate, RESULTS_FILE)
            if not os.path.isfile(path):
                raise CompareError(f"{candidate} is a folder without a {RESULTS_FILE}")
            return path
        if os.path.isfile(candidate):
            return candidate
    raise CompareError(f"{ref}: no such results file or run folder")


def load_ref(
    ref: str,
    report_dir: str | None,
    current: RunKey | None = None,
    *,
    force: bool = False,
    exclude: str | None = None,
) -> tuple[str, Results, list[str]]:
    """The reference run: (path, results, warnings). 'latest' is the newest comparable successful
    run in report_dir. A reference that `current` cannot be compared with is an error unless
    `force`, which turns the reasons into warnings."""
    if ref == "latest":
        if not report_dir:
            raise CompareError("'latest' needs --ve-report-dir (the archive to take the latest run from)")
        if current is None or force:
            run = latest_run(report_dir, exclude=exclude)
            if run is None:
                raise CompareError(f"'latest': {report_dir} holds no saved run yet")
            path = os.path.join(run, RESULTS_FILE)
        else:
            try:
                return (*latest_comparable(report_dir, current, exclude), [])
            except LookupError as error:
                raise CompareError(f"'latest': {error}; --ve-compare-force compares anyway") from None
    else:
        path = resolve_ref(ref, report_dir)
    try:
        results = load_results(path)
    except ResultsError as error:
        raise CompareError(str(error)) from None
    reasons = mismatches(key_of(results), current) if current is not None else []
    if reasons and not force:
        raise CompareError(f"{path} is not comparable with this run: {'; '.join(reasons)} (--ve-compare-force)")
    return path, results, [f"compared although not comparable: {reason}" for reason in reasons]


# -- groups ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """VEs compared as one side: a build of a run, or a whole run."""

    name: str
    ves: list[dict[str, Any]]
    places: list[tuple[Any, ...]]  # each VE's place, shared with the other side: (round, position)


def builds_of(results: Results) -> list[str]:
    """The run's builds in the order they first appear (the first is the baseline); [] without builds."""
    return list(dict.fromkeys(ve["build"] for ve in results.get("ves", []) if ve.get("build") is not None))


def _group(name: str, ves: list[dict[str, Any]], by_position: bool) -> Group:
    """by_position: the k-th VE of this build in its round (builds of one run are interleaved,
    so the k-th VEs of two builds started next to each other); else the VE's own index (two runs)."""
    ves = sorted(ves, key=lambda ve: (ve.get("round") or 0, ve["index"]))
    counters: dict[Any, int] = {}
    places = []
    for ve in ves:
        round_ = ve.get("round") or 0
        counters[round_] = counters.get(round_, 0) + 1
        places.append((round_, counters[round_] if by_position else ve["index"]))
    return Group(name, ves, places)


def build_groups(results: Results) -> list[Group]:
    """One group per build (the first is the baseline); one group of all VEs without builds."""
    builds = builds_of(results)
    if not builds:
        return [_group("all VEs", list(results.get("ves", [])), by_position=False)]
    return [_group(build, [ve for ve in results["ves"] if ve.get("build") == build], True) for build in builds]


# -- verdicts ----------------------------------------------------------------------------


def pairs_by_place(metric: VEMetric, baseline: Group, candidate: Group) -> list[tuple[float, float]]:
    """(baseline, candidate) values of the VEs at the same place, in place order; a place where
    either VE has no value (it failed to start) drops out (its outcome verdicts count it)."""
    before = {place: metric.value(ve) for place, ve in zip(baseline.places, baseline.ves, strict=True)}
    now = {place: metric.value(ve) for place, ve in zip(candidate.places, candidate.ves, strict=True)}
    return [
        (value, now[place])  # type: ignore[misc]
        for place, value in sorted(before.items())
        if value is not None and now.get(place) is not None
    ]


def discount_failed_starts(verdict: Verdict, baseline: Group, candidate: Group) -> Verdict:
    """A start's timings exist only for VEs that started, and a start that failed (timed out,
    refused) may have been one of the slowest. Where one side lost a larger share of its VEs
    so, a timing verdict that the loss could explain is "can't tell": the side that lost more
    found better or unchanged. (A 15% slower build whose slowest starts time out looked 12%
    faster.) Memory figures are not timings and are left as they are."""
    if VE_METRICS[verdict.metric].unit != "ms" or not baseline.ves or not candidate.ves:
        return verdict
    failed = OUTCOMES["failed_to_start"]
    lost = [sum(map(failed, side.ves)) for side in (baseline, candidate)]
    before, now = (count / len(side.ves) for count, side in zip(lost, (baseline, candidate), strict=True))
    if now > before and verdict.verdict in (BETTER, SAME):
        side, count = verdict.candidate, lost[1]
    elif before > now and verdict.verdict in (WORSE, SAME):
        side, count = verdict.baseline, lost[0]
    else:
        return verdict
    reason = (
        f"{side} lost more of its VEs to failed starts ({lost[0]} of {len(baseline.ves)} against "
        f"{lost[1]} of {len(candidate.ves)}); its slowest starts may be among the {count} that failed "
        f"(the test said {verdict.verdict})"
    )
    return dataclasses.replace(verdict, verdict=CANT_TELL, reason=reason)


def group_verdicts(
    baseline: Group,
    candidate: Group,
    effects: dict[str, float] | None = None,
    names: tuple[str, str] | None = None,
    default_effect: float = DEFAULT_MIN_EFFECT,
    paired: bool = False,
) -> list[Verdict]:
    """Every per-VE metric either side has samples of, and every outcome; `names` label the sides.
    `paired`: the sides' VEs at the same place met the same host (builds interleaved in one run):
    each metric is compared pair by pair (verdict.compare_paired), else as two samples."""
    effects = effects or {}
    names = names or (baseline.name, candidate.name)
    verdicts = []
    for metric in VE_METRICS.values():
        before, now = metric.samples(baseline.ves), metric.samples(candidate.ves)
        if not before and not now:
            continue  # not measured in these runs (a phase of --ve-lxc builds' runs)
        effect = effects.get(metric.name, default_effect)
        if paired:
            pairs = pairs_by_place(metric, baseline, candidate)
            verdict = compare_paired(metric.name, *names, pairs, worse=metric.worse, min_effect=effect)
        else:
            verdict = compare_samples(metric.name, *names, before, now, worse=metric.worse, min_effect=effect)
        verdicts.append(discount_failed_starts(verdict, baseline, candidate))
    for name, bad in OUTCOMES.items():
        verdicts.append(
            compare_outcomes(
                name,
                *names,
                {place: bad(ve) for place, ve in zip(baseline.places, baseline.ves, strict=True)},
                {place: bad(ve) for place, ve in zip(candidate.places, candidate.ves, strict=True)},
                paired=paired,
            )
        )
    return verdicts


def run_value_verdicts(
    before: Results, now: Results, names: tuple[str, str], effects: dict[str, float]
) -> list[Verdict]:
    """The one-value figures either run has (a ramp's reach only where a ramp ran)."""
    verdicts = []
    for name in RUN_VALUES:
        metric = METRICS[name]
        old, new = metric.read(before), metric.read(now)
        if old is None and new is None:
            continue
        verdicts.append(
            compare_values(
                name,
                *names,
                old,
                new,
                worse=metric.worse,
                min_effect=effects.get(name, DEFAULT_MIN_EFFECT_ACROSS_RUNS),
                judged=name in effects,
            )
        )
    return verdicts


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline: across runs (kind 'runs') or two builds of one run (kind 'builds')."""

    kind: str
    before_label: str
    now_label: str
    verdicts: list[Verdict]
    warnings: list[str]
    control: Verdict | None = None  # builds: the run's A/A control (a_a_control), not a verdict on the builds

    def verdict(self, metric: str) -> Verdict | None:
        return next((v for v in self.verdicts if v.metric == metric), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "baseline": self.before_label,
            "candidate": self.now_label,
            "warnings": list(self.warnings),
            "verdicts": [verdict.to_dict() for verdict in self.verdicts],
            "control": None if self.control is None else self.control.to_dict(),
        }


def _meta(results: Results, *keys: str) -> Any:
    value: Any = results.get("metadata", {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def differences(before: Results, now: Results) -> list[str]:
    """Options that differ without making the runs incomparable (pings, intervals, ...), and
    another machine (host name, CPU model, memory): worth a warning."""
    old, new = _meta(before, "options") or {}, _meta(now, "options") or {}
    options = [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in NAMING_OPTIONS and old.get(key) != new.get(key)
    ]
    found = ["the runs used different options: " + ", ".join(options)] if options else []
    # The fingerprint holds what VEs meet (kernel, cgroups, CPUs); another machine of that
    # kind is comparable, but a reader should know it is another machine.
    machine = [
        f"{label} {old_value!r} -> {new_value!r}"
        for label, old_value, new_value in (
            ("host", _meta(before, "hostname"), _meta(now, "hostname")),
            ("CPU", _meta(before, "cpu", "model"), _meta(now, "cpu", "model")),
            ("memory", _meta(before, "memory_total"), _meta(now, "memory_total")),
        )
        if old_value is not None and new_value is not None and old_value != new_value
    ]
    return found + (["the runs ran on different machines: " + ", ".join(machine)] if machine else [])


def run_label(results: Results) -> str:
    """The run, the LXC that started its VEs, its kernel and host. With --ve-lxc builds that is
    each build (name, version, the start of its liblxc's sha256), not the liblxc the tool loaded."""
    kernel = _meta(results, "kernel", "release") or "?"
    return f"{results.get('run_id', '?')} ({started_by(results)}, kernel {kernel}, host {_meta(results, 'hostname')})"


def started_by(results: Results) -> str:
    """The LXC that started a run's VEs: its --ve-lxc builds (name, version, the start of the
    liblxc's sha256), else the liblxc the tool loaded."""
    builds = _meta(results, "builds") or []
    if not builds:
        return f"liblxc {_meta(results, 'lxc', 'version') or '?'}"
    return "LXC " + "; ".join(
        f"{build.get('name')} {build.get('version') or '?'} {str(build.get('sha256') or '')[:12]}".rstrip()
        for build in builds
    )


def compare_runs(
    before: Results, now: Results, effects: dict[str, float] | None = None, warnings: list[str] | None = None
) -> list[Comparison]:
    """Every sample of `now` against every sample of `before`: per build (by name) when either run
    ran several builds, else the whole runs; the first comparison also holds the one-value figures
    (setup, memory per VE, ...). `warnings`: why the runs were compared although incomparable."""
    effects = effects or {}
    warnings = [*(warnings or []), *differences(before, now)]
    builds, old_builds = builds_of(now), builds_of(before)
    # Per build, matched by name, when either run had several: pooling a run's builds into one
    # side would hold a build against a mixture of others (and its verdict would follow the
    # order --ve-lxc listed them in). A run of one build each (every VE is `system` without
    # --ve-lxc, or one --ve-lxc per run) is the whole run.
    shared = [build for build in builds if build in old_builds]
    several = len(builds) > 1 or len(old_builds) > 1
    if several and shared:
        alone = [f"{build} (before only)" for build in old_builds if build not in builds]
        alone += [f"{build} (now only)" for build in builds if build not in old_builds]
        if alone:
            warnings.append(f"builds in one run only, not compared: {', '.join(alone)}")
        old_groups = {group.name: group for group in build_groups(before)}
        new_groups = {group.name: group for group in build_groups(now)}
        pairs = [(old_groups[build], new_groups[build]) for build in shared]
        suffixes = [f" build {build}" for build in shared]
    else:
        if several:
            warnings.append(
                f"the runs share no build ({', '.join(old_builds)} against {', '.join(builds)}): "
                "each side pools its builds, so the verdicts hold a mixture against a mixture"
            )
        pairs = [(_group("before", before.get("ves", []), False), _group("now", now.get("ves", []), False))]
        suffixes = [""]
    comparisons = []
    for (old, new), suffix in zip(pairs, suffixes, strict=True):
        names = ("before" + suffix, "now" + suffix)
        verdicts = group_verdicts(old, new, effects, names, DEFAULT_MIN_EFFECT_ACROSS_RUNS)
        if not comparisons:
            verdicts += run_value_verdicts(before, now, ("before", "now"), effects)
        comparisons.append(Comparison("runs", run_label(before) + suffix, run_label(now) + suffix, verdicts, warnings))
    return comparisons


def a_a_control(group: Group, min_effect: float = DEFAULT_MIN_EFFECT) -> Verdict:
    """The run's own A/A test: one build's VEs split into two halves that are paired and
    judged as the builds are. Its positions 1 and 2 make a pair, 3 and 4 the next, and so on
    (in each round); which half starts first alternates from pair to pair (half 1 holds
    positions 1, 4, 5, 8, ...), as the builds' order does, so drift over the run does not
    land on one half. Nothing else differs between the halves, so a "worse" or "better"
    here (chance alone: at most ALPHA of runs) says the run moved more than the test allows
    for, and its verdicts between builds may be false alarms too."""
    halves: dict[int, tuple[list[dict[str, Any]], list[tuple[Any, ...]]]] = {1: ([], []), 2: ([], [])}
    for (round_, position), ve in zip(group.places, group.ves, strict=True):
        pair = (position + 1) // 2
        ves, places = halves[1 if position % 2 == pair % 2 else 2]
        ves.append(ve)
        places.append((round_, pair))
    first = Group(f"{group.name}, A/A half 1", *halves[1])
    second = Group(f"{group.name}, A/A half 2", *halves[2])
    latency = VE_METRICS["start_latency"]
    pairs = pairs_by_place(latency, first, second)
    return compare_paired(latency.name, first.name, second.name, pairs, worse=latency.worse, min_effect=min_effect)


def control_warning(control: Verdict) -> str | None:
    """What a failed A/A control means for the run's verdicts; None when it did not fail."""
    if control.verdict not in (WORSE, BETTER):
        return None
    return (
        f"the run's own A/A control (build {control.baseline} against {control.candidate}, start latency) "
        f"came out {control.verdict!r} ({verdict_text(control)}): nothing differs between those halves, "
        "so this run's host moved more than the test allows for and its verdicts may be false alarms; run it again"
    )


def compare_builds(results: Results, effects: dict[str, float] | None = None) -> list[Comparison]:
    """Each build of one run against its first build, with the run's A/A control on the
    first build; [] for a run with fewer than two builds."""
    groups = build_groups(results)
    if len(groups) < 2:
        return []
    baseline = groups[0]
    control = a_a_control(baseline, (effects or {}).get("start_latency", DEFAULT_MIN_EFFECT))
    warning = control_warning(control)
    return [
        Comparison(
            "builds",
            f"build {baseline.name}",
            f"build {group.name}",
            group_verdicts(baseline, group, effects, paired=True),
            [warning] if warning else [],
            control,
        )
        for group in groups[1:]
    ]


# -- rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    rule: FailRule
    verdict: Verdict

    def __str__(self) -> str:
        sides = f"{self.verdict.candidate} against {self.verdict.baseline}"
        return f"{self.rule.metric}: {verdict_text(self.verdict)} ({sides})"


def regressions(comparisons: list[Comparison], rules: list[FailRule]) -> list[Regression]:
    return [
        Regression(rule, verdict)
        for rule in rules
        for comparison in comparisons
        for verdict in comparison.verdicts
        if verdict.metric == rule.verdict_metric and verdict.verdict == WORSE
    ]


def unchecked_rules(comparisons: list[Comparison], rules: list[FailRule]) -> list[str]:
    """Rules no comparison has a verdict for (the figure is missing, or needs two runs), had
    too few samples to test, or could not decide ("can't tell"): none of them "held"."""
    found = {verdict.metric for comparison in comparisons for verdict in comparison.verdicts}
    notes = []
    for rule in rules:
        if rule.verdict_metric not in found:
            notes.append(f"{rule}: no {rule.verdict_metric} verdict in this comparison; not checked")
        elif all(
            v.verdict == CANT_TELL and v.n_baseline * v.n_candidate == 0
            for c in comparisons
            for v in c.verdicts
            if v.metric == rule.verdict_metric
        ):
            notes.append(f"{rule}: {rule.verdict_metric} is missing in one of the runs; not checked")
        elif all(
            v.verdict == CANT_TELL and v.p_value is None and v.method != "one value each"
            for c in comparisons
            for v in c.verdicts
            if v.metric == rule.verdict_metric
        ):
            # No test ran (too few samples or pairs): "no worse verdict" would be no evidence at all.
            notes.append(f"{rule}: {rule.verdict_metric} had too few samples for a test; not checked")
        elif undecided := [
            v for c in comparisons for v in c.verdicts if v.metric == rule.verdict_metric and v.verdict == CANT_TELL
        ]:
            # A test ran and could not tell: not a regression, and not shown to be none either.
            notes.append(f"{rule}: can't tell ({undecided[0].reason}); neither a regression nor shown to be none")
    return notes


@dataclass
class Judgement:
    """A run's comparisons and what the fail rules found in them."""

    comparisons: list[Comparison]
    rules: list[FailRule]
    regressions: list[Regression]
    notes: list[str]  # the rules no comparison could check

    @property
    def held(self) -> str | None:
        """The line that says the rules held, when there were rules and something to hold them to."""
        unchecked = {note.partition(": ")[0] for note in self.notes}
        checked = [str(rule) for rule in self.rules if str(rule) not in unchecked]
        if not (self.comparisons and checked) or self.regressions:
            return None
        return f"no regression: no 'worse' verdict for {', '.join(checked)}"


def judge(
    now: Results,
    rules: list[FailRule],
    before: Results | None = None,
    warnings: list[str] | None = None,
    builds: bool = True,
) -> Judgement:
    """`now`'s builds against its first build (unless builds=False), then `now` against
    `before` when given; each verdict held to the rules' minimum effects, the rules to the verdicts."""
    effects = min_effects(rules)
    comparisons = compare_builds(now, effects) if builds else []
    if before is not None:
        comparisons += compare_runs(before, now, effects, warnings)
    return Judgement(comparisons, rules, regressions(comparisons, rules), unchecked_rules(comparisons, rules))


# -- text --------------------------------------------------------------------------------


def _unit(name: str) -> tuple[str, float]:
    if name in VE_METRICS:
        return VE_METRICS[name].unit, VE_METRICS[name].scale
    if name in OUTCOMES:
        return "VEs", 1.0
    return METRICS[name].unit, METRICS[name].scale


def _number(value: float | None, scale: float, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    shown = value * scale
    text = f"{shown:+.2f}" if signed else f"{shown:.2f}"
    return text if abs(shown) < 100 else (f"{shown:+.1f}" if signed else f"{shown:.1f}")


def _pct(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "+inf%" if value == math.inf else "-inf%" if value == -math.inf else f"{value:+.1f}%"


def cells(verdict: Verdict) -> dict[str, str]:
    """One verdict's table cells, as text (terminal, HTML and `lxcexp compare` show the same)."""
    unit, scale = _unit(verdict.metric)
    if verdict.method in OUTCOME_METHODS:
        label = f"{verdict.metric} (VEs bad)"
        base, cand = f"{verdict.baseline_value:.0f}", f"{verdict.candidate_value:.0f}"
        shift = f"{verdict.shift:+.0f}" if verdict.shift is not None else "n/a"
        interval = ""
    else:
        label = f"{verdict.metric} ({unit})"
        base, cand = _number(verdict.baseline_value, scale), _number(verdict.candidate_value, scale)
        shift = _pct(verdict.shift_percent) if verdict.shift is not None else "n/a"
        ci = verdict.ci_percent
        interval = f"[{_pct(ci[0])}, {_pct(ci[1])}]" if ci else ""
    p_value = "" if verdict.p_value is None else f"{verdict.p_value:.2g}"
    shown_verdict = verdict.verdict + (" (no test)" if verdict.method == "one value each" else "")
    return {
        "metric": label,
        "baseline": base,
        "candidate": cand,
        "shift": shift,
        "ci": interval,
        "p": p_value,
        "verdict": shown_verdict,
    }


def verdict_text(verdict: Verdict) -> str:
    c = cells(verdict)
    unit = "VEs bad" if verdict.method in OUTCOME_METHODS else _unit(verdict.metric)[0]
    ci = f", 95% CI {c['ci']}" if c["ci"] else ""
    p = f", p {c['p']}" if c["p"] else ""
    return f"{verdict.verdict}: {c['baseline']} -> {c['candidate']} {unit}, shift {c['shift']}{ci}{p}; {verdict.reason}"


ACROSS_RUNS_NOTE = (
    "two runs: how the host drifted between them is not in the CI (docs/verdicts.md); builds interleaved "
    "in one run (--ve-lxc) are"
)
PAIRED_NOTE = "builds of one run: each VE paired with the other build's VE started beside it (Wilcoxon signed-rank)"
HEADER = f"{'metric':<30} {'baseline':>9} {'candidate':>9} {'shift':>8}  {'95% CI':<18} {'p':>7}  verdict"


def table_lines(comparison: Comparison) -> list[str]:
    """The comparison as fixed-width text: metric, medians, shift, CI, p-value, verdict."""
    lines = [f"baseline : {comparison.before_label}", f"candidate: {comparison.now_label}"]
    lines += [f"WARNING: {warning}" for warning in comparison.warnings]
    if comparison.kind == "runs":
        lines.append(f"note: {ACROSS_RUNS_NOTE}")
    elif comparison.kind == "builds":
        lines.append(f"note: {PAIRED_NOTE}")
    lines.append(HEADER)
    for verdict in comparison.verdicts:
        c = cells(verdict)
        lines.append(
            f"{c['metric']:<30} {c['baseline']:>9} {c['candidate']:>9} {c['shift']:>8}  {c['ci']:<18} "
            f"{c['p']:>7}  {c['verdict']}"
        )
    if comparison.control is not None:
        lines.append(f"A/A control: {control_text(comparison.control)}")
    return lines


def control_text(control: Verdict) -> str:
    """The A/A control in one line: which halves, and what the test made of them."""
    return f"build {control.baseline} against {control.candidate}: {verdict_text(control)}"
