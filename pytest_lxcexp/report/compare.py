"""Hold one run against an earlier one: which figures changed, by how much, and which regressed.

Model: pytest-benchmark's --benchmark-compare / --benchmark-compare-fail. A change is
(now - before) / before; "worse" turns it so that a positive number is always bad
(a higher start latency, fewer completed VEs), and METRIC:N% fails when worse > N.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from .archive import RESULTS_FILE, latest_run
from .metrics import METRICS, Metric
from .results import Results, ResultsError, load_results

# Options that name things (paths, interfaces) or housekeeping: they differ between runs
# without changing what is measured, so they do not make two runs incomparable.
# ve_first/ve_last: which of the run's VEs one host ran (a run over several hosts).
NAMING_OPTIONS = frozenset(
    {"root", "bridge", "subnet", "base_cache", "base_refresh", "keep", "timeout", "ve_first", "ve_last"}
)
SHOWN_METRICS = (
    "completed",
    "failed_to_start",
    "no_log",
    "incomplete",
    "start_p50",
    "start_p90",
    "start_p99",
    "start_max",
    "setup_s",
    "start_all_s",
    "complete_all_s",
    "takedown_s",
    "memory_per_ve",
    "cgroup_memory_per_ve",
    "disk_per_ve",
)


class CompareError(ValueError):
    """A bad --ve-compare / --ve-compare-fail value; the message says why."""


@dataclass(frozen=True)
class FailRule:
    metric: str
    percent: float

    def __str__(self) -> str:
        return f"{self.metric}:{self.percent:g}%"


_RULE = re.compile(r"^\s*([a-z0-9_]+)\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")


def parse_fail_rule(text: str) -> FailRule:
    """'start_p90:10%' -> FailRule('start_p90', 10.0)."""
    match = _RULE.match(text)
    if not match:
        raise CompareError(f"{text!r} is not METRIC:N% (for instance start_p90:10% or completed:0%)")
    name, number = match.groups()
    if name not in METRICS:
        raise CompareError(f"{text!r}: unknown metric {name!r}; known: {', '.join(METRICS)}")
    return FailRule(name, float(number))


def parse_fail_rules(texts: list[str]) -> list[FailRule]:
    rules = []
    for text in texts:
        # "a:1%,b:2%" is accepted as well as repeating the option.
        rules += [parse_fail_rule(part) for part in text.split(",") if part.strip()]
    return rules


def resolve_ref(ref: str, report_dir: str | None, exclude: str | None = None) -> str:
    """REF (a results.json, a run folder, a run name in the report dir, or 'latest') -> a results.json path."""
    if ref == "latest":
        if not report_dir:
            raise CompareError("'latest' needs --ve-report-dir (the archive to take the latest run from)")
        run = latest_run(report_dir, exclude=exclude)
        if run is None:
            raise CompareError(f"'latest': {report_dir} holds no saved run yet")
        return os.path.join(run, RESULTS_FILE)
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


def load_ref(ref: str, report_dir: str | None, exclude: str | None = None) -> tuple[str, Results]:
    path = resolve_ref(ref, report_dir, exclude)
    try:
        return path, load_results(path)
    except ResultsError as error:
        raise CompareError(str(error)) from None


def change_percent(before: float, now: float) -> float:
    """Relative change in percent; from zero, any change is infinitely large."""
    if before == now:
        return 0.0
    if before == 0:
        return math.copysign(math.inf, now)
    return (now - before) / abs(before) * 100.0


def worse_percent(metric: Metric, before: float, now: float) -> float:
    """The change, signed so that positive is a regression for this metric."""
    change = change_percent(before, now)
    return change if metric.worse == "higher" else -change


@dataclass(frozen=True)
class Row:
    metric: Metric
    before: float | None
    now: float | None

    @property
    def change(self) -> float | None:
        if self.before is None or self.now is None:
            return None
        return change_percent(self.before, self.now)

    @property
    def worse(self) -> float | None:
        if self.before is None or self.now is None:
            return None
        return worse_percent(self.metric, self.before, self.now)

    def change_text(self) -> str:
        change, worse = self.change, self.worse
        if change is None or worse is None:
            return "n/a"
        if change == 0:
            return "same"
        amount = "+inf%" if math.isinf(change) and change > 0 else "-inf%" if math.isinf(change) else f"{change:+.1f}%"
        return f"{amount} {'worse' if worse > 0 else 'better'}"


@dataclass(frozen=True)
class Regression:
    rule: FailRule
    row: Row

    def __str__(self) -> str:
        worse = self.row.worse
        amount = "infinitely" if worse is not None and math.isinf(worse) else f"{worse:.1f}%"
        metric = self.row.metric
        return (
            f"{metric.name} is {amount} worse than before ({metric.shown(self.row.before)} -> "
            f"{metric.shown(self.row.now)} {metric.unit}; limit {self.rule.percent:g}%)"
        )


@dataclass(frozen=True)
class Comparison:
    before_label: str
    now_label: str
    before: Results
    now: Results
    rows: list[Row]
    warnings: list[str]

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.metric.name == name)


def _meta(results: Results, *keys: str) -> Any:
    value: Any = results.get("metadata", {})
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def differences(before: Results, now: Results) -> list[str]:
    """Why two runs may not be comparable: another host, or options that shape the experiment."""
    found = []
    host_keys = [("hostname",), ("cpu", "model"), ("cpu", "count"), ("memory_total",)]
    host = [
        f"{'.'.join(keys)} {_meta(before, *keys)} -> {_meta(now, *keys)}"
        for keys in host_keys
        if _meta(before, *keys) != _meta(now, *keys)
    ]
    if host:
        found.append("the runs are from different hosts: " + ", ".join(host))
    old, new = _meta(before, "options") or {}, _meta(now, "options") or {}
    options = [
        f"{key} {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in NAMING_OPTIONS and old.get(key) != new.get(key)
    ]
    if options:
        found.append("the runs used different options: " + ", ".join(options))
    return found


def run_label(results: Results) -> str:
    lxc = _meta(results, "lxc", "version") or "?"
    kernel = _meta(results, "kernel", "release") or "?"
    return f"{results.get('run_id', '?')} (liblxc {lxc}, kernel {kernel}, host {_meta(results, 'hostname')})"


def compare(before: Results, now: Results, metrics: tuple[str, ...] = SHOWN_METRICS) -> Comparison:
    rows = [Row(METRICS[name], METRICS[name].read(before), METRICS[name].read(now)) for name in metrics]
    return Comparison(run_label(before), run_label(now), before, now, rows, differences(before, now))


def regressions(comparison: Comparison, rules: list[FailRule]) -> list[Regression]:
    found = []
    for rule in rules:
        metric = METRICS[rule.metric]
        row = next((r for r in comparison.rows if r.metric.name == rule.metric), None)
        if row is None:
            row = Row(metric, metric.read(comparison.before), metric.read(comparison.now))
        worse = row.worse
        if worse is not None and worse > rule.percent:
            found.append(Regression(rule, row))
    return found


def missing_for_rules(comparison: Comparison, rules: list[FailRule]) -> list[str]:
    """Rules that could not be checked because one run lacks the figure."""
    missing = []
    for rule in rules:
        metric = METRICS[rule.metric]
        if metric.read(comparison.before) is None or metric.read(comparison.now) is None:
            missing.append(f"{rule}: {rule.metric} is missing in one of the runs; not checked")
    return missing


def table_lines(comparison: Comparison) -> list[str]:
    """The comparison as fixed-width text: metric, before, now, change."""
    lines = [f"before: {comparison.before_label}", f"now   : {comparison.now_label}"]
    lines += [f"WARNING: {warning}" for warning in comparison.warnings]
    lines.append(f"{'metric':<34} {'before':>10} {'now':>10}  change")
    for row in comparison.rows:
        label = f"{row.metric.name} ({row.metric.unit})"
        lines.append(
            f"{label:<34} {row.metric.shown(row.before):>10} {row.metric.shown(row.now):>10}  {row.change_text()}"
        )
    return lines
