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


def _complete_all(results: Results) -> float | None:
    """Only for a run whose every VE completed: otherwise 'all completed' never happened
    (files written before this rule may still hold the time the run gave up)."""
    summary = results.get("summary") or {}
    if not summary or summary.get("completed") != summary.get("total"):
        return None
    return _path("timings", "complete_all_s")(results)


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
        Metric("complete_all_s", "time until all completed", "s", 1, "higher", _complete_all),
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


@dataclass(frozen=True)
class VEMetric:
    """A figure every VE has one of (its start latency, a phase of its start, its memory):
    the samples a verdict tests. `field` is its key in results.json's per-VE records, or
    `phases.NAME` for a phase of its start (ves[].phases, engine/phases.py)."""

    name: str
    label: str
    unit: str
    scale: float
    worse: str
    field: str

    def value(self, ve: dict[str, Any]) -> float | None:
        """One VE's value; None where it has none (a VE that failed to start has no latency worth comparing)."""
        section, _, key = self.field.rpartition(".")
        value = (ve.get(section) or {}).get(key) if section else ve.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and not ve.get("start_error"):
            return float(value)
        return None

    def samples(self, ves: list[dict[str, Any]]) -> list[float]:
        """The VEs' values, where they have one."""
        return [value for value in map(self.value, ves) if value is not None]

    def shown(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        shown = value * self.scale
        return f"{shown:.2f}" if abs(shown) < 100 else f"{shown:.1f}"


# Phases of a start, in the order they happen (fields from --ve-lxc builds' runs; a run
# without them has start_latency only), and memory per VE where a run measured it per VE.
VE_METRICS: dict[str, VEMetric] = {
    metric.name: metric
    for metric in (
        VEMetric("start_latency", "start latency (its lxc-start -d)", "ms", 1000, "higher", "start_latency"),
        VEMetric("lxc_start_returned", "lxc-start returned", "ms", 1000, "higher", "phases.lxc_start_returned"),
        VEMetric("running", "RUNNING", "ms", 1000, "higher", "phases.running"),
        VEMetric("workload_began", "workload began", "ms", 1000, "higher", "phases.workload_began"),
        VEMetric("first_ping", "first ping answered", "ms", 1000, "higher", "phases.first_ping"),
        VEMetric("monitor_pss", "its monitor's PSS", "MiB", MIB, "higher", "monitor_pss"),
        VEMetric("cgroup_memory", "charged to its cgroups", "MiB", MIB, "higher", "cgroup_memory"),
    )
}

# Per-VE outcomes: a VE is bad in this way when the predicate holds.
OUTCOMES: dict[str, Callable[[dict[str, Any]], bool]] = {
    "completed": lambda ve: not ve.get("completed"),
    "failed_to_start": lambda ve: ve.get("start_error") is not None,
    "no_log": lambda ve: not ve.get("log_present"),
    "incomplete": lambda ve: bool(ve.get("log_present")) and not ve.get("completed"),
}

# One value per run: compared without a test (see report/verdict.py's compare_values).
RUN_VALUES = (
    "setup_s",
    "start_all_s",
    "complete_all_s",
    "takedown_s",
    "memory_per_ve",
    "cgroup_memory_per_ve",
    "disk_per_ve",
    "ramp_reached",
)

# Older rule names for the start latency's percentiles: a verdict is on the whole
# distribution of per-VE latencies, so they all name that one verdict.
ALIASES = {name: "start_latency" for name in ("start_p50", "start_p90", "start_p99", "start_max", "start_mean")}
