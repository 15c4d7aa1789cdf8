"""Synthetic runs for the report's unit tests: real build_results over made-up records."""

from __future__ import annotations

from typing import Any

from pytest_lxcexp.engine.stats import VERecord, summarize
from pytest_lxcexp.report.results import StartTimes, VECapture, build_results
from pytest_lxcexp.report.sampler import Sample

T0 = 1_800_000_000.0
OPTIONS = {"count": 10, "batch": 10, "root": "/exp", "pings": 3, "ping_interval": 0.2, "network": "bridge"}
FINGERPRINT = {
    "kernel": "6.1.0",
    "cgroup_layout": {"v1": [["cpu", "cpuacct"], ["memory"], ["pids"]], "unified": []},
    "lxc_cgroup_use": "cpu,cpuacct,pids",
    "cpu_count": 2,
    "start_path": "forkstart",
}


def make_records(latencies: list[float], completed: int | None = None, pings: int = 3) -> list[VERecord]:
    done = len(latencies) if completed is None else completed
    return [
        VERecord(
            index=index,
            state="RUNNING" if index <= done else "STOPPED",
            pid=1000 + index if index <= done else None,
            pings=pings if index <= done else 1,
            expected_pings=pings,
            finished=index <= done,
            log_present=True,
            start_latency=latency,
            address=f"10.0.0.{index + 1}",
        )
        for index, latency in enumerate(latencies, start=1)
    ]


def make_results(
    latencies: list[float] | None = None,
    completed: int | None = None,
    phases: dict[str, float] | None = None,
    hostname: str = "host-a",
    options: dict[str, Any] | None = None,
    memory_step: int = 2 * 1024**2,
    run_id: str = "20261126T231500Z-lxc5.0.2-host-a",
    lxc_version: str = "5.0.2",
    fingerprint: dict[str, Any] | None = FINGERPRINT,
    builds: list[str] | None = None,
) -> dict[str, Any]:
    """A run of len(latencies) VEs, veN started at T0 + 1 + 0.1 N, its log ended in second T0 + 2;
    host memory grows by memory_step per running VE. The first `completed` VEs complete; with
    `builds`, VEs are assigned to them in turn."""
    latencies = latencies if latencies is not None else [0.010 * n for n in range(1, 11)]
    records = make_records(latencies, completed)
    starts = {(0, r.index): StartTimes(T0 + 1 + 0.1 * r.index, r.start_latency or 0.0, True) for r in records}
    capture = VECapture(
        log_began={(0, r.index): int(T0 + 2) for r in records},
        log_ended={(0, r.index): int(T0 + 2) if r.completed else None for r in records},
        log_tails={
            (0, r.index): f"64 bytes from 127.0.0.1: seq=0\n<b>{r.name}</b> stopped" for r in records if not r.completed
        },
        disk_per_ve=8192.0,
        disk_base=2_000_000,
    )
    # Sampled every 0.5 s from T0: nothing before the first start (T0 + 1.1), all up from T0 + 2.
    running_at = [0, 0, 0, min(4, len(records)), len(records), len(records), 0]
    samples = [
        Sample(T0 + 0.5 * i, 1_000_000_000 + memory_step * running, running, 4096 * running)
        for i, running in enumerate(running_at)
    ]
    summary = summarize(records, disk_used=3_000_000, root="/exp", expected_pings=3)
    meta = {
        "tool": {"name": "pytest-lxcexp", "version": "0.1.0"},
        "lxc": {"version": lxc_version, "library": "/usr/lib/liblxc.so.1", "python_lxc": "5.0.0"},
        "hostname": hostname,
        "kernel": {"release": "6.1.0", "version": "#1", "machine": "x86_64"},
        "distribution": "Debian GNU/Linux 12 (bookworm)",
        "cpu": {"model": "Test CPU", "count": 2},
        "memory_total": 24 * 1024**3,
        "python": "3.11.2",
        "pytest": "9.2.0",
        "options": options if options is not None else dict(OPTIONS),
        "started_at": T0,
        "ended_at": T0 + 3,
    }
    if fingerprint is not None:
        meta["fingerprint"] = dict(fingerprint)
    results = build_results(
        run_id=run_id,
        metadata=meta,
        phases=phases
        if phases is not None
        else {
            "setup tmpfs": 0.01,
            "setup base": 0.02,
            "setup network": 0.03,
            "setup clones": 0.04,
            "start all": 1.0,
            "complete all": 2.0,
            "takedown": 0.5,
        },
        summary=summary,
        records=records,
        starts=starts,
        capture=capture,
        samples=samples,
        session={"exitstatus": 0, "outcomes": {"passed": 2}},
    )
    if builds:  # interleaved, as --ve-lxc assigns them: ve1 the first build, ve2 the second, ...
        for ve in results["ves"]:
            ve["build"] = builds[(ve["index"] - 1) % len(builds)]
            ve["round"] = 1
    return results
