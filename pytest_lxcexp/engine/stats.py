"""Per-VE records -> summary, percentiles and the original's Results block."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


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

    @property
    def name(self) -> str:
        return f"ve{self.index}"

    @property
    def completed(self) -> bool:
        return self.log_present and self.finished and self.pings >= self.expected_pings

    @property
    def failure(self) -> str | None:
        """Why this VE did not complete, in words, with the host limit behind it if known; None if it did."""
        plain = self._failure()
        return f"{plain}; {self.fault}" if plain is not None and self.fault else plain

    def _failure(self) -> str | None:
        if self.completed:
            return None
        if self.start_error:
            return f"failed to start: {self.start_error}"
        if not self.log_present:
            if self.state != "RUNNING":
                return f"no log, not running (state {self.state})"
            return "no log file"
        if self.finished:
            return f"incomplete: {self.pings} of {self.expected_pings} pings answered"
        if self.state != "RUNNING":
            return f"not running (state {self.state}) after {self.pings} of {self.expected_pings} pings"
        return f"incomplete: {self.pings} of {self.expected_pings} pings"

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

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("start_latencies")
        data["start_latency"] = latency_stats(self.start_latencies)
        return data


def summarize(records: Iterable[VERecord], disk_used: int = 0, root: str = "", expected_pings: int = 0) -> Summary:
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
    )


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in 0..1) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


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
    return [
        f"Disk Usage of VEs: {human_disk} {summary.root}",
        f"Total VEs        : {summary.total}",
        f"{f'{summary.expected_pings}-ping VEs':<17}: {summary.completed}",
        f"Incomplete VEs   : {summary.incomplete}",
        f"No log file VEs  : {summary.no_log}",
        f"{summary.with_pid} VEs have a PID",
    ]


def timings_lines(timings: dict[str, float], summary: Summary) -> list[str]:
    lines = [f"{phase:<22}: {seconds:8.2f} s" for phase, seconds in timings.items()]
    stats = latency_stats(summary.start_latencies)
    if stats:
        lines.append(
            "start latency (ms)    : p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {max:.1f}".format(
                **{k: v * 1000 for k, v in stats.items()}
            )
        )
    return lines
