"""Reports of real runs: results.json against what the run did, the archive, compare, and the
HTML report as a browser renders it (Debian's chromium, headless, installed by `make test`)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import struct
import subprocess

import pytest
from integration_helpers import FAULTY_SUITE, PING_SUITE, Names, run_pytest

from pytest_lxcexp.report.results import load_results

CHROMIUM = "/usr/bin/chromium"

# The second run of the regression test: the same suite, but every VE start through liblxc
# really takes 0.2 s longer, because an LXC pre-start hook sleeps.
SLOW_CONFTEST = """
import pytest


@pytest.fixture(scope="session", autouse=True)
def slow_starts(ve_experiment, tmp_path_factory):
    hook = tmp_path_factory.mktemp("hooks") / "sleep-before-start"
    hook.write_text("#!/bin/sh\\nsleep 0.2\\n")
    hook.chmod(0o755)
    for index in range(1, ve_experiment.config.count + 1):
        with open(ve_experiment.layout.ve_config(index), "a") as handle:
            handle.write(f"lxc.hook.pre-start = {hook}\\n")
"""

# 5 pings 0.2 s apart keep every VE up for about a second after the last start, so the
# half-second sampler sees all of them running at once.
RUN_ARGS = ["--ve-count=12", "--ve-batch=6", "--ve-pings=5", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"]


@pytest.fixture
def names(names):  # noqa: F811 - wraps the conftest's names
    """The conftest's names with a subnet drawn from this process: concurrent test runs on one host
    (two checkouts) would otherwise both pick 10.22x.1.0/24 and the second would be refused."""
    serial = int(names.bridge.rsplit("x", 1)[1])
    pid = os.getpid()
    return dataclasses.replace(names, subnet=f"10.{240 + pid % 16}.{(pid // 16 + serial) % 250}.0/24")


def run(pytester: pytest.Pytester, names: Names, *args: str) -> pytest.RunResult:
    """A session of RUN_ARGS' twelve VEs, with more options."""
    return run_pytest(pytester, names, *RUN_ARGS, *args)


def runs_in(reports: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in reports.iterdir() if path.is_dir())


def chromium(tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    assert os.path.exists(CHROMIUM), "chromium is not installed: `make test` installs it (APT_PKGS)"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def png_size(path: pathlib.Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_archived_runs_compare_and_render(pytester, clean_host, leftovers, tmp_path):
    names = clean_host
    reports = pytester.path / "reports"
    pytester.makepyfile(test_ping=PING_SUITE)
    first = run(pytester, names, f"--ve-report-dir={reports}")
    first.assert_outcomes(passed=4)
    assert first.ret == 0
    [run1] = runs_in(reports)
    assert re.fullmatch(r"\d{8}T\d{6}Z-lxc[0-9][\w.+-]*-[\w.-]+", run1.name)
    assert sorted(p.name for p in run1.iterdir()) == ["report.html", "results.json"]

    # The results file against what the run did and printed.
    results = load_results(str(run1 / "results.json"))
    summary = results["summary"]
    assert (summary["total"], summary["completed"], summary["no_log"], summary["with_pid"]) == (12, 12, 0, 12)
    ves = results["ves"]
    assert [ve["name"] for ve in ves] == [f"ve{n}" for n in range(1, 13)]
    assert all(ve["completed"] and ve["pings"] == 5 and ve["failure"] is None for ve in ves)
    assert all(ve["start_latency"] > 0 and ve["started_at"] >= results["metadata"]["started_at"] for ve in ves)
    assert all(ve["log_ended"] >= ve["log_began"] >= int(ve["started_at"]) for ve in ves)
    latency = results["timings"]["start_latency"]
    assert latency["count"] == 12
    assert latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"] == max(v["start_latency"] for v in ves)
    printed = next(line for line in first.outlines if line.startswith("start latency (ms)"))
    assert f"p50 {latency['p50'] * 1000:.1f}  p90 {latency['p90'] * 1000:.1f}" in printed
    timings = results["timings"]
    assert 0 < timings["setup_s"] < timings["complete_all_s"] and timings["start_all_s"] < timings["complete_all_s"]
    assert timings["takedown_s"] > 0
    # The takedown's own steps, in the order run, adding up to no more than the takedown.
    steps = {name: seconds for name, seconds in timings["phases"].items() if name.startswith("takedown ")}
    assert list(steps) == [
        f"takedown {step}"
        for step in ("kill", "exits", "sweep", "lxc stop", "cgroups", "veths freed", "links", "bridge", "storage")
    ]
    assert all(seconds >= 0 for seconds in steps.values()) and steps["takedown kill"] > 0
    assert sum(steps.values()) <= timings["takedown_s"] + 0.01  # each rounded to the millisecond
    printed = next(line for line in first.outlines if line.startswith("  of it "))
    assert f"kill {steps['takedown kill']:.2f} s, exits " in printed and printed.endswith(" s")
    timeline = results["timeline"]
    assert max(timeline["running"]) == 12 and timeline["running"][-1] == 0  # all up at once; none after takedown
    assert timeline["started"][-1] == 12 and timeline["completed"][-1] == 12
    assert results["resources"]["memory_per_ve"] is not None and results["resources"]["running_peak"] == 12
    assert results["resources"]["disk_per_ve"] > 0
    meta = results["metadata"]
    import lxc

    assert meta["lxc"]["version"] == lxc.version and os.path.exists(meta["lxc"]["library"])
    # The VEs were started by this lxc-start, on the same liblxc as the binding here.
    assert os.path.exists(meta["lxc"]["lxc_start"]) and meta["lxc"]["lxc_start_version"] == lxc.version
    assert meta["options"]["count"] == 12 and meta["options"]["root"] == names.root
    assert meta["started_at"] < meta["ended_at"]
    assert results["session"] == {**results["session"], "exitstatus": 0, "outcomes": {"passed": 4}}

    # Second run: VEs fail; compared with the first, written to the user's --html as well. 25 pings
    # (5 s) keep ve2 running until it is killed, however long the starts of ve7-ve12 take on a
    # busy host; the ping count only warns, it does not make the runs incomparable.
    pytester.makepyfile(test_ping=FAULTY_SUITE)
    html_path = pytester.path / "custom.html"
    second = run(
        pytester,
        names,
        "--ve-pings=25",
        f"--ve-report-dir={reports}",
        f"--html={html_path}",
        "--ve-compare=latest",
        "--ve-compare-fail=completed:0%",
    )
    second.assert_outcomes(passed=4, failed=2)  # ve1-ve6 holds the broken VEs, ve7-ve12 does not
    second.stdout.fnmatch_lines(
        [
            "*lxcexp report*",
            f"results: {reports}/*/results.json",
            f"index  : {reports}/index.html",
            f"compared with {run1}/results.json:",
            f"baseline : {run1.name} (liblxc *",
            "WARNING: the runs used different options: pings 5 -> 25",
            "metric *baseline*candidate*shift*95% CI*p  verdict",
            "start_latency (ms) *",  # whatever the host did between the runs
            "completed (VEs bad) * 0 * 2 * +2 * worse",
            "failed_to_start (VEs bad) * 0 * 1 * +1 * worse",
            "REGRESSION: completed: worse: 0 -> 2 VEs bad, shift +2, p *; 2 place(s) fine on the baseline are "
            "not on the candidate: (0, 2), (0, 4) (now against before)",
        ]
    )
    run1_again, run2 = runs_in(reports)
    assert run1_again == run1
    results2 = load_results(str(run2 / "results.json"))
    assert results2["summary"]["completed"] == 10 and results2["summary"]["failed_to_start"] == 1
    failed = {ve["name"]: ve for ve in results2["ves"] if not ve["completed"]}
    assert set(failed) == {"ve2", "ve4"}
    assert failed["ve4"]["failure"].startswith("failed to start: liblxc: ")
    assert failed["ve2"]["failure"].startswith("not running (state STOPPED)")
    assert failed["ve2"]["log_tail"].startswith("lxcexp-begin ") or "bytes from 127.0.0.1" in failed["ve2"]["log_tail"]
    assert (run2 / "report.html").read_bytes() == html_path.read_bytes()  # the archive keeps its own copy

    # What a browser shows: pytest-html's page with the experiment above its table.
    dom = chromium(tmp_path, "--dump-dom", html_path.as_uri()).stdout
    assert 'id="lxcexp-headline"' in dom and "10 of 12 VEs completed" in dom
    results_block = re.search(r'<pre id="lxcexp-results">(.*?)</pre>', dom, re.S)
    assert results_block and "Total VEs        : 12" in results_block.group(1)
    assert "25-ping VEs      : 10" in results_block.group(1)
    timings_card = re.search(r'<div class="cards" id="lxcexp-timings">(.*?)</table>', dom, re.S).group(1)
    assert re.search(r"takedown: cgroups</td><td>\d+\.\d\d</td>", timings_card)
    assert 'id="lxcexp-compare"' in dom and "Regression: completed: worse: 0 -&gt; 2 VEs bad" in dom
    charts = re.search(r'<div class="cards charts" id="lxcexp-charts">(.*?)</div>', dom, re.S)
    assert charts
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}">', charts.group(1))
    assert images == ["start latency", "VEs over time", "memory over time", "start latency against VEs running"]
    failed_table = re.search(r'<table id="lxcexp-failed">(.*?)</table>', dom, re.S).group(1)
    assert "ve2" in failed_table and "ve4" in failed_table and "failed to start: liblxc: " in failed_table
    # ve2's log tail: its last lines, which on a slow host no longer reach back to its begin line.
    assert "lxcexp-begin" in failed_table or "bytes from 127.0.0.1" in failed_table
    # pytest-html builds its table in JavaScript: rows in the DOM prove the page's script ran.
    assert len(re.findall(r'class="col-result[^"]*">Failed<', dom)) == 2
    assert len(re.findall(r'class="col-result[^"]*">Passed<', dom)) == 4
    screenshot = tmp_path / "report.png"
    chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,1800", html_path.as_uri())
    assert png_size(screenshot) == (1200, 1800) and screenshot.stat().st_size > 50_000

    index = chromium(tmp_path, "--dump-dom", (reports / "index.html").as_uri()).stdout
    rows = re.findall(r'<tr class="(?:bad)?"><td class="name">([^<]+)</td>', index)
    assert rows == [run2.name, run1.name]  # newest first
    assert index.count('src="data:image/png;base64,') == 4
    assert leftovers(names) == []


def verdict_rows(lines: list[str]) -> dict[str, list[str]]:
    """The verdict table's rows as printed, by metric."""
    rows = [line.split() for line in lines]
    return {row[0]: row for row in rows if len(row) > 2 and row[1].startswith("(")}


def test_slower_run_is_a_regression_and_a_run_is_none_of_itself(pytester, clean_host, leftovers, cli):
    names = clean_host
    reports = pytester.path / "reports"
    pytester.makepyfile(test_ping=PING_SUITE)
    first = run(pytester, names, f"--ve-report-dir={reports}")
    first.assert_outcomes(passed=4)

    pytester.makeconftest(SLOW_CONFTEST)
    second = run(
        pytester, names, f"--ve-report-dir={reports}", "--ve-compare=latest", "--ve-compare-fail=start_p90:10%"
    )
    second.assert_outcomes(passed=4)  # every test passed ...
    assert second.ret == 1  # ... and the session failed on the regression
    second.stdout.fnmatch_lines(
        [
            "metric *baseline*candidate*shift*95% CI*p  verdict",
            "start_latency (ms) * worse",
            "completed (VEs bad) * 0 * 0 * +0 * same",
            "REGRESSION: start_p90: worse: * -> * ms, shift +*%, 95% CI [[]+*%, +*%], p *; p <= 0.01 and the shift "
            "is beyond the 10% minimum effect (now against before)",
        ]
    )
    second.stdout.fnmatch_lines(["Takedown: nothing left behind"])  # the exit status did not skip the takedown
    run1, run2 = runs_in(reports)
    slow_results, fast_results = (load_results(str(path / "results.json")) for path in (run2, run1))
    slow, fast = slow_results["timings"]["start_latency"], fast_results["timings"]["start_latency"]
    # Every slowed start slept 0.2 s in its hook (percentile differences depend on how busy the host was).
    assert min(ve["start_latency"] for ve in slow_results["ves"]) >= 0.2 and slow["p50"] > fast["p50"]

    # The verdicts are in the second run's results, as printed: every sample of both runs.
    assert "comparisons" not in fast_results and slow_results["compared_with"] == str(run1 / "results.json")
    [comparison] = slow_results["comparisons"]
    assert comparison["kind"] == "runs" and comparison["baseline"].startswith(run1.name)
    verdicts = {verdict["metric"]: verdict for verdict in comparison["verdicts"]}
    latency = verdicts["start_latency"]
    assert (latency["verdict"], latency["n_baseline"], latency["n_candidate"]) == ("worse", 12, 12)
    fast_latencies = sorted(ve["start_latency"] for ve in fast_results["ves"])
    slow_latencies = sorted(ve["start_latency"] for ve in slow_results["ves"])
    assert latency["baseline_value"] == pytest.approx((fast_latencies[5] + fast_latencies[6]) / 2)
    assert latency["candidate_value"] == pytest.approx((slow_latencies[5] + slow_latencies[6]) / 2)
    assert 0 < latency["ci_low"] <= latency["shift"] <= latency["ci_high"]
    assert latency["p_value"] < 0.001 and latency["min_effect"] == 10.0
    assert verdicts["completed"]["verdict"] == "same" and verdicts["completed"]["new_failures"] == []
    printed = verdict_rows(second.outlines)
    assert printed["start_latency"][-1] == "worse"
    shown = [
        f"{ms:.2f}" if ms < 100 else f"{ms:.1f}"
        for ms in (latency["baseline_value"] * 1000, latency["candidate_value"] * 1000)
    ]
    assert printed["start_latency"][2:4] == shown  # the medians, in ms
    for metric in ("setup_s", "takedown_s", "complete_all_s"):
        assert verdicts[metric]["method"] == "one value each"
    # Both runs carry this host's fingerprint: what made them comparable.
    assert fast_results["metadata"]["fingerprint"] == slow_results["metadata"]["fingerprint"]
    assert fast_results["metadata"]["fingerprint"]["kernel"] == os.uname().release

    same = cli("compare", str(run2), str(run2), "--fail", "start_p90", "--fail", "completed")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regression: no 'worse' verdict for start_p90, completed" in same.stdout
    worse = cli("compare", str(run1), "latest", "--dir", str(reports), "--fail", "start_p90:10%")
    assert worse.returncode == 1 and "REGRESSION: start_p90: worse:" in worse.stdout
    assert verdict_rows(worse.stdout.splitlines())["start_latency"][-1] == "worse"
    rebuilt = cli("report", str(reports))
    assert rebuilt.returncode == 0 and rebuilt.stdout.strip() == f"{reports}/index.html: 2 runs"
    assert leftovers(names) == []
