"""--ve-count=max on real VEs: each ramp stops for its reason, names it in the summary and in
results.json, and leaves nothing behind. Small on purpose: steps of a few VEs."""

from __future__ import annotations

import pytest
from integration_helpers import PING_SUITE, reported_run, run_pytest

from pytest_lxcexp.suites import SUITES_DIR

RAMP_SUITE = (SUITES_DIR / "ramp" / "test_ramp.py").read_text()


def ramp(pytester: pytest.Pytester, names, *options: str) -> tuple[pytest.RunResult, dict]:
    pytester.makepyfile(test_ramp=RAMP_SUITE)
    return reported_run(pytester, names, "--ve-count=max", *options)


def test_a_ramp_with_a_small_tmpfs_stops_for_the_tmpfs(pytester, clean_host, leftovers):
    names = clean_host
    # Each VE writes 2 MiB into its overlay upper, on the 24 MiB tmpfs (the base takes about 2).
    result, results = ramp(
        pytester,
        names,
        "--ve-tmpfs-size=24M",
        "--ve-ramp-step=4",
        "--ve-ramp-growth=2",
        "--ve-workload=cmd:dd if=/dev/zero of=/fill bs=64k count=32",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["Ramp (--ve-count=max): reached * VEs running*", "  stopped by     : tmpfs: *"])
    result.stdout.fnmatch_lines(["  raise it with  : --ve-tmpfs-size"])
    stop = results["ramp"]["stop"]
    assert stop["limit"] == "tmpfs" and stop["setting"] == "--ve-tmpfs-size"
    assert "No space left on device" in stop["kernel"] or "no free blocks" in stop["kernel"]
    assert 0 < results["ramp"]["reached"] < 12  # 24 MiB holds fewer than 12 VEs of 2 MiB
    assert results["metrics"]["ramp_reached"] == results["ramp"]["reached"]
    result.stdout.fnmatch_lines(["Takedown: nothing left behind"])
    assert leftovers(names) == []


def test_a_ramp_with_a_low_objective_stops_for_it(pytester, clean_host, leftovers):
    names = clean_host
    result, results = ramp(
        pytester, names, "--ve-workload=idle", "--ve-ramp-step=3", "--ve-slo=start_p99:1ms", "--ve-tmpfs-size=64M"
    )
    result.assert_outcomes(passed=1)
    # No liblxc start takes a millisecond: the first step breaks it, with its three VEs up.
    result.stdout.fnmatch_lines(
        [
            "Ramp (--ve-count=max): reached 3 VEs running without a failure*",
            "  stopped by     : slo: objective start_p99:1ms broken: start_p99 of step 1's 3 starts was * ms",
            "  raise it with  : a looser --ve-slo",
            "  objectives     : start_p99:1ms",
        ]
    )
    ramp_section = results["ramp"]
    assert ramp_section["stop"]["limit"] == "slo" and ramp_section["slo"] == ["start_p99:1ms"]
    assert [point["running"] for point in ramp_section["points"]] == [3]
    # Three VEs: a monitor each, and their init, which sleeps in the shell's place after an idle
    # workload (counted once the count holds still: a start's short-lived process is gone).
    assert ramp_section["points"][0]["processes"] == 6
    assert leftovers(names) == []


def test_a_ramp_with_a_low_pids_budget_stops_for_pids(pytester, clean_host, leftovers):
    names = clean_host
    # An idle VE has one process in the budget once up (its init, sleeping in the shell's place;
    # the monitor is outside) and forks on its way there: 5 leave room for five VEs at most,
    # and a later step's VEs cannot fork.
    result, results = ramp(
        pytester,
        names,
        "--ve-workload=idle",
        "--ve-pids-max=total:5",
        "--ve-ramp-step=2",
        "--ve-ramp-growth=1",
        "--ve-tmpfs-size=64M",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  stopped by     : pids: *", "  raise it with  : *--ve-pids-max*"])
    stop = results["ramp"]["stop"]
    assert stop["limit"] == "pids"
    assert "Resource temporarily unavailable" in stop["kernel"] or "pids.events: max" in stop["kernel"]
    assert results["ramp"]["reached"] <= 6
    assert results["metadata"]["options"]["pids_max"] == 5
    assert leftovers(names) == []


def test_a_ramp_with_a_low_memory_total_stops_for_memory(pytester, clean_host, leftovers):
    names = clean_host
    # VEs that each hold 8 MiB (dd's buffer, dd blocked on a pipe nobody reads), far past the
    # 1.5 MiB a step is cut by (test_a_ramp_under_a_memory_limit_stops_before_it): the first
    # step of 16 fills the 100 MiB total (on cgroup v1 the starters' too), and the OOM killer
    # must take VEs' processes, never the tool's (it once took both starters first).
    result, results = ramp(
        pytester,
        names,
        "--ve-workload=cmd:dd if=/dev/zero bs=8M count=1 | sleep 1000",
        "--ve-memory-max=total:100M",
        "--ve-parallel=2",
        "--ve-ramp-step=16",
        "--ve-ramp-growth=1",
        "--ve-tmpfs-size=64M",
    )
    out = result.stdout.str()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  stopped by     : memory: *", "  raise it with  : *--ve-memory-max*"])
    stop = results["ramp"]["stop"]
    # The OOM killer's count, or a start refused in the kernel's words (a veth at the limit).
    assert stop["limit"] == "memory" and ("oom_kill" in stop["kernel"] or "Cannot allocate memory" in stop["kernel"])
    assert "the starter process died" not in out, out
    assert leftovers(names) == []


def test_a_ramp_under_a_memory_limit_stops_before_it(pytester, clean_host, leftovers):
    names = clean_host
    # 100 MiB, 64 of it kept for the two starters: its steps were cut to the host's memory only,
    # and at about 150 VEs the kernel OOM-killed inside the experiment, the starters first
    # (v1), their VEs "failed for no host limit named", and two starts hung in liblxc.
    result, results = ramp(
        pytester,
        names,
        "--ve-workload=idle",
        "--ve-network=none",
        "--ve-memory-max=total:100M",
        "--ve-parallel=2",
        "--ve-ramp-step=10",
        "--ve-ramp-growth=2",
        "--ve-tmpfs-size=64M",
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["  stopped by     : memory: *--ve-memory-max*", "  raise it with  : --ve-memory-max"])
    ramp_section = results["ramp"]
    assert ramp_section["stop"]["limit"] == "memory", ramp_section["stop"]
    assert ramp_section["stop"]["kernel"].startswith("memory cgroup: limit 100 MiB, ")
    assert all(point["failed"] == 0 for point in ramp_section["points"]), ramp_section["points"]
    assert 0 < ramp_section["reached"] < 60  # 36 MiB at 0.6 MiB or more a VE (the cgroup's charge)
    assert leftovers(names) == []


def test_ramp_usage_errors_come_before_anything_is_made(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(pytester, names, "--ve-count=max")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--ve-count=max: test_ping.py::test_start* runs ranges of a fixed count*ve_ramp*"])
    pytester.makepyfile(test_ping=RAMP_SUITE)
    result = run_pytest(pytester, names, "--ve-count=10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_ramp: ve_ramp needs --ve-count=max*"])
    # A ramp is held to no count by the preflight, but to one VE beside the starters: 40 MiB
    # holds not the two starters' 64 (a ramp once set up, then stopped before its first VE).
    result = run_pytest(pytester, names, "--ve-count=max", "--ve-memory-max=total:40M", "--ve-parallel=2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ve-memory-max: total:40M holds not one VE beside the 2 starters' 64 MiB*"])
    assert leftovers(names) == []
