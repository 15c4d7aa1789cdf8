"""report.archive, metadata, sampler, charts and HTML pieces, and the `lxcexp report` / `compare` commands."""

from __future__ import annotations

import datetime
import os
import pathlib
import re

import pytest
from report_helpers import FINGERPRINT, make_results

from pytest_lxcexp import cli
from pytest_lxcexp.report import archive, charts, html, metadata
from pytest_lxcexp.report.compare import FailRule, compare_builds, compare_runs, regressions
from pytest_lxcexp.report.outcome import Finished
from pytest_lxcexp.report.results import write_results
from pytest_lxcexp.report.sampler import CgroupProbe, Sampler, host_memory_used

WHEN = datetime.datetime(2026, 11, 26, 23, 15, 0, tzinfo=datetime.UTC)


def test_run_name_sorts_by_time_and_shows_the_lxc_version() -> None:
    assert archive.run_name(WHEN, "5.0.2", "builder.example.org") == "20261126T231500Z-lxc5.0.2-builder"
    assert archive.run_name(WHEN, "6.0.0~git/1", "a b") == "20261126T231500Z-lxc6.0.0-git-1-a-b"
    assert archive.run_name(WHEN, None, "") == "20261126T231500Z-lxcunknown-host"
    later = archive.run_name(WHEN + datetime.timedelta(seconds=1), "4.0.0", "a")
    assert sorted([later, archive.run_name(WHEN, "9.9.9", "z")])[0].startswith("20261126T231500Z")


def test_two_runs_in_one_second_get_their_own_folders(tmp_path) -> None:
    first = archive.new_run_dir(str(tmp_path / "r"), "20261126T231500Z-lxc5.0.2-h")
    second = archive.new_run_dir(str(tmp_path / "r"), "20261126T231500Z-lxc5.0.2-h")
    assert os.path.basename(first) == "20261126T231500Z-lxc5.0.2-h"
    assert os.path.basename(second) == "20261126T231500Z-lxc5.0.2-h-2"
    assert os.path.isdir(first) and os.path.isdir(second)


def _save(report_dir, name: str, **kwargs) -> None:
    write_results(os.path.join(report_dir, name, archive.RESULTS_FILE), make_results(run_id=name, **kwargs))


def test_index_lists_runs_newest_first_with_trend_charts(tmp_path) -> None:
    reports = str(tmp_path)
    _save(reports, "20261101T000000Z-lxc5.0.2-h")
    _save(reports, "20261102T000000Z-lxc6.0.0-h", completed=7, lxc_version="6.0.0")
    os.makedirs(os.path.join(reports, "20261103T000000Z-lxc6.0.0-h"))  # ended before writing results
    os.makedirs(os.path.join(reports, "not-a-run"))
    path, count, skipped = archive.write_index(reports, with_report={"20261101T000000Z-lxc5.0.2-h"})
    assert path == os.path.join(reports, "index.html") and count == 2
    assert skipped == ["20261103T000000Z-lxc6.0.0-h: no results.json (the run ended before writing it)"]
    text = pathlib.Path(path).read_text()
    rows = re.findall(r"<tr class=\"(bad)?\"><td class=\"name\">([^<]+)</td>", text)
    assert rows == [("bad", "20261102T000000Z-lxc6.0.0-h"), ("", "20261101T000000Z-lxc5.0.2-h")]
    assert 'href="20261101T000000Z-lxc5.0.2-h/report.html"' in text
    assert 'href="20261102T000000Z-lxc6.0.0-h/report.html"' not in text  # no report there
    assert text.count('src="data:image/png;base64,') == len(archive.TREND_METRICS)
    assert "not-a-run" not in text


def test_trend_series_scale_to_shown_units(tmp_path) -> None:
    _save(str(tmp_path), "20261101T000000Z-lxc5.0.2-h")
    runs, _ = archive.list_runs(str(tmp_path))
    series = dict(archive.trend_series(runs))
    assert series["start latency (ms)"]["start_p90"] == [pytest.approx(90.0)]
    assert series["VEs completed (% of total)"]["completed_pct"] == [100.0]
    assert archive.trend_label(runs[0]) == "11-01 00:00 lxc 5.0.2"


def test_loaded_library_is_read_from_the_memory_map(tmp_path) -> None:
    maps = tmp_path / "maps"
    maps.write_text(
        "7f00-7f01 r--p 00000000 08:01 1 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 2 /opt/lxc-git/lib/liblxc.so.1.8.0\n"
        "7f04-7f05 rw-p 00000000 00:00 0 \n"
    )
    assert metadata.loaded_library("liblxc.so", str(maps)) == "/opt/lxc-git/lib/liblxc.so.1.8.0"
    assert metadata.loaded_library("libfoo.so", str(maps)) is None


def test_this_process_reports_the_liblxc_it_loaded() -> None:
    info = metadata.lxc_info()
    assert info["version"] and info["library"] and "liblxc.so" in info["library"]
    assert os.path.exists(info["library"])


def test_host_facts() -> None:
    host = metadata.host_info()
    assert host["hostname"] and host["cpu"]["count"] == os.cpu_count()
    assert host["memory_total"] > 0 and host["kernel"]["release"] == os.uname().release


def _fake_cgroup(tmp_path, counts: dict[str, int]) -> str:
    top = tmp_path / "pids" / "lxcexp-abcde"
    for name, count in counts.items():
        (top / name).mkdir(parents=True)
        (top / name / "pids.current").write_text(f"{count}\n")
    return str(tmp_path / "pids")


def test_probe_counts_ves_with_processes(tmp_path) -> None:
    mount = _fake_cgroup(tmp_path, {"ve1": 2, "ve2": 0, "ve3": 5})
    probe = CgroupProbe("abcde", mounts=[mount])
    assert probe.running() == 2
    assert probe.memory() is None  # no memory controller in this tree
    assert CgroupProbe("fffff", mounts=[mount]).running() == 0  # no such experiment yet


def test_sampler_samples_until_stopped(tmp_path) -> None:
    mount = _fake_cgroup(tmp_path, {"ve1": 1})
    sampler = Sampler(CgroupProbe("abcde", mounts=[mount]), interval=0.02).start()
    import time

    time.sleep(0.15)
    samples = sampler.stop()
    assert len(samples) >= 4 and not sampler.running
    assert all(sample.running == 1 and sample.memory_used > 0 for sample in samples)
    assert [s.at for s in samples] == sorted(s.at for s in samples)
    assert sampler.stop() == samples  # idempotent


def test_host_memory_used(tmp_path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1000 kB\nMemFree:         100 kB\nMemAvailable:    400 kB\n")
    assert host_memory_used(str(meminfo)) == 600 * 1024


def test_charts_are_png_data_uris() -> None:
    results = make_results()
    uri = charts.latency_histogram([0.01, 0.02, 0.03], {"p50": 0.02, "p90": 0.03})
    assert uri is not None and uri.startswith("data:image/png;base64,iVBORw0KGgo")
    assert charts.timeline_chart(results["timeline"], results["ves"]).startswith("data:image/png;base64,")
    assert charts.memory_chart(results["timeline"]).startswith("data:image/png;base64,")
    assert charts.latency_histogram([], {}) is None
    assert charts.latency_by_running_chart(results["ves"]).startswith("data:image/png;base64,")


def test_running_at_start_counts_the_starts_finished_before_each_began() -> None:
    ves = [
        {"started_at": 0.0, "start_latency": 0.5},  # ends 0.5
        {"started_at": 0.2, "start_latency": 0.1},  # ends 0.3: nothing had finished at 0.2
        {"started_at": 0.6, "start_latency": 0.2},  # two had finished
        {"started_at": 0.7, "start_latency": 0.1, "start_error": "failed"},  # not a start
    ]
    assert charts.running_at_start(ves) == [(0, 0.5), (0, 0.1), (2, 0.2)]


def test_a_ramp_draws_latency_memory_and_processes_against_running() -> None:
    points = [
        {"running": n, "latency": {"p50": 0.01 * n, "p99": 0.02 * n}, "memory_per_ve": 1.2 * 1024**2,
         "cgroup_memory": n * 1024**2, "processes": 3 * n}
        for n in (10, 30, 70)
    ]  # fmt: skip
    drawn = charts.ramp_charts({"points": points, "slo": ["start_p99:500ms"]})
    assert [title for title, _ in drawn] == ["ramp: start latency", "ramp: memory per VE", "ramp: processes"]
    assert all(uri.startswith("data:image/png;base64,") for _, uri in drawn)
    assert charts.ramp_charts({"points": []}) == []


def test_ecdf_chart_draws_one_line_per_side() -> None:
    uri = charts.ecdf_chart([("build a", [0.01, 0.02]), ("build b", [0.015, 0.03]), ("empty", [])])
    assert uri is not None and uri.startswith("data:image/png;base64,iVBORw0KGgo")
    assert charts.ecdf_chart([("empty", [])]) is None


def test_report_sections_escape_what_the_run_wrote() -> None:
    reference = make_results()
    results = make_results(completed=0)  # every VE failed: a regression by Fisher's test (p 1e-5)
    results["ves"][9]["failure"] = "<script>alert(1)</script>"
    comparisons = compare_runs(reference, results)
    finished = Finished(
        results=results,
        comparisons=comparisons,
        reference=reference,
        regressions=regressions(comparisons, [FailRule("completed", None)]),
        run_dir="/r/<x>",
    )
    text = html.report_sections(finished)
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;ve10&lt;/b&gt; stopped" in text  # the log tail, escaped
    assert 'id="lxcexp-results"' in text and "Total VEs        : 10" in text
    assert "Regression: completed: worse: 0 -&gt; 10 VEs bad" in text
    # latency histogram, VEs over time, memory over time, latency against VEs running; the ECDF of both runs
    assert text.count("data:image/png;base64,") == 5
    for label in ("p50", "p90", "p99", "max"):
        assert f"<th>{label}</th>" in text
    for title in ("baseline median", "candidate median", "shift", "95% CI", "p-value", "verdict"):
        assert f">{title}</th>" in text
    assert (
        '<td class="worse" title="more VEs bad, Fisher p &lt;= 0.01; 10 place(s) fine on the baseline are not on '
        'the candidate: (0, 1), (0, 2), (0, 3), (0, 4), (0, 5) ...">worse</td>' in text
    )
    head = html.headline(finished)
    assert "0 of 10 VEs completed" in head and "1 regression(s)" in head


def test_report_shows_each_build_and_what_it_was() -> None:
    results = make_results(latencies=[0.01 + 0.0001 * n for n in range(30)], builds=["system", "<v6>"])
    proof = {"ve": "ve2", "ok": True, "cgroups": ["", "cpu", "pids"], "liblxc": ["/p/lib/liblxc.so.1.8.0"]}
    results["metadata"]["builds"] = [
        {"name": "system", "version": "5.0.2", "sha256": "85e890abc0e68d6a", "library_path": None},
        {"name": "<v6>", "version": "6.0.6", "commit": "2597434ae247211", "proofs": [proof, {**proof, "ve": "ve42"}]},
    ]
    finished = Finished(results=results, comparisons=compare_builds(results))
    text = html.report_sections(finished)
    assert 'id="lxcexp-builds"' in text and "&lt;v6&gt;" in text and "<v6>" not in text
    table = text[text.index('id="lxcexp-builds"') : text.index("</table>", text.index('id="lxcexp-builds"'))]
    # Short hashes, a one-line proof, no column that no build fills, no raw records.
    assert ">85e890abc0e6<" in table and ">2597434ae247<" in table and "library_path" not in table
    assert ">ok on ve2, ve42; cgroups unified, cpu, pids<" in table and "{" not in table
    assert ">no VE started<" in table  # the system build recorded no proof
    results["metadata"]["builds"][1]["proofs"] = [proof | {"ok": False, "differs": "liblxc /usr/lib/liblxc.so.1"}]
    text = html.report_sections(Finished(results=results, comparisons=compare_builds(results)))
    assert ">differs on ve2: liblxc /usr/lib/liblxc.so.1<" in text
    assert "baseline: build system<br>candidate: build &lt;v6&gt;" in text
    assert text.count("data:image/png;base64,") == 5  # the four charts, and one ECDF holds both builds


def test_cli_report_and_compare(tmp_path, capsys) -> None:
    reports = str(tmp_path)
    _save(reports, "20261101T000000Z-lxc5.0.2-h", latencies=[0.01 + 0.0001 * n for n in range(30)])
    _save(reports, "20261102T000000Z-lxc5.0.2-h", latencies=[0.02 + 0.0002 * n for n in range(30)])
    assert cli.main(["report", reports]) == 0
    assert capsys.readouterr().out.strip() == f"{reports}/index.html: 2 runs"
    old = os.path.join(reports, "20261101T000000Z-lxc5.0.2-h")
    assert cli.main(["compare", old, "latest", "--dir", reports, "--fail", "start_p90:10%"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSION: start_p90: worse: 11.45 -> 22.90 ms, shift +100.0%" in out
    assert cli.main(["compare", old, old, "--fail", "start_latency:10%"]) == 0
    out = capsys.readouterr().out
    assert "no regression: no 'worse' verdict for start_latency:10%" in out
    assert any(line.split()[:2] == ["start_latency", "(ms)"] and line.endswith(" same") for line in out.splitlines())
    assert cli.main(["compare", old, "missing"]) == 2
    assert "missing: no such results file or run folder" in capsys.readouterr().err
    assert cli.main(["compare", old, old, "--fail", "p90"]) == 2
    assert "--fail: 'p90': unknown metric 'p90'" in capsys.readouterr().err


def test_cli_compare_refuses_incomparable_runs_unless_forced(tmp_path, capsys) -> None:
    reports = str(tmp_path)
    _save(reports, "20261101T000000Z-lxc5.0.2-h", fingerprint={**FINGERPRINT, "kernel": "7.0"})
    _save(reports, "20261102T000000Z-lxc5.0.2-h")
    old, new = (os.path.join(reports, name) for name in sorted(os.listdir(reports)))
    assert cli.main(["compare", old, new]) == 2
    assert "is not comparable with this run: kernel '7.0' here '6.1.0'" in capsys.readouterr().err
    assert cli.main(["compare", old, new, "--force"]) == 0
    assert "WARNING: compared although not comparable: kernel '7.0' here '6.1.0'" in capsys.readouterr().out
    # 'latest' for A is the newest run comparable with B, never B itself.
    assert cli.main(["compare", "latest", new, "--dir", reports]) == 2
    assert "'latest': no comparable successful run" in capsys.readouterr().err


def test_cli_compare_of_one_run_compares_its_builds(tmp_path, capsys) -> None:
    reports = str(tmp_path)
    latencies = [0.01 * (1.5 if n % 2 else 1.0) + 0.0001 * n for n in range(40)]  # every second VE slower
    _save(reports, "20261101T000000Z-lxc5.0.2-h", latencies=latencies, builds=["system", "slow"])
    _save(reports, "20261102T000000Z-lxc5.0.2-h")
    run = os.path.join(reports, "20261101T000000Z-lxc5.0.2-h")
    assert cli.main(["compare", run, "--fail", "start_latency"]) == 1
    out = capsys.readouterr().out
    assert "baseline : build system" in out and "candidate: build slow" in out
    assert "REGRESSION: start_latency: worse:" in out
    assert cli.main(["compare", os.path.join(reports, "20261102T000000Z-lxc5.0.2-h")]) == 2
    assert "ran one build: give a second run" in capsys.readouterr().err


def test_the_headline_names_the_builds_and_what_chance_alone_would_give() -> None:
    reference = make_results()
    results = make_results(latencies=[0.05] * 10)  # slower than the reference's
    results["metadata"]["builds"] = [{"name": "a", "version": "6.0.6"}, {"name": "b", "version": "6.0.7"}]
    comparisons = compare_runs(reference, results)
    finished = Finished(results=results, comparisons=comparisons, reference=reference, regressions=[])
    head = html.headline(finished)
    assert "LXC a 6.0.6; b 6.0.7" in head and "liblxc" not in head  # the builds started the VEs
    tested = sum(v.p_value is not None for c in comparisons for v in c.verdicts)
    worse = sum(v.verdict == "worse" for c in comparisons for v in c.verdicts)
    assert f'{worse} "worse" verdict(s) of {tested} tested (by chance at most {tested * 0.01:.2f} expected)' in head
