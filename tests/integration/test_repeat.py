"""--ve-repeat: rounds of set up, start, complete, take down in one session, with real VEs.

Between two rounds the session's own conftest looks at the host (processes, links,
cgroups, mounts, LXC monitors) right after a round's takedown and before the next
round's set up, independently of the tool's own leftovers check."""

from __future__ import annotations

import json
import pathlib

import pytest
from integration_helpers import PING_SUITE, run_pytest

from pytest_lxcexp.report.archive import RESULTS_FILE

# Written into the session's folder: after each round's last takedown step (ve_root's
# teardown), what of that round is still on the host (the integration tests' own
# leftovers_of, and the round's recorded inits and monitors), one JSON line per round.
BETWEEN_ROUNDS_CHECK = f"""
import json, pathlib, sys

sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r})
from integration_helpers import Names, alive, leftovers_of

from pytest_lxcexp.session import run_state_key

CHECKS = pathlib.Path(__file__).parent / "between-rounds.jsonl"


def pytest_fixture_post_finalizer(fixturedef, request):
    if fixturedef.argname != "ve_root":
        return
    state = request.config.stash[run_state_key]
    config, current = state.config, state.rounds[-1]
    pids = sorted({{pid for start in current.experiment.starts.values() for pid in (start.pid, start.monitor) if pid}})
    names = Names(config.root, config.bridge, str(config.subnet))
    check = {{"round": current.number, "its_pids": pids, "alive": [p for p in pids if alive(p)]}}
    check["left"] = leftovers_of(names)
    with open(CHECKS, "a") as handle:
        handle.write(json.dumps(check) + "\\n")
"""

QUICK = ["--ve-count=6", "--ve-batch=3", "--ve-pings=3", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"]


def _results(folder) -> dict:
    (run,) = [path for path in folder.iterdir() if path.is_dir()]
    return json.loads((run / RESULTS_FILE).read_text())


def test_two_rounds_of_two_builds_alternate_and_each_takedown_is_complete(pytester, clean_host, tmp_path):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    pytester.makeconftest(BETWEEN_ROUNDS_CHECK)
    archive = tmp_path / "archive"
    # One starter (--ve-parallel=1): VEs start one after another in index order, so the first
    # started VE of a round is ve1, whose build says which build went first.
    result = run_pytest(
        pytester,
        names,
        *QUICK,
        "--ve-repeat=2",
        "--ve-parallel=1",
        "--ve-lxc",
        "a=system",
        "--ve-lxc",
        "b=system",
        f"--ve-report-dir={archive}",
        "-v",
    )
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*test_start?round1-ve1-ve3? PASSED*", "*test_completed?round2-ve4-ve6? PASSED*"])
    result.stdout.fnmatch_lines(
        ["Rounds (2 of 2)", "  round 1 (first build a): 6 of 6 completed;*", "  round 2 (first build b): 6 of 6 *"]
    )

    results = _results(archive)
    ves = results["ves"]
    for number in (0, 1):
        its = [ve for ve in ves if ve["round"] == number]
        assert sorted(ve["index"] for ve in its) == [1, 2, 3, 4, 5, 6]
        assert all(ve["completed"] and ve["started_at"] is not None for ve in its), its
        # Each round's builds are interleaved (A B, B A, ...), shifted by one a round: the first build alternates.
        first = min(its, key=lambda ve: ve["started_at"])
        assert (first["index"], first["build"]) == (1, "ab"[number]), [(v["index"], v["started_at"]) for v in its]
        assert [ve["build"] for ve in sorted(its, key=lambda ve: ve["index"])] == list(
            "abbaab" if number == 0 else "baabba"
        )
    # Round 2 began after round 1's VEs had all completed: it is a round of its own, not more VEs.
    assert min(ve["started_at"] for ve in ves if ve["round"] == 1) > max(
        ve["completed_at"] for ve in ves if ve["round"] == 0
    )
    assert results["summary"]["total"] == 12 and results["summary"]["completed"] == 12
    rounds = results["rounds"]
    assert [(r["round"], r["first_build"], r["summary"]["completed"], r["left_behind"]) for r in rounds] == [
        (0, "a", 6, []),
        (1, "b", 6, []),
    ]
    for entry in rounds:
        assert entry["timings"]["start_all_s"] > 0 and entry["timings"]["takedown_s"] > 0
        assert entry["timings"]["start_latency"]["count"] == 6

    # The host, looked at after each round's takedown and before the next round's set up.
    checks = [json.loads(line) for line in (pytester.path / "between-rounds.jsonl").read_text().splitlines()]
    assert [check["round"] for check in checks] == [0, 1]
    for check in checks:
        assert len(check["its_pids"]) == 12, check  # six inits and six monitors were looked for
        assert (check["alive"], check["left"]) == ([], []), check
    # Round 2 ran new processes, not round 1's still running.
    assert not set(checks[0]["its_pids"]) & set(checks[1]["its_pids"])


def test_compare_against_a_run_of_rounds_uses_every_round(pytester, clean_host, tmp_path):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    archive = tmp_path / "archive"
    first = run_pytest(pytester, names, *QUICK, "--ve-repeat=2", "--ve-parallel=1", f"--ve-report-dir={archive}")
    first.assert_outcomes(passed=8)
    (reference,) = [path for path in archive.iterdir() if path.is_dir()]
    again = tmp_path / "again"
    second = run_pytest(
        pytester,
        names,
        *QUICK,
        "--ve-parallel=1",
        f"--ve-compare={reference / RESULTS_FILE}",
        f"--ve-report-dir={again}",
    )
    second.assert_outcomes(passed=4)
    assert second.ret == pytest.ExitCode.OK
    results = _results(again)
    (comparison,) = [c for c in results["comparisons"] if c["kind"] == "runs"]
    verdicts = {verdict["metric"]: verdict for verdict in comparison["verdicts"]}
    # Every start of both rounds of the reference, against this run's six.
    assert (verdicts["start_latency"]["n_baseline"], verdicts["start_latency"]["n_candidate"]) == (12, 6)
    assert (verdicts["completed"]["n_baseline"], verdicts["completed"]["n_candidate"]) == (12, 6)
