"""Per-VE records -> summary, percentiles and the original's Results block."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .percentiles import percentile
from .workload import expected_exit_status
from .workload_kinds import NETWORK_WORKLOADS, PING_WORKLOADS, workload_kind


@dataclass(frozen=True)
class VERecord:
    """Everything known about one VE at one moment."""

    index: int
    state: str
    pid: int | None
    pings: int
    expected_pings: int
    finished: bool
    log_present: bool
    start_latency: float | None = None
    start_error: str | None = None
    address: str | None = None
    # The host limit behind its failure (a full tmpfs, no more PIDs, ...), when one explains it.
    fault: str | None = None
    # The workload and what its log says besides pings; the defaults are the original's.
    workload: str = "ping-localhost"
    began: bool = False
    exit_status: int | None = None
    poweroff: bool = False  # --ve-poweroff: it should power off once its workload ends
    powered_off: bool = False  # its log says it did, after logging its exit status
    output: str | None = None  # a command's last lines of output
    target: str | None = None  # the address a ping workload pings
    build: str | None = None  # the --ve-lxc build that started it
    round: int = 0  # the round it ran in (--ve-repeat; 0-based)
    # Seconds from its start request to each phase of its start (engine/phases.py); {} if it never started.
    phases: dict[str, float | None] = field(default_factory=dict, hash=False)
    # Memory per VE, read while it ran (engine/ve_memory.py), bytes: its LXC monitor's PSS, and
    # what its own memory cgroup was charged (None where it has none: charged with all VEs together).
    monitor_pss: int | None = None
    cgroup_memory: int | None = None
    fields: dict[str, Any] = field(default_factory=dict, hash=False)  # from pytest_lxcexp_ve_fields
    started: bool = True  # a start was asked for (by this run, or recorded in the root)
    # What the host found in place of its workload log and would not read (a FIFO, a device...).
    log_refused: str | None = None

    @property
    def name(self) -> str:
        return f"ve{self.index}"

    @property
    def fields_text(self) -> str:
        """' [key=value, ...]' of the hook's extra fields, or '' (appended to failure descriptions)."""
        if not self.fields:
            return ""
        return " [" + ", ".join(f"{key}={value}" for key, value in self.fields.items()) + "]"

    @property
    def expected_status(self) -> int | None:
        """The exit status that means success (0 for a command), or None where the pings decide."""
        return expected_exit_status(self.workload)

    @property
    def completed(self) -> bool:
        return self.failure is None

    @property
    def crashed(self) -> bool:
        """It began its workload and stopped before the workload ended (an idle VE: stopped at all)."""
        return self.log_present and self.start_error is None and not self.finished and self.state != "RUNNING"

    def _unfinished(self, kind: str) -> str:
        if kind in PING_WORKLOADS:
            if self.state != "RUNNING":
                return f"not running (state {self.state}) after {self.pings} of {self.expected_pings} pings"
            return f"incomplete: {self.pings} of {self.expected_pings} pings"
        what = "command" if kind == "command" else "workload"
        if self.state != "RUNNING":
            return f"crashed: not running (state {self.state}) before its {what} ended"
        return f"incomplete: its {what} has not ended"

    @property
    def failure(self) -> str | None:
        """Why this VE did not complete, in words, with the host limit behind it if known; None if it did."""
        plain = self._failure()
        return f"{plain}; {self.fault}" if plain is not None and self.fault else plain

    def _failure(self) -> str | None:
        if self.start_error:
            return f"failed to start: {self.start_error}"
        if self.log_refused:
            return f"its workload log is {self.log_refused}"
        if not self.log_present:
            if not self.started and self.state != "RUNNING":
                return "never started"
            if self.state != "RUNNING":
                return f"no log, not running (state {self.state})"
            return "no log file"
        kind = workload_kind(self.workload)
        if kind == "idle":
            # Idle never ends: done means up, with its begin line logged.
            if not self.began:
                return f"no begin line logged (state {self.state})"
            return None if self.state == "RUNNING" else f"crashed: not running (state {self.state}) after it began"
        if not self.finished:
            return self._unfinished(kind)
        if kind in PING_WORKLOADS and self.pings < self.expected_pings:
            by = f" by {self.target}" if kind in NETWORK_WORKLOADS and self.target else ""
            return f"incomplete: {self.pings} of {self.expected_pings} pings answered{by}"
        expected = self.expected_status
        if expected is not None and self.exit_status != expected:
            what = "command" if kind == "command" else "workload"
            return f"{what} exited with status {self.exit_status} (expected {expected})"
        if self.poweroff and self.state == "RUNNING":
            return "its workload ended but it did not power off (still RUNNING)"
        if self.poweroff and not self.powered_off:
            return f"stopped (state {self.state}) after its workload ended, without powering off"
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["name"] = self.name
        data["completed"] = self.completed
        data["failure"] = self.failure
        return data


@dataclass(frozen=True)
class Summary:
    total: int
    completed: int
    incomplete: int
    no_log: int
    with_pid: int
    running: int
    failed_to_start: int
    disk_used: int = 0
    root: str = ""
    expected_pings: int = 0
    start_latencies: list[float] = field(default_factory=list)
    workload: str = "ping-localhost"
    powered_off: int = 0  # completed, then powered off as asked
    crashed: int = 0  # stopped before their workload ended
    poweroff: bool = False  # --ve-poweroff was asked for

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("start_latencies")
        data["start_latency"] = latency_stats(self.start_latencies)
        return data


def summarize(
    records: Iterable[VERecord],
    disk_used: int = 0,
    root: str = "",
    expected_pings: int = 0,
    workload: str = "ping-localhost",
) -> Summary:
    records = list(records)
    return Summary(
        total=len(records),
        completed=sum(r.completed for r in records),
        incomplete=sum(r.log_present and not r.completed for r in records),
        no_log=sum(not r.log_present for r in records),
        with_pid=sum(r.pid is not None for r in records),
        running=sum(r.state == "RUNNING" for r in records),
        failed_to_start=sum(r.start_error is not None for r in records),
        disk_used=disk_used,
        root=root,
        expected_pings=expected_pings,
        start_latencies=[r.start_latency for r in records if r.start_latency is not None and r.start_error is None],
        workload=workload,
        powered_off=sum(r.completed and r.powered_off for r in records),
        crashed=sum(r.crashed for r in records),
        poweroff=any(r.poweroff for r in records),
    )


def latency_stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "count": len(values),
        "mean": sum(values) / len(values),
        "p50": percentile(values, 0.50),
        "p90": percentile(values, 0.90),
        "p99": percentile(values, 0.99),
        "max": max(values),
    }


def results_block(summary: Summary, human_disk: str) -> list[str]:
    """The original experiment's Results block, line for line."""
    kind = workload_kind(summary.workload)
    label = f"{summary.expected_pings}-ping VEs" if kind in PING_WORKLOADS else f"Completed VEs ({kind})"
    lines = [
        f"Disk Usage of VEs: {human_disk} {summary.root}",
        f"Total VEs        : {summary.total}",
        f"{label:<17}: {summary.completed}",
        f"Incomplete VEs   : {summary.incomplete}",
        f"No log file VEs  : {summary.no_log}",
        f"{summary.with_pid} VEs have a PID",
    ]
    # With --ve-poweroff a stopped VE is normal: tell a poweroff after success from a crash.
    if summary.poweroff:
        lines.append(f"Powered off VEs  : {summary.powered_off} (after their workload succeeded)")
        lines.append(f"Crashed VEs      : {summary.crashed} (stopped before their workload ended)")
    return lines


# The takedown's own steps are phases too, named "takedown STEP" (engine/takedown.py's
# TakedownReport.seconds): shown as one line under the takedown's total.
TAKEDOWN_STEP_PREFIX = "takedown "


def takedown_steps(timings: Mapping[str, float | None]) -> dict[str, float]:
    """The takedown's steps among `timings`, by step name, in the order run."""
    return {
        name.removeprefix(TAKEDOWN_STEP_PREFIX): seconds
        for name, seconds in timings.items()
        if name.startswith(TAKEDOWN_STEP_PREFIX) and seconds is not None
    }


def timings_lines(timings: dict[str, float], summary: Summary) -> list[str]:
    phases = {name: seconds for name, seconds in timings.items() if not name.startswith(TAKEDOWN_STEP_PREFIX)}
    lines = [f"{phase:<22}: {seconds:8.2f} s" for phase, seconds in phases.items()]
    steps = takedown_steps(timings)
    if steps:
        lines.append(f"{'  of it':<22}: " + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in steps.items()))
    stats = latency_stats(summary.start_latencies)
    if stats:
        lines.append(
            "start latency (ms)    : p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max:.1f}".format(
                **{k: v * 1000 for k, v in stats.items()}
            )
        )
    return lines


def median_timings(rounds: Sequence[Mapping[str, float | None]]) -> dict[str, float]:
    """Each phase's median over rounds (--ve-repeat) that measured it, in the phases' first order:
    a typical round's times, not their sum (every round sets up and takes down on its own)."""
    names = list(dict.fromkeys(name for phases in rounds for name in phases))
    found = {}
    for name in names:
        values = [phases[name] for phases in rounds if phases.get(name) is not None]
        if values:
            found[name] = statistics.median(values)
    return found


def round_line(number: int, first_build: str | None, summary: Summary | None, timings: Mapping[str, float]) -> str:
    """One round of --ve-repeat in one line: its counts, phase times and start latency p50 (shown 1-based)."""
    counts = f"{summary.completed} of {summary.total} completed" if summary else "no records"
    phases = [
        f"{label} {timings[name]:.2f} s"
        for name, label in (("start all", "start all"), ("complete all", "complete all"), ("takedown", "takedown"))
        if name in timings
    ]
    setup = sum(seconds for name, seconds in timings.items() if name.startswith("setup "))
    phases.insert(0, f"setup {setup:.2f} s")
    latency = latency_stats(summary.start_latencies) if summary else {}
    p50 = f", start p50 {latency['p50'] * 1000:.1f} ms" if latency else ""
    first = f" (first build {first_build})" if first_build else ""
    return f"  round {number + 1}{first}: {counts}; {', '.join(phases)}{p50}"
