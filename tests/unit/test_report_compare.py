"""report.compare: change arithmetic, which direction is worse per metric, fail rules, REF resolution."""

from __future__ import annotations

import math
import os

import pytest
from report_helpers import OPTIONS, make_results

from pytest_lxcexp.report.archive import RESULTS_FILE
from pytest_lxcexp.report.compare import (
    CompareError,
    FailRule,
    change_percent,
    compare,
    missing_for_rules,
    parse_fail_rule,
    parse_fail_rules,
    regressions,
    resolve_ref,
    table_lines,
    worse_percent,
)
from pytest_lxcexp.report.metrics import METRICS
from pytest_lxcexp.report.results import write_results


@pytest.mark.parametrize(
    ("before", "now", "change"),
    [(100, 110, 10.0), (100, 90, -10.0), (20, 20, 0.0), (0, 0, 0.0), (0.04, 0.05, 25.0), (-2, -1, 50.0)],
)
def test_change_percent(before: float, now: float, change: float) -> None:
    assert change_percent(before, now) == pytest.approx(change)


def test_change_from_zero_is_infinite() -> None:
    assert change_percent(0, 3) == math.inf
    assert change_percent(0, -3) == -math.inf


@pytest.mark.parametrize(
    ("metric", "before", "now", "worse"),
    [
        ("start_p90", 0.040, 0.050, 25.0),  # slower start: worse
        ("start_p90", 0.050, 0.040, -20.0),  # faster: better
        ("completed", 1000, 990, 1.0),  # fewer completed: worse
        ("completed", 990, 1000, -1.0101),  # more completed: better
        ("takedown_s", 10, 15, 50.0),
        ("memory_per_ve", 2.0, 1.0, -50.0),
        ("failed_to_start", 0, 1, math.inf),  # any failure where there was none
        ("no_log", 4, 0, 100.0 * -1),
    ],
)
def test_worse_is_positive_whichever_way_the_metric_points(
    metric: str, before: float, now: float, worse: float
) -> None:
    assert worse_percent(METRICS[metric], before, now) == pytest.approx(worse, rel=1e-3)


def test_every_metric_has_a_direction() -> None:
    assert {m.worse for m in METRICS.values()} == {"higher", "lower"}
    assert METRICS["completed"].worse == "lower" and METRICS["ramp_reached"].worse == "lower"
    assert all(METRICS[name].worse == "higher" for name in METRICS if name not in ("completed", "ramp_reached"))


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("start_p90:10%", FailRule("start_p90", 10.0)),
        ("completed:0%", FailRule("completed", 0.0)),
        (" setup_s : 20 % ", FailRule("setup_s", 20.0)),
        ("takedown_s:50%", FailRule("takedown_s", 50.0)),
        ("memory_per_ve:2.5%", FailRule("memory_per_ve", 2.5)),
    ],
)
def test_fail_rule_forms(text: str, rule: FailRule) -> None:
    assert parse_fail_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("start_p90", "is not METRIC:N%"),
        ("start_p90:10", "is not METRIC:N%"),
        ("start_p90:-5%", "is not METRIC:N%"),
        ("start_p90:ten%", "is not METRIC:N%"),
        (":10%", "is not METRIC:N%"),
        ("start_p95:10%", "unknown metric 'start_p95'"),
        ("speed:1%", "known: completed, "),
    ],
)
def test_bad_fail_rules(text: str, reason: str) -> None:
    with pytest.raises(CompareError, match=reason):
        parse_fail_rule(text)


def test_rules_repeat_or_come_comma_separated() -> None:
    assert parse_fail_rules(["start_p90:10%,completed:0%", "setup_s:20%"]) == [
        FailRule("start_p90", 10.0),
        FailRule("completed", 0.0),
        FailRule("setup_s", 20.0),
    ]


def test_a_run_against_itself_changes_nothing_and_fails_no_rule() -> None:
    run = make_results()
    comparison = compare(run, run)
    assert all(row.change in (0.0, None) for row in comparison.rows)
    rules = parse_fail_rules([f"{name}:0%" for name in METRICS])
    assert regressions(comparison, rules) == []
    assert comparison.warnings == []


def test_slower_starts_fail_the_rule_and_only_beyond_the_limit() -> None:
    before = make_results(latencies=[0.010 * n for n in range(1, 11)])
    now = make_results(latencies=[0.011 * n for n in range(1, 11)])  # 10% slower everywhere
    comparison = compare(before, now)
    assert comparison.row("start_p90").change == pytest.approx(10.0)
    assert comparison.row("start_p90").change_text() == "+10.0% worse"
    assert regressions(comparison, [FailRule("start_p90", 9.9)])
    assert not regressions(comparison, [FailRule("start_p90", 10.01)])


def test_faster_is_never_a_regression() -> None:
    before = make_results(latencies=[0.020 * n for n in range(1, 11)])
    now = make_results(latencies=[0.010 * n for n in range(1, 11)])
    comparison = compare(before, now)
    assert comparison.row("start_p50").change_text() == "-50.0% better"
    assert regressions(comparison, [FailRule("start_p50", 0.0)]) == []


def test_fewer_completed_fails_completed_zero_percent() -> None:
    comparison = compare(make_results(), make_results(completed=9))
    found = regressions(comparison, [FailRule("completed", 0.0)])
    assert len(found) == 1
    assert str(found[0]) == "completed is 10.0% worse than before (10 -> 9 VEs; limit 0%)"
    assert "incomplete" in {r.rule.metric for r in regressions(comparison, [FailRule("incomplete", 50.0)])}


def test_missing_figures_are_not_checked_and_said_so() -> None:
    before = make_results(phases={})
    comparison = compare(before, make_results())
    assert comparison.row("takedown_s").change_text() == "n/a"
    rules = [FailRule("takedown_s", 1.0)]
    assert regressions(comparison, rules) == []
    assert missing_for_rules(comparison, rules) == [
        "takedown_s:1%: takedown_s is missing in one of the runs; not checked"
    ]


def test_warns_when_host_or_options_differ_but_not_for_names() -> None:
    other_names = dict(OPTIONS, root="/exp2", bridge="vebr2", subnet="10.1.0.0/24")
    assert compare(make_results(), make_results(options=other_names)).warnings == []
    warnings = compare(make_results(), make_results(hostname="host-b", options=dict(OPTIONS, pings=5))).warnings
    assert warnings == [
        "the runs are from different hosts: hostname host-a -> host-b",
        "the runs used different options: pings 3 -> 5",
    ]


def test_table_has_metric_before_now_change() -> None:
    lines = table_lines(compare(make_results(lxc_version="5.0.2"), make_results(lxc_version="6.0.0")))
    assert lines[0].startswith("before: 20261126T231500Z-lxc5.0.2-host-a (liblxc 5.0.2,")
    assert "liblxc 6.0.0" in lines[1]
    assert lines[2].split() == ["metric", "before", "now", "change"]
    assert lines[3].split() == ["completed", "(VEs)", "10", "10", "same"]
    assert any(line.split()[:4] == ["start_p90", "(ms)", "90.00", "90.00"] for line in lines)


def _saved(report_dir, name: str) -> str:
    path = os.path.join(report_dir, name)
    write_results(os.path.join(path, RESULTS_FILE), make_results(run_id=name))
    return path


def test_ref_forms(tmp_path) -> None:
    reports = tmp_path / "reports"
    old = _saved(reports, "20261101T000000Z-lxc5.0.2-h")
    new = _saved(reports, "20261102T000000Z-lxc6.0.0-h")
    os.makedirs(reports / "20261103T000000Z-lxc6.0.0-h")  # a run that wrote no results: never 'latest'
    assert resolve_ref(os.path.join(old, RESULTS_FILE), None) == os.path.join(old, RESULTS_FILE)
    assert resolve_ref(old, None) == os.path.join(old, RESULTS_FILE)
    assert resolve_ref("20261101T000000Z-lxc5.0.2-h", str(reports)) == os.path.join(old, RESULTS_FILE)
    assert resolve_ref("latest", str(reports)) == os.path.join(new, RESULTS_FILE)
    assert resolve_ref("latest", str(reports), exclude=new) == os.path.join(old, RESULTS_FILE)


@pytest.mark.parametrize(
    ("ref", "with_dir", "reason"),
    [
        ("latest", False, "'latest' needs --ve-report-dir"),
        ("latest", True, "holds no saved run yet"),
        ("nothing-here", True, "no such results file or run folder"),
        (".", False, "is a folder without a results.json"),
    ],
)
def test_bad_refs(tmp_path, monkeypatch, ref: str, with_dir: bool, reason: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompareError, match=reason):
        resolve_ref(ref, str(tmp_path) if with_dir else None)
