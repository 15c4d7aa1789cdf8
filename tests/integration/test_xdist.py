"""pytest -n 2 on one host: one set-up, ranges on both workers, one summary, one takedown."""

from __future__ import annotations

import os
import re

from integration_helpers import PING_SUITE, XDIST_RUN, reported_run

from pytest_lxcexp.engine.storage import lock_path


def test_two_workers_share_one_experiment(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(pytester, names, "-n", "2", *XDIST_RUN, "--ve-lxc=a=system", "--ve-lxc=b=system")
    result.assert_outcomes(passed=8)
    # Both workers started ranges of the one experiment.
    starters = set(re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED test_ping.py::test_start", result.stdout.str()))
    assert starters == {"gw0", "gw1"}
    # The controller's summary adds up both workers' VEs.
    result.stdout.fnmatch_lines(
        [
            "Total VEs        : 40",
            "3-ping VEs       : 40",
            "No log file VEs  : 0",
            "40 VEs have a PID",
            "Takedown: nothing left behind",
        ]
    )
    # The controller's results file covers every worker's VEs.
    assert len(results["ves"]) == 40 and results["summary"]["completed"] == 40
    assert {ve["index"] for ve in results["ves"] if ve.get("started_at")} == set(range(1, 41))
    # Both builds, each proven by both workers on the first VEs each started (not the first
    # worker's alone); `proof` is the one of the lowest VE, as one process would have it.
    builds = results["metadata"]["builds"]
    assert [build["name"] for build in builds] == ["a", "b"]
    for build in builds:
        proven_on = [int(proof["ve"][2:]) for proof in build["proofs"]]
        assert len(proven_on) == 2 and all(proof["ok"] for proof in build["proofs"]), build["proofs"]
        assert build["proof"] == build["proofs"][0] and proven_on == sorted(proven_on)
    assert all(ve["monitor_pss"] for ve in results["ves"])  # each VE's, whichever worker started it
    base = lock_path(names.root)[: -len(".lock")]
    assert not [path for path in (base + ".lock", base + ".gate", base + ".share.json") if os.path.exists(path)]
    assert leftovers(names) == []


def _printed_block(stdout: str) -> dict[str, str]:
    """The terminal's Results and Timings lines: {label: value}."""
    block = stdout.split("lxcexp results", 1)[1]
    return {label.strip(): value.strip() for label, value in re.findall(r"^(\S[^:\n]*?)\s*: (.+)$", block, re.M)}


def test_terminal_and_results_file_agree_under_xdist_with_a_workload_hook(pytester, clean_host, leftovers):
    from test_workloads import HOOK_CONFTEST

    names = clean_host
    pytester.makeconftest(HOOK_CONFTEST)
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(
        pytester, names, "-n", "2", "--ve-count=8", "--ve-batch=2", "--ve-network=none", "--ve-tmpfs-size=64M"
    )
    result.assert_outcomes(passed=7, failed=1)  # ve2 exits 1: only its range fails
    printed = _printed_block(result.stdout.str())
    summary, timings = results["summary"], results["timings"]
    # The one merge feeds both: the same counts, the same workload's words, the same spans.
    assert summary["workload"] == "hook"
    assert printed["Total VEs"] == str(summary["total"]) == "8"
    assert printed["Completed VEs (hook)"] == str(summary["completed"]) == "7"
    assert printed["Incomplete VEs"] == str(summary["incomplete"]) == "1"
    assert printed["No log file VEs"] == str(summary["no_log"]) == "0"
    assert printed["start all"] == f"{timings['phases']['start all']:.2f} s"
    assert printed["complete all"] == f"{timings['phases']['complete all']:.2f} s"
    # Spans of the whole run from per-VE times: no shorter than any VE's own start-to-start-end.
    started = [ve["started_at"] for ve in results["ves"]]
    ended = [ve["started_at"] + ve["start_latency"] for ve in results["ves"]]
    assert timings["phases"]["start all"] >= max(ended) - min(started) - 1e-3
    assert leftovers(names) == []
