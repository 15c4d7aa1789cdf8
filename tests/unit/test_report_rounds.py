"""--ve-repeat in the report: results of several rounds (records, times, timeline), their
verdicts, charts and the terminal summary; real build_results over made-up records."""

from __future__ import annotations

import dataclasses

from report_helpers import T0, make_records, make_results

from pytest_lxcexp.engine.config import ExperimentConfig
from pytest_lxcexp.engine.stats import median_timings, summarize
from pytest_lxcexp.report.charts import running_at_start
from pytest_lxcexp.report.compare import build_groups, compare_builds, compare_runs
from pytest_lxcexp.report.html import report_sections
from pytest_lxcexp.report.outcome import Finished
from pytest_lxcexp.report.results import RoundTimes, StartTimes, VECapture, build_results
from pytest_lxcexp.report.sampler import Sample
from pytest_lxcexp.session import RunState
from pytest_lxcexp.summary import summary_lines

ROUND_GAP = 100.0  # round N runs from T0 + N * ROUND_GAP
PHASES = [
    {"setup tmpfs": 0.1, "setup base": 0.2, "start all": 1.0, "complete all": 2.0, "takedown": 0.5},
    {"setup tmpfs": 0.3, "setup base": 0.2, "start all": 3.0, "complete all": 4.0, "takedown": 0.7},
    {"setup tmpfs": 0.2, "setup base": 0.4, "start all": 2.0, "complete all": 9.0, "takedown": 0.6},
]


def round_results(rounds: int = 2, count: int = 4, builds: tuple[str, ...] = ("a", "b"), failed: tuple = ()):
    """`rounds` rounds of `count` VEs, interleaved over `builds` and shifted by one a round;
    (round, index) pairs in `failed` did not complete."""
    records, starts, capture, samples, times = [], {}, VECapture(), [], []
    for number in range(rounds):
        began = T0 + number * ROUND_GAP
        for record in make_records([0.01 * (number + 1) * i for i in range(1, count + 1)]):
            key = (number, record.index)
            done = key not in failed
            record = dataclasses.replace(
                record,
                round=number,
                build=builds[(record.index - 1 + number) % len(builds)],
                finished=done,
                state="RUNNING" if done else "STOPPED",
                pings=record.expected_pings if done else 1,
            )
            records.append(record)
            starts[key] = StartTimes(began + 1 + 0.1 * record.index, record.start_latency or 0.0, True)
            capture.log_ended[key] = int(began + 3) if done else None
        samples += [Sample(began + 0.5 * i, 1_000_000_000, running, None) for i, running in enumerate([0, 0, 2, 4, 4])]
        times.append(RoundTimes(number, PHASES[number], began, began + 4, builds[number % len(builds)], []))
    summary = summarize(records, expected_pings=3)
    return build_results(
        run_id="rounds",
        metadata={"started_at": T0, "options": {"count": count, "repeat": rounds}},
        phases={},
        summary=summary,
        records=records,
        starts=starts,
        capture=capture,
        samples=samples,
        session={"exitstatus": 0},
        rounds=times,
    )


def test_every_record_of_every_round_with_its_own_times() -> None:
    results = round_results(rounds=2)
    assert [(ve["round"], ve["index"]) for ve in results["ves"]] == [(r, i) for r in (0, 1) for i in (1, 2, 3, 4)]
    # Each VE's start and completion are those of its own round, not the other's with the same index.
    for ve in results["ves"]:
        began = T0 + ve["round"] * ROUND_GAP
        assert ve["started_at"] == round(began + 1 + 0.1 * ve["index"], 6)
        assert began + 3 <= ve["completed_at"] <= began + 4
    assert results["summary"]["total"] == 8 and results["summary"]["completed"] == 8


def test_rounds_section_counts_and_times_each_round() -> None:
    results = round_results(rounds=3, failed=((2, 3),))
    rounds = results["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert [r["first_build"] for r in rounds] == ["a", "b", "a"]
    assert [(r["summary"]["total"], r["summary"]["completed"]) for r in rounds] == [(4, 4), (4, 4), (4, 3)]
    assert [r["timings"]["start_all_s"] for r in rounds] == [1.0, 3.0, 2.0]
    assert [r["timings"]["setup_s"] for r in rounds] == [0.3, 0.5, 0.6]
    # Round 3 did not complete: it has no "all completed" time; the others keep theirs.
    assert [r["timings"]["complete_all_s"] for r in rounds] == [2.0, 4.0, None]
    assert [r["timings"]["start_latency"]["count"] for r in rounds] == [4, 4, 4]
    assert rounds[1]["timings"]["start_latency"]["max"] == 0.08  # round 2's own VEs only
    assert results["summary"]["completed"] == 11


def test_run_timings_are_each_phases_median_over_the_rounds() -> None:
    results = round_results(rounds=3)
    timings = results["timings"]
    assert timings["phases"] == median_timings(PHASES)
    assert timings["start_all_s"] == 2.0 and timings["complete_all_s"] == 4.0 and timings["takedown_s"] == 0.6
    assert timings["setup_s"] == round(0.2 + 0.2, 6)
    assert timings["start_latency"]["count"] == 12  # every round's VEs
    assert median_timings([{"a": 1.0}, {"a": 3.0, "b": 5.0}]) == {"a": 2.0, "b": 5.0}


def test_one_round_is_the_run_as_before() -> None:
    results = make_results()
    assert len(results["rounds"]) == 1
    assert results["rounds"][0]["timings"]["phases"] == results["timings"]["phases"]
    assert "round" not in results["timeline"]


def test_timeline_counts_the_ves_of_the_round_going_on() -> None:
    timeline = round_results(rounds=2)["timeline"]
    assert timeline["round"] == [0] * 5 + [1] * 5
    # Round 2's first samples count none of round 1's VEs as started.
    assert timeline["started"] == [0, 0, 0, 4, 4, 0, 0, 0, 4, 4]


def test_build_verdicts_use_every_round_at_places_round_and_position() -> None:
    results = round_results(rounds=2, count=20, failed=((1, 2),))
    groups = {group.name: group for group in build_groups(results)}
    assert len(groups["a"].ves) == len(groups["b"].ves) == 20
    assert sorted(groups["b"].places) == sorted([(r, k) for r in (0, 1) for k in range(1, 11)])
    (comparison,) = compare_builds(results)
    latency = comparison.verdict("start_latency")
    assert (latency.n_baseline, latency.n_candidate) == (20, 20)
    # Round 2's ve2 is build a's (the first build alternates): build a, the baseline, failed there.
    completed = comparison.verdict("completed")
    assert completed.baseline_value == 1 and completed.candidate_value == 0


def test_compare_across_runs_uses_every_round_of_both() -> None:
    before, now = round_results(rounds=3), round_results(rounds=2)
    # The same builds in both: build by build, each with its VEs of every round.
    per_build = compare_runs(before, now)
    assert [c.now_label.rsplit(" ", 1)[-1] for c in per_build] == ["a", "b"]
    for comparison in per_build:
        latency = comparison.verdict("start_latency")
        assert (latency.n_baseline, latency.n_candidate) == (6, 4)
    (whole,) = compare_runs(round_results(rounds=3, builds=("system",)), round_results(rounds=2, builds=("system",)))
    assert (whole.verdict("start_latency").n_baseline, whole.verdict("start_latency").n_candidate) == (12, 8)


def test_running_at_start_counts_only_the_ves_of_its_own_round() -> None:
    points = running_at_start(round_results(rounds=2)["ves"])
    # Each round's first start finds nobody up: round 1's VEs are down by then.
    assert [running for running, _ in points] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_html_shows_each_round() -> None:
    results = round_results(rounds=2)
    html = report_sections(Finished(run_dir=None, rules=[], notes=[], results=results))
    assert '<table id="lxcexp-rounds">' in html
    assert "<td>2</td><td>b</td><td>4 of 4</td>" in html
    assert "<h3>Rounds" not in report_sections(Finished(run_dir=None, rules=[], notes=[], results=make_results()))


def test_terminal_summary_says_each_round() -> None:
    state = RunState(ExperimentConfig(count=4, repeat=2, network="none"))
    for number in (0, 1):
        round_state = state.begin_round(number)
        round_state.first_build = "ab"[number]
        records = [dataclasses.replace(r, round=number) for r in make_records([0.01, 0.02, 0.03, 0.04], completed=3)]
        state.round_records(records, summarize(records, expected_pings=3))
        round_state.timings = dict(PHASES[number])
        state.end_round([])
    lines = summary_lines(state)
    assert "Total VEs        : 8" in lines
    assert "Rounds (2 of 2)" in lines
    assert any(
        line.startswith("  round 2 (first build b): 3 of 4 completed; setup 0.50 s, start all 3.00 s") for line in lines
    )
    assert "Timings (median of 2 rounds; start latency of all their VEs)" in lines
    assert "start all             :     2.00 s" in lines
    assert "  round 1 ve4: not running (state STOPPED) after 1 of 3 pings" in lines
    assert "  round 2 ve4: not running (state STOPPED) after 1 of 3 pings" in lines
    assert lines[-1] == "Takedown: nothing left behind"
