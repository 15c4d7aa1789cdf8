"""The experiment in pytest-html's report: Results block, comparison, timings, charts, failed VEs, metadata.

Everything here is plain HTML strings for pytest_html_results_summary; every piece of
text that comes from the run (reasons, log tails, host names) goes through html.escape.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Callable
from typing import Any

import pytest

from ..engine.stats import TAKEDOWN_STEP_PREFIX, Summary, results_block, takedown_steps
from ..engine.storage import human_size
from . import charts
from .compare import (
    ACROSS_RUNS_NOTE,
    PAIRED_NOTE,
    Comparison,
    Regression,
    build_groups,
    cells,
    control_text,
    started_by,
)
from .metrics import METRICS, VE_METRICS
from .outcome import Finished
from .results import Results
from .verdict import ALPHA

FAILED_VES_SHOWN = 50
e = html.escape

CSS = """
.lxcexp { color: #222; font-size: 13px; margin: 8px 0 20px; }
.lxcexp h3 { font-size: 15px; margin: 18px 0 6px; color: #111; }
.lxcexp table { border-collapse: collapse; margin: 4px 0; }
.lxcexp th, .lxcexp td { border: 1px solid #dde1e5; padding: 3px 8px; text-align: right; }
.lxcexp th { background: #f3f5f7; } .lxcexp td.k, .lxcexp th.k { text-align: left; }
.lxcexp tr.step td { color: #555; }
.lxcexp .control { color: #444; max-width: 60em; }
.lxcexp pre { background: #f7f7f9; border: 1px solid #e3e6ea; padding: 8px; margin: 4px 0; color: #111;
  white-space: pre-wrap; font-size: 12px; }
.lxcexp .cards { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.lxcexp .charts figure { margin: 0; border: 1px solid #e3e6ea; padding: 4px; background: #fff; }
.lxcexp .worse { color: #b3261e; font-weight: bold; } .lxcexp .better { color: #1b7f3a; }
.lxcexp .warn { color: #8a5300; } .lxcexp .bad { color: #b3261e; font-weight: bold; }
.lxcexp .ok { color: #1b7f3a; font-weight: bold; }
.lxcexp-headline { color: #222; font-size: 14px; }
#lxcexp-builds td { max-width: 28em; overflow-wrap: anywhere; }
"""


def _fmt_time(epoch: float | None) -> str:
    if not epoch:
        return "-"
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _in_rounds(results: Results) -> str:
    rounds = len(results.get("rounds") or [])
    return f" in {rounds} rounds" if rounds > 1 else ""


def headline(finished: Finished) -> str:
    """One line at the top of pytest-html's summary."""
    results = finished.results or {}
    summary = results.get("summary")
    if summary:
        ok = summary["completed"] == summary["total"]
        verdict = (
            f'<span class="{"ok" if ok else "bad"}">{summary["completed"]} of {summary["total"]} VEs completed '
            f"their {summary['expected_pings']} pings{_in_rounds(results)}</span>"
        )
    else:
        verdict = '<span class="bad">the experiment did not run</span>'
    # The LXC that started the VEs: the --ve-lxc builds, not the liblxc the tool loaded.
    parts = [f"lxcexp: {verdict}", e(started_by(results)), f"run {e(str(results.get('run_id')))}"]
    if finished.comparisons:
        tested = [v for c in finished.comparisons for v in c.verdicts if v.p_value is not None]
        worse = sum(v.verdict == "worse" for v in tested)
        # Each tested verdict is "worse" by chance at most ALPHA of the time: say how many
        # that makes, so one red verdict among many is read for what it may be.
        chance = f" of {len(tested)} tested (by chance at most {len(tested) * ALPHA:.2f} expected)"
        parts.append(
            f'<span class="bad">{len(finished.regressions)} regression(s)</span>'
            if finished.regressions
            else f'<span class="{"bad" if worse else "ok"}">{worse} "worse" verdict(s){chance}</span>'
        )
    return f'<p class="lxcexp-headline" id="lxcexp-headline">{" · ".join(parts)}</p>'


def results_section(results: Results) -> str:
    summary = results.get("summary")
    if not summary:
        return "<h3>Results</h3><p class='bad'>No results: the experiment was not set up.</p>"
    fields = {k: v for k, v in summary.items() if k in Summary.__dataclass_fields__}
    block = ["Results", *results_block(Summary(**fields), human_size(summary.get("disk_used") or 0))]
    return f'<h3>Results</h3><pre id="lxcexp-results">{e(chr(10).join(block))}</pre>'


VERDICT_COLUMNS = (
    ("metric", "metric"),
    ("baseline", "baseline median"),
    ("candidate", "candidate median"),
    ("shift", "shift"),
    ("ci", "95% CI"),
    ("p", "p-value"),
    ("verdict", "verdict"),
)
VERDICT_CSS = {"worse": "worse", "better": "better", "same": "", "can't tell": "warn"}


def verdict_table(comparison: Comparison) -> str:
    head = "".join(f'<th class="{"k" if key == "metric" else ""}">{e(title)}</th>' for key, title in VERDICT_COLUMNS)
    rows = []
    for verdict in comparison.verdicts:
        shown = cells(verdict)
        css = VERDICT_CSS.get(verdict.verdict, "")
        row = "".join(
            f'<td class="{"k" if key == "metric" else css if key == "verdict" else ""}"'
            + (f' title="{e(verdict.reason)}"' if key == "verdict" else "")
            + f">{e(shown[key])}</td>"
            for key, _ in VERDICT_COLUMNS
        )
        rows.append(f"<tr>{row}</tr>")
    return f'<table class="verdicts"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _side_samples(results: Results, reference: Results | None, comparison: Comparison) -> list[tuple[str, list[float]]]:
    """Start latencies of each side: the builds of this run, or the two runs."""
    latency = VE_METRICS["start_latency"]
    if comparison.kind == "runs" and reference is not None:
        return [("before", latency.samples(reference.get("ves", []))), ("now", latency.samples(results.get("ves", [])))]
    return [(f"build {group.name}", latency.samples(group.ves)) for group in build_groups(results)]


# What a reader needs of each build, in this order; the rest (paths, proofs in full) is in results.json.
BUILD_COLUMNS = (
    ("name", "build"),
    ("version", "version"),
    ("git_describe", "git describe"),
    ("commit", "commit"),
    ("sha256", "liblxc sha256"),
    ("prefix", "prefix"),
    ("preload", "preload"),
    ("proofs", "proven"),
)


def _proven(build: dict[str, Any]) -> str:
    """Whether the VE each part of the run proved the build on (the first it started) ran the
    build's own liblxc, and in which cgroups."""
    proofs = build.get("proofs") or ([build["proof"]] if build.get("proof") else [])
    if not proofs:
        return "no VE started"
    failed = [proof for proof in proofs if not proof.get("ok")]
    if failed:
        return f"differs on {failed[0].get('ve')}: {failed[0].get('differs')}"
    cgroups = ", ".join(c or "unified" for c in proofs[0].get("cgroups") or [])
    return f"ok on {', '.join(str(proof.get('ve')) for proof in proofs)}; cgroups {cgroups or '-'}"


def _build_cell(build: dict[str, Any], key: str) -> str:
    if key == "proofs":
        return _proven(build)
    value = build.get(key)
    if value is None:
        return ""
    text = str(value)
    return text[:12] if key in ("commit", "sha256") else text


def builds_table(results: Results) -> str:
    """What each build was, as the run recorded it (--ve-lxc): one row per build."""
    builds = results.get("metadata", {}).get("builds") or []
    if not builds:
        return ""
    keys = [(key, title) for key, title in BUILD_COLUMNS if any(_build_cell(b, key) for b in builds)]
    head = "".join(f'<th class="k">{e(title)}</th>' for _, title in keys)
    rows = "".join(
        "<tr>" + "".join(f'<td class="k">{e(_build_cell(build, key))}</td>' for key, _ in keys) + "</tr>"
        for build in builds
    )
    return f'<table id="lxcexp-builds"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def comparison_section(
    results: Results,
    reference: Results | None,
    comparisons: list[Comparison],
    regressions: list[Regression],
    notes: list[str],
) -> str:
    """Per comparison, side by side: the overlaid ECDF of start latency and the verdict table."""
    blocks = []
    drawn_builds = False
    for comparison in comparisons:
        chart = ""
        if comparison.kind == "runs" or not drawn_builds:  # one chart holds every build of the run
            uri = charts.ecdf_chart(_side_samples(results, reference, comparison)) if charts.available() else None
            chart = f'<figure><img alt="start latency ECDF" src="{uri}"></figure>' if uri else ""
            drawn_builds = drawn_builds or comparison.kind == "builds"
        warnings = "".join(f'<p class="warn">Warning: {e(w)}</p>' for w in comparison.warnings)
        sides = f"<p>baseline: {e(comparison.before_label)}<br>candidate: {e(comparison.now_label)}</p>"
        if comparison.kind == "runs":
            sides += f'<p class="warn">{e(ACROSS_RUNS_NOTE)}</p>'
        elif comparison.kind == "builds":
            sides += f"<p>{e(PAIRED_NOTE)}</p>"

        control = ""
        if comparison.control is not None:  # how far this run can be trusted, beside what it says
            control = f'<p class="control">A/A control: {e(control_text(comparison.control))}</p>'
        # The sides' names above; the chart beside its table (long names would push the table under it).
        table = verdict_table(comparison) + control
        blocks.append(f'{sides}{warnings}<div class="cards charts">{chart}<div>{table}</div></div>')
    verdicts = "".join(f'<p class="bad">Regression: {e(str(r))}</p>' for r in regressions)
    verdicts += "".join(f'<p class="warn">{e(note)}</p>' for note in notes)
    method = (
        "<p>Verdicts: builds of one run pair by pair (the VEs started side by side): Wilcoxon signed-rank, "
        "the paired Hodges-Lehmann shift and its 95% CI (the shifts the test does not reject); two runs: "
        "Mann-Whitney U on the per-VE values, the Hodges-Lehmann shift and its 95% CI the same way; "
        "worse/better when p &lt;= 0.01 and the shift is beyond the minimum effect, same when the CI lies inside "
        "it, else can't tell. Outcomes: McNemar's exact test on the places bad on one side only (one run), "
        "Fisher's exact test on the counts (two runs); each place fine on the baseline and bad on the candidate "
        "is named. See docs/verdicts.md.</p>"
    )
    return f'<h3>Verdicts</h3><div id="lxcexp-compare">{builds_table(results)}{"".join(blocks)}{verdicts}{method}</div>'


def timings_section(results: Results) -> str:
    timings = results.get("timings") or {}
    all_phases = timings.get("phases") or {}
    rows = [
        f'<tr><td class="k">{e(name)}</td><td>{seconds:.2f}</td></tr>'
        for name, seconds in all_phases.items()
        if seconds is not None and not name.startswith(TAKEDOWN_STEP_PREFIX)
    ]
    # The takedown's own steps, indented under it: where a slow takedown spent its time.
    rows += [
        f'<tr class="step"><td class="k">&nbsp;&nbsp;takedown: {e(step)}</td><td>{seconds:.2f}</td></tr>'
        for step, seconds in takedown_steps(all_phases).items()
    ]
    phases = (
        f'<table><thead><tr><th class="k">phase</th><th>seconds</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )
    stats = timings.get("start_latency") or {}
    if stats:
        keys = ("p50", "p90", "p99", "max", "mean")
        latency = (
            "<table><thead><tr><th class='k'>start latency</th>"
            + "".join(f"<th>{k}</th>" for k in keys)
            + "</tr></thead><tbody><tr><td class='k'>ms</td>"
            + "".join(f"<td>{stats[k] * 1000:.1f}</td>" for k in keys)
            + f"</tr></tbody></table><p>{int(stats.get('count', 0))} VEs started</p>"
        )
    else:
        latency = "<p>No VE started.</p>"
    resources = results.get("resources") or {}
    lines = []
    for name in ("memory_per_ve", "cgroup_memory_per_ve", "disk_per_ve"):
        metric = METRICS[name]
        shown = f"{metric.shown(metric.read(results))} {metric.unit}"
        lines.append(f'<tr><td class="k">{e(metric.label)}</td><td>{e(shown)}</td></tr>')
    if resources.get("running_peak"):
        lines.append(f'<tr><td class="k">most VEs running at once</td><td>{int(resources["running_peak"])}</td></tr>')
    table = f"<table><tbody>{''.join(lines)}</tbody></table>"
    return (
        f'<h3>Timings</h3><div class="cards" id="lxcexp-timings"><div>{phases}</div><div>{latency}</div>'
        f"<div>{table}</div></div>"
    )


def ramp_section(results: Results) -> str:
    """--ve-count=max: the count reached, what stopped the ramp, and its steps."""
    ramp = results.get("ramp")
    if not ramp:
        return ""
    stop = ramp.get("stop") or {}
    facts = [
        ("VEs running when it stopped", str(ramp.get("reached"))),
        ("stopped by", f"{stop.get('limit', '?')}: {stop.get('words', '')}"),
        ("the kernel's words", stop.get("kernel") or "-"),
        ("raise it with", stop.get("setting") or "-"),
        ("objectives", ", ".join(ramp.get("slo") or []) or "none"),
        ("bound", ramp.get("bound_by") or ""),
    ]
    rows = "".join(f'<tr><td class="k">{e(k)}</td><td class="k">{e(v)}</td></tr>' for k, v in facts)
    steps = []
    for point in ramp.get("points") or []:
        latency = point.get("latency") or {}
        per_ve = point.get("memory_per_ve")
        cells = [
            str(point["step"]),
            f"ve{point['first']}-ve{point['last']}",
            str(point["running"]),
            str(point["failed"]),
            *(f"{latency[key] * 1000:.1f}" if key in latency else "-" for key in ("p50", "p99")),
            f"{per_ve / 1024**2:.2f}" if per_ve is not None else "-",
            str(point.get("processes") if point.get("processes") is not None else "-"),
        ]
        steps.append("<tr>" + "".join(f"<td>{e(cell)}</td>" for cell in cells) + "</tr>")
    head = "".join(
        f"<th>{name}</th>" for name in ("step", "VEs", "running", "failed", "p50 ms", "p99 ms", "MiB/VE", "processes")
    )
    return (
        f'<h3>Ramp</h3><div class="cards" id="lxcexp-ramp"><div><table><tbody>{rows}</tbody></table></div>'
        f"<div><table><thead><tr>{head}</tr></thead><tbody>{''.join(steps)}</tbody></table></div></div>"
    )


def charts_section(results: Results) -> str:
    if not charts.available():
        return "<h3>Charts</h3><p class='warn'>matplotlib is not installed: no charts.</p>"
    timings = results.get("timings") or {}
    latencies = [
        ve["start_latency"]
        for ve in results.get("ves", [])
        if ve.get("start_latency") is not None and not ve.get("start_error")
    ]
    drawn = [
        ("start latency", charts.latency_histogram(latencies, timings.get("start_latency") or {})),
        ("VEs over time", charts.timeline_chart(results.get("timeline") or {}, results.get("ves", []))),
        ("memory over time", charts.memory_chart(results.get("timeline") or {})),
        ("start latency against VEs running", charts.latency_by_running_chart(results.get("ves", []))),
        *charts.ramp_charts(results.get("ramp") or {}),
    ]
    figures = "".join(f'<figure><img alt="{e(title)}" src="{uri}"></figure>' for title, uri in drawn if uri is not None)
    figures = figures or "<p>Too few samples for charts.</p>"
    return f'<h3>Charts</h3><div class="cards charts" id="lxcexp-charts">{figures}</div>'


def _ve_label(ve: dict[str, Any], rounds: bool) -> str:
    return f"round {(ve.get('round') or 0) + 1} {ve['name']}" if rounds else ve["name"]


def failed_section(results: Results) -> str:
    failed = [ve for ve in results.get("ves", []) if not ve.get("completed")]
    if not failed:
        return ""
    rows = []
    rounds = len(results.get("rounds") or []) > 1
    for ve in failed[:FAILED_VES_SHOWN]:
        tail = ve.get("log_tail")
        # Extra per-VE fields from pytest_lxcexp_ve_fields hooks follow the reason, as in the terminal.
        fields = ve.get("fields") or {}
        extra = " [" + ", ".join(f"{key}={value}" for key, value in fields.items()) + "]" if fields else ""
        rows.append(
            f'<tr><td class="k">{e(_ve_label(ve, rounds))}</td><td class="k">{e(str(ve.get("failure")) + extra)}</td>'
            f'<td class="k"><pre>{e(tail) if tail else "(no log)"}</pre></td></tr>'
        )
    more = (
        f"<p>... and {len(failed) - FAILED_VES_SHOWN} more (all are in results.json)</p>"
        if len(failed) > FAILED_VES_SHOWN
        else ""
    )
    return (
        f'<h3>VEs that did not complete ({len(failed)})</h3><table id="lxcexp-failed"><thead><tr><th class="k">VE</th>'
        f'<th class="k">reason</th><th class="k">log tail</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{more}'
    )


def _meta_rows(meta: dict[str, Any]) -> list[tuple[str, str]]:
    lxc = meta.get("lxc") or {}
    kernel = meta.get("kernel") or {}
    cpu = meta.get("cpu") or {}
    memory = meta.get("memory_total")
    rows = [
        ("tool", f"{(meta.get('tool') or {}).get('name')} {(meta.get('tool') or {}).get('version')}"),
        ("liblxc", str(lxc.get("version"))),
        ("liblxc loaded from", str(lxc.get("library"))),
        ("python3-lxc", str(lxc.get("python_lxc"))),
    ]
    if lxc.get("ld_library_path"):
        rows.append(("LD_LIBRARY_PATH", lxc["ld_library_path"]))
    rows += [
        ("kernel", f"{kernel.get('release')} {kernel.get('version')}"),
        ("distribution", str(meta.get("distribution"))),
        ("host", str(meta.get("hostname"))),
        ("CPU", f"{cpu.get('count')} x {cpu.get('model')}"),
        ("memory", human_size(memory) if memory else "-"),
        ("python / pytest", f"{meta.get('python')} / {meta.get('pytest')}"),
        ("started", _fmt_time(meta.get("started_at"))),
        ("ended", _fmt_time(meta.get("ended_at"))),
    ]
    return rows


def _table(title: str, rows: str) -> str:
    return f'<table><thead><tr><th class="k" colspan="2">{e(title)}</th></tr></thead><tbody>{rows}</tbody></table>'


def metadata_section(results: Results) -> str:
    meta = results.get("metadata") or {}
    rows = "".join(f'<tr><td class="k">{e(k)}</td><td class="k">{e(v)}</td></tr>' for k, v in _meta_rows(meta))
    options = meta.get("options") or {}
    option_rows = "".join(
        f'<tr><td class="k">{e(k)}</td><td class="k">{e(str(v))}</td></tr>' for k, v in options.items()
    )
    return (
        '<h3>Run</h3><div class="cards" id="lxcexp-metadata">'
        f"{_table('software and host', rows)}{_table('options', option_rows)}</div>"
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def hosts_section(results: Results) -> str:
    """A run over several hosts: each host's own figures (one host: nothing, the run says it all)."""
    hosts = results.get("hosts") or []
    if len(hosts) < 2:
        return ""

    def size(value: float | None) -> str:
        return "-" if value is None else human_size(int(value))

    heads = ("host", "VEs", "root", "bridge (subnet)", "started", "completed", "start all s", "disk", "memory/VE")
    rows = "".join(
        f'<tr><td class="k">{e(h["name"])}</td><td>ve{h["first"]}-ve{h["last"]}</td><td>{e(h["root"])}</td>'
        f"<td>{e(h['bridge'])} ({e(h['subnet'])})</td><td>{h['started']}</td><td>{h['completed']}</td>"
        f"<td>{_seconds(h.get('start_all_s'))}</td><td>{size(h.get('disk_used'))}</td>"
        f"<td>{size(h.get('memory_per_ve'))}</td></tr>"
        for h in hosts
    )
    head = "".join(f"<th>{name}</th>" for name in heads)
    table = f'<table id="lxcexp-hosts"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    return f"<h3>Hosts ({len(hosts)})</h3>{table}"


def rounds_section(results: Results) -> str:
    """--ve-repeat: each round's counts and its own times (one round: nothing, Timings says it all)."""
    rounds = results.get("rounds") or []
    if len(rounds) < 2:
        return ""

    heads = ("round", "first build", "completed", "setup s", "start all s", "complete all s", "takedown s")
    heads += ("start p50 ms", "left behind")
    rows = []
    for entry in rounds:
        counts, timings = entry.get("summary") or {}, entry.get("timings") or {}
        p50 = (timings.get("start_latency") or {}).get("p50")
        left = entry.get("left_behind")
        css = "bad" if left or counts.get("completed") != counts.get("total") else ""
        cells = [
            str(entry["round"] + 1),
            e(str(entry.get("first_build") or "-")),
            f"{counts.get('completed', 0)} of {counts.get('total', 0)}",
            _seconds(timings.get("setup_s")),
            _seconds(timings.get("start_all_s")),
            _seconds(timings.get("complete_all_s")),
            _seconds(timings.get("takedown_s")),
            "-" if p50 is None else f"{p50 * 1000:.1f}",
            "not looked at" if left is None else e(", ".join(left)) or "nothing",
        ]
        rows.append(f'<tr class="{css}">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in heads)
    table = f'<table id="lxcexp-rounds"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    note = "<p>Timings below: each phase's median over the rounds; start latency and verdicts: every round's VEs.</p>"
    return f"<h3>Rounds ({len(rounds)})</h3>{table}{note}"


def report_sections(finished: Finished) -> str:
    """The block shown above pytest-html's table."""
    parts = [f"<style>{CSS}</style>", '<div class="lxcexp" id="lxcexp-report">']
    results = finished.results
    if results is not None:
        parts.append(results_section(results))
        if finished.comparisons:
            parts.append(
                comparison_section(
                    results, finished.reference, finished.comparisons, finished.regressions, finished.notes
                )
            )
        parts += [hosts_section(results), rounds_section(results), ramp_section(results), timings_section(results)]
        parts.append(charts_section(results))
        parts += [failed_section(results), metadata_section(results)]
    parts += [f'<p class="bad">lxcexp report: {e(error)}</p>' for error in finished.errors]
    if finished.run_dir:
        parts.append(f"<p>Archived in {e(finished.run_dir)}</p>")
    parts.append("</div>")
    return "".join(parts)


class HtmlSummary:
    """Registered only when pytest-html is active: fills its summary from the finished run."""

    def __init__(self, finish: Callable[[pytest.Session], Finished | None]) -> None:
        self._finish = finish

    def pytest_html_results_summary(
        self, prefix: list[str], summary: list[str], postfix: list[str], session: pytest.Session
    ) -> None:
        # pytest-html calls this from its own sessionfinish, after the session's fixtures
        # were torn down: the run is complete, so this is where it gets finished first.
        try:
            finished = self._finish(session)
            if finished is None or (finished.results is None and not finished.errors):
                return
            prefix.append(headline(finished))
            summary.append(report_sections(finished))
        except Exception as error:  # noqa: BLE001 - never raise from a summary hook
            summary.append(f'<p class="bad">lxcexp report: could not render: {e(str(error))}</p>')
