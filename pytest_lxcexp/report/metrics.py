"""The key figures of a run, by name: what compare, --ve-compare-fail and the index trend on.

Each figure is read from the results file's sections (not from a stored copy), so a
figure added later can still be read from older files that hold the raw numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Results = dict[str, Any]


def _path(*keys: str) -> Callable[[Results], float | None]:
    def read(results: Results) -> float | None:
        value: Any = results
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

    return read


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    unit: str
    scale: float  # stored value x scale = shown value (seconds -> ms, bytes -> MiB)
    worse: str  # "higher" or "lower": which direction is a regression
    read: Callable[[Results], float | None]

    def shown(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        shown = value * self.scale
        if self.unit == "VEs":
            return f"{shown:.0f}"
        return f"{shown:.2f}" if abs(shown) < 100 else f"{shown:.1f}"


MIB = 1 / 1024**2
KIB = 1 / 1024

METRICS: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("completed", "VEs completed", "VEs", 1, "lower", _path("summary", "completed")),
        Metric("incomplete", "VEs incomplete", "VEs", 1, "higher", _path("summary", "incomplete")),
        Metric("no_log", "VEs without a log", "VEs", 1, "higher", _path("summary", "no_log")),
        Metric("failed_to_start", "VEs failed to start", "VEs", 1, "higher", _path("summary", "failed_to_start")),
        Metric("start_p50", "start latency p50", "ms", 1000, "higher", _path("timings", "start_latency", "p50")),
        Metric("start_p90", "start latency p90", "ms", 1000, "higher", _path("timings", "start_latency", "p90")),
        Metric("start_p99", "start latency p99", "ms", 1000, "higher", _path("timings", "start_latency", "p99")),
        Metric("start_max", "start latency max", "ms", 1000, "higher", _path("timings", "start_latency", "max")),
        Metric("start_mean", "start latency mean", "ms", 1000, "higher", _path("timings", "start_latency", "mean")),
        Metric("setup_s", "setup (tmpfs, base, network, clones)", "s", 1, "higher", _path("timings", "setup_s")),
        Metric("start_all_s", "time until all started", "s", 1, "higher", _path("timings", "start_all_s")),
        Metric("complete_all_s", "time until all completed", "s", 1, "higher", _path("timings", "complete_all_s")),
        Metric("takedown_s", "takedown", "s", 1, "higher", _path("timings", "takedown_s")),
        Metric(
            "memory_per_ve", "host memory per running VE", "MiB", MIB, "higher", _path("resources", "memory_per_ve")
        ),
        Metric(
            "cgroup_memory_per_ve",
            "memory charged to the experiment's memory cgroup per VE",
            "MiB",
            MIB,
            "higher",
            _path("resources", "cgroup_memory_per_ve"),
        ),
        Metric("disk_per_ve", "disk per VE on the tmpfs", "KiB", KIB, "higher", _path("resources", "disk_per_ve")),
        Metric("ramp_reached", "VEs running when the ramp stopped", "VEs", 1, "lower", _path("ramp", "reached")),
    )
}


def key_figures(results: Results) -> dict[str, float | None]:
    """Every metric of one run, in stored units (seconds, bytes, counts)."""
    return {name: metric.read(results) for name, metric in METRICS.items()}
