"""Charts as PNG data URIs (matplotlib, Agg), so a report is one file that stands alone.

Figures are drawn on matplotlib.figure.Figure with an Agg canvas, never through pyplot:
no global backend switch in the user's process, no window, no state between charts.
"""

from __future__ import annotations

import base64
import bisect
import io
import statistics
from typing import Any

from ..engine.slo import parse_slos

COLORS = {"started": "#1f77b4", "running": "#2ca02c", "completed": "#ff7f0e", "memory": "#9467bd", "cgroup": "#8c564b"}
MIB = 1024**2


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float = 5.4, height: float = 3.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _style(axes: Any) -> None:
    axes.grid(True, color="#e5e5e5", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def latency_histogram(latencies: list[float], stats: dict[str, float]) -> str | None:
    """Start latency distribution in ms, with p50/p90/p99 marked."""
    if not latencies or not available():
        return None
    figure = _figure()
    axes = figure.add_subplot()
    values = [value * 1000 for value in latencies]
    axes.hist(values, bins=min(40, max(5, len(values) // 5)), color="#4c78a8", edgecolor="white")
    for key, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        if key in stats:
            axes.axvline(stats[key] * 1000, color="#d62728", linestyle=style, label=f"{key} {stats[key] * 1000:.1f} ms")
    axes.set_xlabel("start latency (ms)")
    axes.set_ylabel("VEs")
    axes.set_title(f"Start latency of {len(values)} VEs")
    axes.legend(frameon=False)
    _style(axes)
    return _data_uri(figure)


def ecdf_chart(series: list[tuple[str, list[float]]], title: str = "Start latency, per side") -> str | None:
    """Overlaid empirical CDFs in ms, one line per build or run: a shift shows as one curve
    right of the other, a tail as curves parting near the top."""
    drawn = [(label, sorted(value * 1000 for value in values)) for label, values in series if values]
    if not drawn or not available():
        return None
    figure = _figure(4.4, 3.0)  # narrow enough to sit beside the verdict table
    axes = figure.add_subplot()
    for label, values in drawn:
        fractions = [(rank + 1) / len(values) for rank in range(len(values))]
        axes.step(values, fractions, where="post", linewidth=1.6, label=f"{label} ({len(values)} VEs)")
    axes.set_xlabel("start latency (ms)")
    axes.set_ylabel("fraction of VEs started")
    axes.set_ylim(0, 1.02)
    axes.set_title(title)
    figure.legend(frameon=False, loc="outside lower center", ncols=1, fontsize=8)
    _style(axes)
    return _data_uri(figure)


def _cumulative(
    times: list[float], end: float, rounds: list[int] | None = None, round_begins: dict[int, float] | None = None
) -> tuple[list[float], list[int]]:
    """A count that rises by one at each time: the x and y of a step line, from 0 to `end`.
    With rounds (--ve-repeat; one per time), the count starts again from 0 as each round begins."""
    rounds = rounds if rounds is not None else [0] * len(times)
    round_begins = round_begins or {}
    xs, ys = [0.0], [0]
    count, current = 0, None
    for at, number in sorted(zip(times, rounds, strict=True)):
        if number != current:
            if current is not None:
                xs.append(min(round_begins.get(number, at), at))
                ys.append(0)
            current, count = number, 0
        count += 1
        xs.append(at)
        ys.append(count)
    xs.append(max(end, xs[-1]))
    ys.append(ys[-1])
    return xs, ys


def timeline_chart(timeline: dict[str, Any], ves: list[dict[str, Any]]) -> str | None:
    """VEs started, running and completed over the session, one chart.

    Started and completed are drawn at each VE's own times (exact), running at the samples.
    """
    t = timeline.get("t") or []
    if len(t) < 2 or not available():
        return None
    t0 = timeline.get("t0") or 0.0
    up = [ve for ve in ves if ve.get("started_at") is not None and not ve.get("start_error")]
    started = [ve["started_at"] + (ve.get("start_latency") or 0.0) - t0 for ve in up]
    done = [ve for ve in ves if ve.get("completed_at") is not None]
    completed = [ve["completed_at"] - t0 for ve in done]
    # --ve-repeat: started and completed count the VEs of the round going on.
    begins: dict[int, float] = {}
    for at, number in zip(t, timeline.get("round") or [0] * len(t), strict=True):
        begins.setdefault(number, at)
    up_rounds = [ve.get("round") or 0 for ve in up]
    done_rounds = [ve.get("round") or 0 for ve in done]
    figure = _figure()
    axes = figure.add_subplot()
    axes.step(
        *_cumulative(started, t[-1], up_rounds, begins),
        where="post",
        label="started",
        color=COLORS["started"],
        linewidth=1.8,
    )
    axes.step(
        t,
        timeline["running"],
        where="post",
        label="running (sampled)",
        color=COLORS["running"],
        linewidth=1.8,
        marker=".",
        markersize=5,
    )
    axes.step(
        *_cumulative(completed, t[-1], done_rounds, begins),
        where="post",
        label="completed",
        color=COLORS["completed"],
        linewidth=1.8,
    )
    axes.set_xlabel("seconds since the session began")
    axes.set_ylabel("VEs")
    axes.set_title("VEs started / running / completed")
    axes.set_ylim(bottom=0)
    figure.legend(frameon=False, loc="outside lower center", ncols=3, fontsize=8)
    _style(axes)
    return _data_uri(figure)


def memory_chart(timeline: dict[str, Any]) -> str | None:
    """Host memory in use (MemTotal - MemAvailable) over the session, and what the experiment's memory cgroup holds.

    The host line is drawn above its level at the first sample: the growth is what the VEs cost,
    and on the same scale as the cgroup line.
    """
    t = timeline.get("t") or []
    if len(t) < 2 or not available():
        return None
    figure = _figure()
    axes = figure.add_subplot()
    used = timeline["memory_used"]
    axes.plot(
        t,
        [(u - used[0]) / MIB for u in used],
        color=COLORS["memory"],
        marker=".",
        markersize=4,
        label=f"host, above its {used[0] / MIB:.0f} MiB at the start",
    )
    cgroup = timeline.get("cgroup_memory") or []
    if any(value is not None for value in cgroup):
        axes.plot(
            t,
            [value / MIB if value is not None else float("nan") for value in cgroup],
            color=COLORS["cgroup"],
            linestyle="--",
            label="charged to the experiment's memory cgroup",
        )
    axes.set_xlabel("seconds since the session began")
    axes.set_ylabel("MiB")
    axes.set_title("Memory over time")
    axes.axhline(0, color="#999", linewidth=0.8)
    figure.legend(frameon=False, loc="outside lower center", ncols=2, fontsize=8)
    _style(axes)
    return _data_uri(figure)


def running_at_start(ves: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(VEs running when it started, start latency) for each VE that started: running counts
    the VEs of its round (--ve-repeat) whose own start had finished before this one began."""
    started = [
        (ve["started_at"], ve["started_at"] + ve["start_latency"], ve["start_latency"], ve.get("round") or 0)
        for ve in ves
        if ve.get("started_at") is not None and ve.get("start_latency") is not None and not ve.get("start_error")
    ]
    ends: dict[int, list[float]] = {}
    for _, end, _, number in started:
        ends.setdefault(number, []).append(end)
    for values in ends.values():
        values.sort()
    points = []
    for began, _, latency, number in sorted(started):
        points.append((bisect.bisect_right(ends[number], began), latency))
    return points


def latency_by_running_chart(ves: list[dict[str, Any]]) -> str | None:
    """Start latency against the number of VEs already running: does a start cost more as the host fills?"""
    points = running_at_start(ves)
    if len(points) < 2 or not available():
        return None
    figure = _figure()
    axes = figure.add_subplot()
    axes.scatter([p[0] for p in points], [p[1] * 1000 for p in points], s=6, alpha=0.5, color="#4c78a8", label="a VE")
    # The median of each tenth of the run: the trend through the scatter.
    tenth = max(1, len(points) // 10)
    ordered = sorted(points)
    trend = [ordered[i : i + tenth] for i in range(0, len(ordered), tenth)]
    axes.plot(
        [statistics.median(p[0] for p in chunk) for chunk in trend],
        [statistics.median(p[1] for p in chunk) * 1000 for chunk in trend],
        color="#d62728",
        marker="o",
        markersize=3,
        label="median",
    )
    axes.set_xlabel("VEs running when the start began")
    axes.set_ylabel("start latency (ms)")
    axes.set_title("Start latency against VEs running")
    axes.set_ylim(bottom=0)
    axes.legend(frameon=False, fontsize=8)
    _style(axes)
    return _data_uri(figure)


def _finish_against_running(figure: Any, axes: Any, title: str, ylabel: str, legend: bool = True) -> str:
    axes.set_xlabel("VEs running")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.set_ylim(bottom=0)
    if legend:
        axes.legend(frameon=False, fontsize=8)
    _style(axes)
    return _data_uri(figure)


def ramp_charts(ramp: dict[str, Any]) -> list[tuple[str, str]]:
    """A ramp's curves against the VEs running after each step: start latency (with the
    objectives), memory per VE, processes."""
    points = ramp.get("points") or []
    if not points or not available():
        return []
    running = [p["running"] for p in points]
    drawn = []
    figure = _figure()
    axes = figure.add_subplot()
    for key, style in (("p50", "-"), ("p99", "--")):
        latencies = [(p["latency"].get(key) or float("nan")) * 1000 for p in points]
        axes.plot(running, latencies, linestyle=style, marker="o", markersize=4, label=f"start {key} of the step")
    for slo in parse_slos("slo", ",".join(ramp.get("slo") or [])):
        axes.axhline(slo.limit * 1000, color="#d62728", linewidth=0.9, label=f"objective {slo}")
    drawn.append(("ramp: start latency", _finish_against_running(figure, axes, "Ramp: start latency", "ms")))
    figure = _figure()
    axes = figure.add_subplot()
    host = [(p["memory_per_ve"] or float("nan")) / MIB for p in points]
    axes.plot(running, host, marker="o", markersize=4, color=COLORS["memory"], label="host memory in use, growth / VEs")
    charged = [
        p["cgroup_memory"] / p["running"] / MIB if p.get("cgroup_memory") and p["running"] else float("nan")
        for p in points
    ]  # noqa: E501
    axes.plot(
        running,
        charged,
        marker=".",
        linestyle="--",
        color=COLORS["cgroup"],
        label="charged to the experiment's cgroups / VEs",
    )
    drawn.append(("ramp: memory per VE", _finish_against_running(figure, axes, "Ramp: memory per VE", "MiB per VE")))
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot(running, [p.get("processes") or float("nan") for p in points], marker="o", markersize=4)
    processes = _finish_against_running(figure, axes, "Ramp: processes", "processes (VEs and monitors)", legend=False)
    drawn.append(("ramp: processes", processes))
    return drawn


def trend_charts(labels: list[str], series: list[tuple[str, dict[str, list[float | None]]]]) -> list[tuple[str, str]]:
    """One small line chart per group of key figures, runs oldest to newest."""
    if not labels or not available():
        return []
    drawn = []
    positions = list(range(len(labels)))
    for title, lines in series:
        if not any(value is not None for values in lines.values() for value in values):
            continue
        figure = _figure(4.6, 2.6)
        axes = figure.add_subplot()
        for name, values in lines.items():
            axes.plot(
                positions,
                [float("nan") if value is None else value for value in values],
                marker="o",
                markersize=4,
                label=name,
            )
        axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize=6)
        if len(labels) > 12:  # keep the axis readable: label every n-th run
            step = len(labels) // 12 + 1
            for index, tick in enumerate(axes.get_xticklabels()):
                tick.set_visible(index % step == 0)
        axes.set_title(title)
        if len(lines) > 1:
            axes.legend(frameon=False, fontsize=7)
        _style(axes)
        drawn.append((title, _data_uri(figure)))
    return drawn
