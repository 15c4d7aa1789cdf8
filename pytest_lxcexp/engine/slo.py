"""Start-latency objectives (--ve-slo start_p99:500ms) and the steps of a ramp (--ve-count=max).

Stated the way Kubernetes states its pod start-up SLO: a percentile of start latency
that must stay at or under a duration. A ramp checks each objective on the starts of
each step, i.e. at the density that step reached. Pure functions: no host access.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import ConfigError
from .percentiles import percentile

# Metric -> the fraction of the sorted latencies it reads (max is the last one).
SLO_METRICS = {"start_p50": 0.50, "start_p90": 0.90, "start_p99": 0.99, "start_max": 1.0}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s)\s*")


@dataclass(frozen=True)
class Slo:
    """One objective: METRIC of the start latencies at most LIMIT seconds."""

    metric: str
    limit: float

    def __str__(self) -> str:
        return f"{self.metric}:{self.limit * 1000:g}ms"

    def measure(self, latencies: Sequence[float]) -> float | None:
        """The metric of these latencies (seconds), or None without any."""
        if not latencies:
            return None
        return percentile(sorted(latencies), SLO_METRICS[self.metric])

    def broken_by(self, latencies: Sequence[float]) -> float | None:
        """The measured value when it is over the limit, else None."""
        value = self.measure(latencies)
        return value if value is not None and value > self.limit else None


def parse_duration(option: str, text: str) -> float:
    """'500ms' or '1.5s' -> seconds; a unit is required (a bare 500 is ambiguous)."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ConfigError(option, f"{text.strip()!r} is not a duration (use ms or s, e.g. 500ms or 1.5s)")
    number, unit = float(match.group(1)), match.group(2)
    seconds = number / 1000 if unit == "ms" else number
    if seconds <= 0 or math.isinf(seconds):
        raise ConfigError(option, f"{text.strip()!r} must be more than zero")
    return seconds


def parse_slos(option: str, text: str) -> tuple[Slo, ...]:
    """'start_p99:500ms' or several, comma-separated: 'start_p50:100ms,start_p99:500ms'."""
    value = str(text).strip()
    if not value:
        return ()
    found: dict[str, Slo] = {}
    for part in value.split(","):
        metric, colon, limit = (word.strip() for word in part.partition(":"))
        if not colon:
            raise ConfigError(option, f"{part.strip()!r} is not METRIC:DURATION (e.g. start_p99:500ms)")
        if metric not in SLO_METRICS:
            raise ConfigError(option, f"{metric!r} is not one of {', '.join(SLO_METRICS)}")
        if metric in found:
            raise ConfigError(option, f"{metric} is given twice")
        found[metric] = Slo(metric, parse_duration(option, limit))
    return tuple(found.values())


def parse_growth(option: str, text: str | float) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a number") from None
    if math.isnan(value) or not 1.0 <= value <= 10.0:
        raise ConfigError(option, f"{text!r} must be between 1 (steps of one size) and 10")
    return value


def step_sizes(first_step: int, growth: float) -> Iterator[int]:
    """The planned size of each step of a ramp: `first_step` VEs, then each step `growth`
    times the one before (rounded, at least one VE); the ramp cuts them to its bound and
    to what the host has room for."""
    size = float(first_step)
    while True:
        yield max(1, round(size))
        size *= growth
