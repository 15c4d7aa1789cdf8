"""engine.stats: per-VE verdicts, the summary's arithmetic, percentiles and the Results block."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine.stats import (
    Summary,
    VERecord,
    latency_stats,
    percentile,
    results_block,
    summarize,
    timings_lines,
)
from pytest_lxcexp.fixtures import describe_failures


def record(
    index: int = 1,
    state: str = "RUNNING",
    pid: int | None = 1234,
    pings: int = 180,
    expected_pings: int = 180,
    finished: bool = True,
    log_present: bool = True,
    start_latency: float | None = 0.05,
    start_error: str | None = None,
    started: bool = True,
) -> VERecord:
    return VERecord(
        index=index,
        state=state,
        pid=pid,
        pings=pings,
        expected_pings=expected_pings,
        finished=finished,
        log_present=log_present,
        start_latency=start_latency,
        start_error=start_error,
        started=started,
    )


# -- VERecord ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "failure"),
    [
        (
            {
                "state": "STOPPED",
                "pid": None,
                "pings": 0,
                "finished": False,
                "log_present": False,
                "start_error": "lxc start returned False",
            },
            "failed to start: lxc start returned False",
        ),
        (
            {"pings": 0, "finished": False, "log_present": False},
            "no log file",
        ),
        (
            {"state": "STOPPED", "pid": None, "pings": 0, "finished": False, "log_present": False},
            "no log, not running (state STOPPED)",
        ),
        (
            # No start was ever asked for: not "no log".
            {"state": "STOPPED", "pid": None, "pings": 0, "finished": False, "log_present": False, "started": False},
            "never started",
        ),
        (
            {"pings": 170, "finished": True},
            "incomplete: 170 of 180 pings answered",
        ),
        (
            {"state": "STOPPED", "pid": None, "pings": 42, "finished": False},
            "not running (state STOPPED) after 42 of 180 pings",
        ),
        (
            {"pings": 42, "finished": False},
            "incomplete: 42 of 180 pings",
        ),
        (
            # A log that ends but has no replies at all (ping failed, rc=1).
            {"pings": 0, "finished": True},
            "incomplete: 0 of 180 pings answered",
        ),
        (
            # All pings answered but the end line is missing: still not complete.
            {"pings": 180, "finished": False},
            "incomplete: 180 of 180 pings",
        ),
    ],
    ids=[
        "start-error",
        "no-log-running",
        "no-log-stopped",
        "never-started",
        "finished-short",
        "stopped-midway",
        "running-midway",
        "finished-no-replies",
        "all-replies-no-end",
    ],
)
def test_record_failure(kwargs: dict, failure: str) -> None:
    r = record(**kwargs)
    assert r.completed is False
    assert r.failure == failure


@pytest.mark.parametrize("pings", [180, 181])
def test_record_completed(pings: int) -> None:
    r = record(pings=pings)
    assert r.completed is True
    assert r.failure is None


def test_start_error_wins_over_a_log() -> None:
    r = record(pings=3, finished=False, start_error="timed out")
    assert r.failure == "failed to start: timed out"


def test_completed_requires_the_log() -> None:
    # A record that claims a finish without a log is not complete.
    assert record(log_present=False, finished=True).completed is False


def test_record_name_and_to_dict() -> None:
    r = record(index=42, pings=10, finished=True)
    assert r.name == "ve42"
    data = r.to_dict()
    assert data["name"] == "ve42"
    assert data["index"] == 42
    assert data["completed"] is False
    assert data["failure"] == "incomplete: 10 of 180 pings answered"
    assert data["pings"] == 10
    assert data["address"] is None


# -- summarize ---------------------------------------------------------------------------


def mixed_records() -> list[VERecord]:
    records = []
    index = 0

    def add(n: int, **kwargs: object) -> None:
        nonlocal index
        for _ in range(n):
            index += 1
            records.append(record(index=index, **kwargs))

    add(7, start_latency=0.01)  # completed, running
    add(2, pings=100, finished=True)  # incomplete (finished short), running
    add(1, state="STOPPED", pid=None, pings=5, finished=False)  # incomplete, stopped
    add(3, pings=0, finished=False, log_present=False)  # no log, running with a pid
    # Failed to start: no log, no pid, and its latency is not counted.
    add(2, state="STOPPED", pid=None, pings=0, finished=False, log_present=False, start_error="boom", start_latency=9.9)
    return records


def test_summarize_counts() -> None:
    records = mixed_records()
    summary = summarize(records, disk_used=12345, root="/exp", expected_pings=180)
    assert summary.total == 15
    assert summary.completed == 7
    assert summary.incomplete == 3
    assert summary.no_log == 5
    assert summary.completed + summary.incomplete + summary.no_log == summary.total
    assert summary.with_pid == 12
    assert summary.running == 12
    assert summary.failed_to_start == 2
    assert summary.disk_used == 12345
    assert summary.root == "/exp"
    assert summary.expected_pings == 180
    # Latencies of the VEs that started, not of the ones that failed to.
    assert len(summary.start_latencies) == 13
    assert 9.9 not in summary.start_latencies


def test_summarize_counts_agree_with_records() -> None:
    records = mixed_records()
    summary = summarize(records)
    failed = [r for r in records if r.failure is not None]
    assert summary.completed == len(records) - len(failed)
    assert summary.incomplete == sum(r.log_present for r in failed)
    assert summary.no_log == sum(not r.log_present for r in failed)


def test_summarize_empty_and_generator() -> None:
    empty = summarize([])
    assert (empty.total, empty.completed, empty.incomplete, empty.no_log, empty.with_pid) == (0, 0, 0, 0, 0)
    assert empty.to_dict()["start_latency"] == {}
    from_generator = summarize(r for r in mixed_records())
    assert from_generator.total == 15


def test_summary_to_dict() -> None:
    summary = summarize(mixed_records(), disk_used=1, root="/exp", expected_pings=180)
    data = summary.to_dict()
    assert "start_latencies" not in data
    assert data["total"] == 15
    assert data["completed"] == 7
    assert data["start_latency"]["count"] == 13
    assert set(data["start_latency"]) == {"count", "mean", "p50", "p90", "p99", "max"}


# -- percentiles ------------------------------------------------------------------------------


@pytest.mark.parametrize(("fraction", "expected"), [(0.50, 5), (0.90, 9), (0.99, 10), (1.0, 10), (0.0, 1), (0.1, 1)])
def test_percentile_nearest_rank(fraction: float, expected: int) -> None:
    assert percentile(list(range(1, 11)), fraction) == expected


def test_percentile_ignores_order() -> None:
    values = [7, 3, 10, 1, 9, 2, 8, 5, 4, 6]
    assert percentile(values, 0.5) == 5
    assert percentile(values, 0.9) == 9
    assert values == [7, 3, 10, 1, 9, 2, 8, 5, 4, 6]  # not sorted in place


@pytest.mark.parametrize("n", [100, 1000])
def test_percentile_larger_sets(n: int) -> None:
    values = list(range(1, n + 1))
    assert percentile(values, 0.5) == n // 2
    assert percentile(values, 0.9) == n * 9 // 10
    assert percentile(values, 0.99) == n * 99 // 100


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_percentile_single_value(fraction: float) -> None:
    assert percentile([0.25], fraction) == 0.25


def test_percentile_empty_raises() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_latency_stats() -> None:
    stats = latency_stats([0.1, 0.2, 0.3, 0.4])
    assert stats["count"] == 4
    assert stats["mean"] == pytest.approx(0.25)
    assert stats["p50"] == 0.2
    assert stats["p90"] == 0.4
    assert stats["p99"] == 0.4
    assert stats["max"] == 0.4
    assert latency_stats([]) == {}


# -- the Results block ---------------------------------------------------------------------


def test_results_block_original_format() -> None:
    summary = Summary(
        total=1000,
        completed=704,
        incomplete=0,
        no_log=296,
        with_pid=704,
        running=704,
        failed_to_start=0,
        disk_used=123,
        root="/exp",
        expected_pings=180,
    )
    assert results_block(summary, "1.2G") == [
        "Disk Usage of VEs: 1.2G /exp",
        "Total VEs        : 1000",
        "180-ping VEs     : 704",
        "Incomplete VEs   : 0",
        "No log file VEs  : 296",
        "704 VEs have a PID",
    ]


def test_results_block_from_summarize() -> None:
    summary = summarize(mixed_records(), root="/srv/exp", expected_pings=180)
    lines = results_block(summary, "64M")
    assert lines == [
        "Disk Usage of VEs: 64M /srv/exp",
        "Total VEs        : 15",
        "180-ping VEs     : 7",
        "Incomplete VEs   : 3",
        "No log file VEs  : 5",
        "12 VEs have a PID",
    ]


@pytest.mark.parametrize("pings", [1, 5, 180, 3600, 100000])
def test_results_block_colons_line_up(pings: int) -> None:
    summary = Summary(
        total=1, completed=1, incomplete=0, no_log=0, with_pid=1, running=1, failed_to_start=0, expected_pings=pings
    )
    lines = results_block(summary, "1M")
    assert lines[2] == f"{pings}-ping VEs".ljust(17) + ": 1"
    assert {line.index(":") for line in lines[:5]} == {17}


def test_timings_lines() -> None:
    summary = summarize([record(index=i, start_latency=i / 1000) for i in range(1, 11)])
    lines = timings_lines({"setup tmpfs": 0.01234, "start all": 12.5}, summary)
    assert lines == [
        "setup tmpfs           :     0.01 s",
        "start all             :    12.50 s",
        "start latency (ms)    : p50 5.0  p90 9.0  p99 10.0  max 10.0",
    ]


def test_timings_lines_without_latencies() -> None:
    summary = summarize([record(start_latency=None)])
    assert timings_lines({"takedown": 1.0}, summary) == ["takedown              :     1.00 s"]


# -- describe_failures (fixtures) -------------------------------------------------------------


def test_describe_failures() -> None:
    records = mixed_records()
    text = describe_failures(records)
    lines = text.splitlines()
    assert lines[0] == "8 of 15 VEs did not complete:"
    assert lines[1] == "  ve8: incomplete: 100 of 180 pings answered"
    assert "  ve10: not running (state STOPPED) after 5 of 180 pings" in lines
    assert "  ve11: no log file" in lines
    assert "  ve14: failed to start: boom" in lines
    assert len(lines) == 9
    assert not any(line.startswith("  ve1:") for line in lines)


def test_describe_failures_limit() -> None:
    records = [record(index=i, pings=0, finished=False, log_present=False) for i in range(1, 61)]
    lines = describe_failures(records, limit=50).splitlines()
    assert lines[0] == "60 of 60 VEs did not complete:"
    assert lines[50] == "  ve50: no log file"
    assert lines[-1] == "  ... and 10 more"
    assert len(lines) == 52


def test_describe_failures_none_failed() -> None:
    assert describe_failures([record()]) == "0 of 1 VEs did not complete:"
