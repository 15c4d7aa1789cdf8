"""report.results: the results file's shape, percentiles, timeline, memory per VE, round trip and checks."""

from __future__ import annotations

import json

import pytest
from report_helpers import T0, make_results

from pytest_lxcexp.report.metrics import METRICS, key_figures
from pytest_lxcexp.report.results import (
    SCHEMA,
    SCHEMA_VERSION,
    ResultsError,
    host_entry,
    load_results,
    memory_section,
    merge_builds,
    merge_worker_results,
    summed_samples,
    write_results,
)
from pytest_lxcexp.report.sampler import Sample


def test_sections_and_schema_version() -> None:
    results = make_results()
    assert results["schema"] == SCHEMA == "pytest-lxcexp/results"
    assert results["schema_version"] == SCHEMA_VERSION == 1
    for section in ("run_id", "metadata", "session", "summary", "timings", "resources", "timeline", "ves", "metrics"):
        assert section in results
    assert results["summary"]["total"] == 10
    assert results["summary"]["completed"] == 10
    assert "start_latency" not in results["summary"]  # kept once, under timings


def test_write_then_load_gives_the_same_run(tmp_path) -> None:
    results = make_results(completed=7)
    path = tmp_path / "run" / "results.json"
    write_results(str(path), results)
    assert load_results(str(path)) == json.loads(json.dumps(results))
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left


def test_percentiles_are_nearest_rank_of_the_started_ves() -> None:
    # 10 VEs at 10, 20, ... 100 ms: nearest rank p50 = 5th = 50 ms, p90 = 9th = 90 ms, p99 = 10th.
    stats = make_results()["timings"]["start_latency"]
    assert stats["count"] == 10
    assert stats["p50"] == pytest.approx(0.050)
    assert stats["p90"] == pytest.approx(0.090)
    assert stats["p99"] == pytest.approx(0.100)
    assert stats["max"] == pytest.approx(0.100)
    assert stats["mean"] == pytest.approx(0.055)


def test_percentiles_of_a_hundred_latencies() -> None:
    latencies = [n / 1000 for n in range(100, 0, -1)]  # 1..100 ms, unsorted
    stats = make_results(latencies=latencies)["timings"]["start_latency"]
    assert (stats["p50"], stats["p90"], stats["p99"], stats["max"]) == pytest.approx((0.050, 0.090, 0.099, 0.100))


def test_timings_sum_the_setup_phases() -> None:
    timings = make_results()["timings"]
    assert timings["setup_s"] == pytest.approx(0.10)
    assert timings["start_all_s"] == 1.0
    assert timings["complete_all_s"] == 2.0
    assert timings["takedown_s"] == 0.5
    assert list(timings["phases"]) == [
        "setup tmpfs",
        "setup base",
        "setup network",
        "setup clones",
        "start all",
        "complete all",
        "takedown",
    ]


def test_missing_phases_are_null_not_zero() -> None:
    timings = make_results(phases={"setup tmpfs": 0.01})["timings"]
    assert timings["setup_s"] == 0.01
    assert timings["start_all_s"] is None and timings["takedown_s"] is None


def test_one_record_per_ve_with_its_times_and_failure() -> None:
    results = make_results(completed=8)
    ves = results["ves"]
    assert [ve["name"] for ve in ves] == [f"ve{n}" for n in range(1, 11)]
    assert ves[0]["completed"] and ves[0]["failure"] is None and ves[0]["log_tail"] is None
    assert ves[0]["started_at"] == pytest.approx(T0 + 1.1)
    assert ves[0]["log_ended"] == int(T0 + 2)
    failed = ves[9]
    assert not failed["completed"]
    assert failed["failure"] == "not running (state STOPPED) after 1 of 3 pings"
    assert "stopped" in failed["log_tail"]
    assert failed["log_ended"] is None


def test_timeline_counts_started_running_completed_at_each_sample() -> None:
    timeline = make_results(completed=9)["timeline"]
    assert timeline["t"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert timeline["running"] == [0, 0, 0, 4, 10, 10, 0]
    # veN started at T0 + 1 + 0.1 N and took 10 N ms, so it was up at T0 + 1.11 N:
    # by T0 + 1.5 ve1..ve4, by T0 + 2.0 ve1..ve9.
    assert timeline["started"] == [0, 0, 0, 4, 9, 10, 10]
    # Logs end in whole second T0 + 2, counted at its middle (T0 + 2.5); ve10 did not complete.
    assert timeline["completed"] == [0, 0, 0, 0, 0, 9, 9]


def test_memory_per_ve_is_the_growth_over_the_last_sample_before_the_first_start() -> None:
    resources = make_results(memory_step=3 * 1024**2)["resources"]
    assert resources["running_peak"] == 10
    assert resources["memory_baseline"] == 1_000_000_000
    assert resources["memory_per_ve"] == pytest.approx(3 * 1024**2)
    assert resources["cgroup_memory_per_ve"] == 4096  # the helper charges 4 KiB per running VE
    assert resources["disk_per_ve"] == 8192.0
    assert resources["disk_used"] == 3_000_000


def test_memory_per_ve_is_unknown_without_a_sample_before_the_first_start() -> None:
    timeline = {"t0": 100.0, "t": [5.0, 6.0], "memory_used": [10, 20], "running": [2, 2]}
    assert memory_section(timeline, first_start=100.0)["memory_per_ve"] is None
    assert memory_section({"t0": 0, "t": [], "memory_used": [], "running": []}, 1.0)["memory_per_ve"] is None


def test_key_figures_read_the_sections() -> None:
    results = make_results(completed=9)
    figures = key_figures(results)
    assert set(figures) == set(METRICS)
    assert figures["completed"] == 9
    assert figures["incomplete"] == 1
    assert figures["start_p90"] == pytest.approx(0.090)
    assert figures["takedown_s"] == 0.5
    assert results["metrics"] == figures


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "cannot be read as JSON"),
        ('{"a": 1}', "not a pytest-lxcexp results file"),
        ('{"schema": "pytest-lxcexp/results", "schema_version": 99}', "schema version 99"),
        ('{"schema": "pytest-lxcexp/results", "schema_version": "1"}', "bad schema_version"),
        ('{"schema": "pytest-lxcexp/results", "schema_version": 1, "metadata": {}}', "'timings' section is missing"),
    ],
)
def test_load_refuses_what_it_cannot_read(tmp_path, content: str, reason: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=reason):
        load_results(str(path))


def test_load_of_a_missing_file(tmp_path) -> None:
    with pytest.raises(ResultsError, match="does not exist"):
        load_results(str(tmp_path / "nope.json"))


def test_no_nan_or_infinity_reaches_the_file(tmp_path) -> None:
    results = make_results(latencies=[])
    write_results(str(tmp_path / "r.json"), results)  # allow_nan=False would raise
    assert results["timings"]["start_latency"] == {}


def test_merge_of_xdist_workers_gives_one_run() -> None:
    whole = make_results(completed=9)
    first, second = json.loads(json.dumps(whole)), json.loads(json.dumps(whole))
    # Worker 1 started ve1-ve5, worker 2 ve6-ve10; each also saw the others' VEs without starting them.
    for ve in first["ves"][5:]:
        ve["started_at"] = None
    for ve in second["ves"][:5]:
        ve["started_at"] = None
    first["timings"]["phases"]["start all"] = 0.7
    first["summary"] = None  # e.g. a worker whose own experiment failed to come up
    merged = merge_worker_results([first, second])
    assert (merged["summary"]["root"], merged["summary"]["expected_pings"]) == ("/exp", 3)
    assert merged["summary"]["total"] == 10
    assert merged["summary"]["completed"] == 9
    assert [ve["started_at"] is not None for ve in merged["ves"]] == [True] * 10
    # A span from the VEs' own times (ve1 asked at T0+1.1, ve10 done at T0+2.0+0.1), not a worker's 0.7.
    assert merged["timings"]["phases"]["start all"] == pytest.approx(1.0)
    assert merged["timings"]["start_latency"]["p90"] == pytest.approx(0.090)
    assert merged["session"]["workers"] == 2
    assert len(merged["timeline"]["t"]) == 14  # both workers' samples, one timeline


def _build(name: str, ve: int | None, ok: bool = True) -> dict:
    proof = None if ve is None else {"ve": f"ve{ve}", "monitor": 100 + ve, "ok": ok, "differs": None if ok else "x"}
    return {"name": name, "prefix": "system", "sha256": "ab" * 32, "proof": proof, "proofs": [proof] if proof else []}


def test_merged_builds_hold_every_workers_proofs() -> None:
    # Worker 1 started ve11-ve20 first (proofs on ve11, ve12), worker 2 ve1-ve10 (ve1, ve2);
    # an older worker file has `proof` only; a worker that started nothing proved nothing.
    first = [_build("a", 11), _build("b", 12)]
    second = [{k: v for k, v in _build("a", 1).items() if k != "proofs"}, _build("b", 2)]
    idle = [_build("a", None), _build("b", None)]
    merged = merge_builds([first, second, idle])
    assert [build["name"] for build in merged] == ["a", "b"]
    assert [p["ve"] for p in merged[0]["proofs"]] == ["ve1", "ve11"] and merged[0]["proof"]["ve"] == "ve1"
    assert [p["ve"] for p in merged[1]["proofs"]] == ["ve2", "ve12"] and merged[1]["proof"]["ve"] == "ve2"
    # A proof that failed on any worker is the build's proof, whatever VE it was on.
    failing = merge_builds([[_build("a", 1)], [_build("a", 7, ok=False)]])
    assert failing[0]["proof"]["ve"] == "ve7" and not failing[0]["proof"]["ok"]
    assert merge_builds([idle]) == [{**b, "proof": None, "proofs": []} for b in idle]
    # Through the one merge of worker results: metadata.builds is every worker's, not the first's.
    whole = make_results(completed=10)
    parts = [json.loads(json.dumps(whole)), json.loads(json.dumps(whole))]
    parts[0]["metadata"]["builds"], parts[1]["metadata"]["builds"] = first, second
    assert merge_worker_results(parts)["metadata"]["builds"] == merge_builds([first, second])


def _host(results: dict, key: str, first: int, last: int, disk: int) -> dict:
    """One host's results as its worker sends them: only its VEs, ve<first>..ve<last>, and its hosts line."""
    ves = results["ves"][: last - first + 1]
    for offset, ve in enumerate(ves):
        ve["index"], ve["name"] = first + offset, f"ve{first + offset}"
    results["ves"] = ves
    results["summary"].update(total=len(ves), completed=len(ves), disk_used=disk, root=f"/exp-{key}")
    results["resources"]["disk_used"] = disk
    identity = {"key": key, "name": key, "root": f"/exp-{key}", "bridge": "vebr", "subnet": "10.0.0.0/24"}
    results["hosts"] = [host_entry({**identity, "first": first, "last": last}, results)]
    return results


def test_merge_of_two_hosts_adds_their_numbers_and_keeps_each_hosts_figures() -> None:
    whole = make_results(completed=10)
    a = _host(json.loads(json.dumps(whole)), "a", 1, 4, disk=1000)
    b = _host(json.loads(json.dumps(whole)), "b", 5, 10, disk=3000)
    b["timings"]["phases"]["start all"] = 1.5
    merged = merge_worker_results([b, a])  # the order workers left in does not matter
    assert [ve["index"] for ve in merged["ves"]] == list(range(1, 11))
    assert merged["summary"]["total"] == 10 and merged["summary"]["disk_used"] == 4000
    assert merged["summary"]["root"] == "/exp-a, /exp-b"
    # From the VEs' own times: both hosts started theirs at once (T0+1.1 on), the last done at
    # T0+1.6+0.06; b's own 1.5 s does not make the run's span longer than its VEs took.
    assert merged["timings"]["phases"]["start all"] == pytest.approx(0.56)
    hosts = merged["hosts"]
    assert [(h["key"], h["first"], h["last"]) for h in hosts] == [("a", 1, 4), ("b", 5, 10)]
    assert [(h["ves"], h["completed"], h["disk_used"]) for h in hosts] == [(4, 4, 1000), (6, 6, 3000)]
    assert sum(h["completed"] for h in hosts) == merged["summary"]["completed"]
    # Memory is summed over the hosts at each moment, not interleaved.
    peak = max(merged["timeline"]["memory_used"])
    assert peak == max(a["timeline"]["memory_used"]) + max(b["timeline"]["memory_used"])


def test_summed_samples_start_once_every_host_reported() -> None:
    a = [Sample(1.0, 100, 1, 10), Sample(3.0, 300, 3, 30)]
    b = [Sample(2.0, 1000, 5, None), Sample(4.0, 2000, 6, None)]
    summed = summed_samples([a, b])
    assert [(s.at, s.memory_used, s.running, s.cgroup_memory) for s in summed] == [
        (2.0, 1100, 6, None),
        (3.0, 1300, 8, None),
        (4.0, 2300, 9, None),
    ]


def test_summed_samples_of_two_hosts_sampled_at_the_same_moment():
    # Timelines are rounded to milliseconds, so ties happen; samples themselves do not order.
    summed = summed_samples([[Sample(1.0, 10, 1, None)], [Sample(1.0, 20, 2, None)]])
    assert [(s.at, s.memory_used, s.running) for s in summed] == [(1.0, 30, 3)]


def test_merge_makes_one_span_of_workers_that_ran_one_after_the_other() -> None:
    whole = make_results(completed=10)
    first, second = json.loads(json.dumps(whole)), json.loads(json.dumps(whole))
    # Worker 1 started ve1-ve5; worker 2 started ve6-ve10, 10 s later. Each waited 3 s after its own first start.
    for ve in first["ves"][5:]:
        ve["started_at"] = None
    for ve in second["ves"][:5]:
        ve["started_at"] = None
    for ve in second["ves"][5:]:
        ve["started_at"] += 10.0
    for part, own_first in ((first, first["ves"][0]), (second, second["ves"][5])):
        part["timings"]["phases"]["complete all"] = 3.0
        part["timings"]["waited_until"] = own_first["started_at"] + 3.0
    merged = merge_worker_results([first, second])
    phases = merged["timings"]["phases"]
    # ve1 asked at T0+1.1; ve10 done at T0+10+2.0+0.1; worker 2's wait ended at T0+10+1.6+3.
    assert phases["start all"] == pytest.approx(11.0)
    assert phases["complete all"] == pytest.approx(13.5)
    assert merged["timings"]["waited_until"] == pytest.approx(second["timings"]["waited_until"])
