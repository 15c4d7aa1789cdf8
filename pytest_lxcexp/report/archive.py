"""The run archive (--ve-report-dir): one folder per run, and an index.html over all of them.

A run folder is named <UTC time>-lxc<version>-<host>, e.g. 20261126T231500Z-lxc5.0.2-builder,
so `ls` sorts runs by time and shows at a glance which liblxc each one ran.
"""

from __future__ import annotations

import datetime
import html
import os
import re
import tempfile
from dataclasses import dataclass

from .metrics import METRICS
from .results import Results, ResultsError, load_results

RESULTS_FILE = "results.json"
REPORT_FILE = "report.html"
INDEX_FILE = "index.html"
_RUN_NAME = re.compile(r"^\d{8}T\d{6}Z-")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_part(text: str | None, fallback: str = "unknown") -> str:
    cleaned = _UNSAFE.sub("-", text or "").strip("-.")
    return cleaned[:40] or fallback


def run_name(when: datetime.datetime, lxc_version: str | None, hostname: str) -> str:
    stamp = when.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-lxc{safe_part(lxc_version)}-{safe_part(hostname.split('.')[0], 'host')}"


def new_run_dir(report_dir: str, name: str) -> str:
    """A path for this run that no other run holds (two runs in one second get -2, -3, ...).

    The folder itself is created here, so a concurrent run cannot take the same name.
    """
    os.makedirs(report_dir, exist_ok=True)
    for attempt in range(1, 1000):
        path = os.path.join(report_dir, name if attempt == 1 else f"{name}-{attempt}")
        try:
            os.mkdir(path, 0o755)
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"{report_dir}: no free folder name for run {name}")


def remove_if_empty(path: str) -> bool:
    try:
        os.rmdir(path)
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class SavedRun:
    name: str
    path: str
    results: Results


def list_runs(report_dir: str) -> tuple[list[SavedRun], list[str]]:
    """Saved runs, oldest first, and a line for each folder that could not be read."""
    runs: list[SavedRun] = []
    skipped: list[str] = []
    try:
        names = sorted(os.listdir(report_dir))
    except FileNotFoundError:
        return [], []
    for name in names:
        path = os.path.join(report_dir, name)
        if not os.path.isdir(path) or not _RUN_NAME.match(name):
            continue
        results_path = os.path.join(path, RESULTS_FILE)
        if not os.path.exists(results_path):
            skipped.append(f"{name}: no {RESULTS_FILE} (the run ended before writing it)")
            continue
        try:
            runs.append(SavedRun(name, path, load_results(results_path)))
        except ResultsError as error:
            skipped.append(f"{name}: {error}")
    return runs, skipped


def latest_run(report_dir: str, exclude: str | None = None) -> str | None:
    """The newest run folder holding a results file (not `exclude`, this very run)."""
    try:
        names = sorted(os.listdir(report_dir), reverse=True)
    except FileNotFoundError:
        return None
    for name in names:
        path = os.path.join(report_dir, name)
        if exclude and os.path.abspath(path) == os.path.abspath(exclude):
            continue
        if _RUN_NAME.match(name) and os.path.isfile(os.path.join(path, RESULTS_FILE)):
            return path
    return None


INDEX_COLUMNS = ("completed", "start_p50", "start_p90", "start_all_s", "complete_all_s", "takedown_s", "memory_per_ve")
TREND_METRICS = (
    ("start latency (ms)", ("start_p50", "start_p90", "start_p99")),
    ("phases (s)", ("setup_s", "start_all_s", "complete_all_s", "takedown_s")),
    ("host memory per running VE (MiB)", ("memory_per_ve",)),
    ("VEs completed (% of total)", ("completed_pct",)),
)

NO_CHARTS = '<p class="note">No charts (no saved run yet, or matplotlib is missing).</p>'
INDEX_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 13px; color: #222; margin: 24px; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f5f7; } td.name, th.name { text-align: left; }
tr.bad td { background: #fdecea; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.charts figure { margin: 0; border: 1px solid #e3e6ea; padding: 6px; background: #fff; }
.charts figcaption { font-weight: bold; margin-bottom: 4px; }
.note { color: #666; }
"""


def _cell(run: SavedRun, name: str) -> str:
    metric = METRICS[name]
    return html.escape(metric.shown(metric.read(run.results)))


def index_html(
    report_dir: str,
    runs: list[SavedRun],
    skipped: list[str],
    charts: list[tuple[str, str]],
    with_report: set[str] | frozenset[str] = frozenset(),
) -> str:
    """The index page; `with_report` names runs whose report.html is about to be written."""
    e = html.escape
    rows = []
    for run in reversed(runs):  # newest first
        meta = run.results.get("metadata", {})
        summary = run.results.get("summary") or {}
        status = run.results.get("session", {}).get("exitstatus")
        total, completed = summary.get("total"), summary.get("completed")
        bad = status not in (0, None) or (total is not None and completed != total)
        started = meta.get("started_at")
        when = (
            datetime.datetime.fromtimestamp(started, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if started else ""
        )
        report = os.path.join(run.name, REPORT_FILE)
        has_report = run.name in with_report or os.path.exists(os.path.join(run.path, REPORT_FILE))
        links = f'<a href="{e(report)}">report</a>' if has_report else ""
        links += f' <a href="{e(os.path.join(run.name, RESULTS_FILE))}">json</a>'
        cells = [
            f'<td class="name">{e(run.name)}</td>',
            f'<td class="name">{e(when)}</td>',
            f"<td>{e(str((meta.get('lxc') or {}).get('version')))}</td>",
            f"<td>{e(str((meta.get('kernel') or {}).get('release')))}</td>",
            f'<td class="name">{e(str(meta.get("hostname")))}</td>',
            f"<td>{e(str(total))}</td>",
            *[f"<td>{_cell(run, name)}</td>" for name in INDEX_COLUMNS],
            f"<td>{e(str(status))}</td>",
            f'<td class="name">{links}</td>',
        ]
        rows.append(f'<tr class="{"bad" if bad else ""}">{"".join(cells)}</tr>')
    heads = ["run", "started", "liblxc", "kernel", "host", "VEs"]
    heads += [f"{METRICS[name].name} ({METRICS[name].unit})" for name in INDEX_COLUMNS]
    heads += ["exit", "files"]
    head = "".join(
        f'<th class="{"name" if i in (0, 1, 4, len(heads) - 1) else ""}">{e(h)}</th>' for i, h in enumerate(heads)
    )
    figures = "".join(f'<figure><img alt="{e(title)}" src="{uri}"></figure>' for title, uri in charts)
    notes = "".join(f"<li>{e(line)}</li>" for line in skipped)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>lxcexp runs in {e(report_dir)}</title>
<style>{INDEX_CSS}</style></head>
<body>
<h1>pytest-lxcexp runs</h1>
<p class="note">{len(runs)} runs in {e(os.path.abspath(report_dir))}, newest first. Rebuild with
<code>lxcexp report {e(report_dir)}</code>.</p>
<table id="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<h2>Trends, oldest to newest</h2>
<div class="charts" id="trends">{figures or NO_CHARTS}</div>
{f'<h2>Not listed</h2><ul class="note">{notes}</ul>' if notes else ""}
</body></html>
"""


def trend_series(runs: list[SavedRun]) -> list[tuple[str, dict[str, list[float | None]]]]:
    series = []
    for title, names in TREND_METRICS:
        lines: dict[str, list[float | None]] = {}
        for name in names:
            values: list[float | None] = []
            for run in runs:
                if name == "completed_pct":
                    summary = run.results.get("summary") or {}
                    total = summary.get("total")
                    values.append(100.0 * summary.get("completed", 0) / total if total else None)
                else:
                    metric = METRICS[name]
                    value = metric.read(run.results)
                    values.append(None if value is None else value * metric.scale)
            lines[name] = values
        series.append((title, lines))
    return series


def trend_label(run: SavedRun) -> str:
    """'11-26 23:15 lxc 5.0.2': when and which liblxc, short enough for an axis."""
    stamp = run.name.split("-")[0]
    when = f"{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}" if len(stamp) >= 13 else stamp
    version = ((run.results.get("metadata") or {}).get("lxc") or {}).get("version")
    return f"{when} lxc {version}"


def write_index(report_dir: str, with_report: set[str] | frozenset[str] = frozenset()) -> tuple[str, int, list[str]]:
    """(Re)build DIR/index.html; returns its path, the number of runs listed, and skipped folders."""
    from . import charts  # matplotlib only when an index is built

    runs, skipped = list_runs(report_dir)
    labels = [trend_label(run) for run in runs]
    drawn = charts.trend_charts(labels, trend_series(runs)) if runs else []
    text = index_html(report_dir, runs, skipped, drawn, with_report)
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".html", dir=report_dir)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        path = os.path.join(report_dir, INDEX_FILE)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path, len(runs), skipped
