"""The plugin as users run it: real pytest sessions (in subprocesses) over real VEs."""

from __future__ import annotations

import os
import time

from integration_helpers import (
    FAULTY_SUITE,
    PING_SUITE,
    alive,
    assert_next_run_takes_the_stale_experiment_down,
    run_pytest,
)

from pytest_lxcexp.engine import network


def test_ping_suite_completes_every_ve_and_leaves_nothing(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(
        pytester,
        names,
        "--ve-count=30",
        "--ve-batch=10",
        "--ve-pings=3",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=256M",
    )
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(
        [
            "*lxcexp results*",
            "Results",
            "Disk Usage of VEs: * " + names.root,
            "Total VEs        : 30",
            "3-ping VEs       : 30",
            "Incomplete VEs   : 0",
            "No log file VEs  : 0",
            "30 VEs have a PID",
            "Timings",
            "setup tmpfs*",
            "start latency (ms)    : p50 *",
            "Takedown: nothing left behind",
        ]
    )
    assert leftovers(names) == []


def test_failures_name_each_ve_and_its_reason(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_faulty=FAULTY_SUITE)
    # ve2 is killed once all six have started: it must still be pinging then, also where six
    # starts take 14 s (a TCG VM of make test-hosts, where 5 s of pings had ended).
    result = run_pytest(pytester, names, "--ve-count=6", "--ve-pings=25", "--ve-ping-interval=1", "--ve-tmpfs-size=64M")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*1 of 6 VEs failed to start:*",
            "*ve4: liblxc: *",
            "*2 of 6 VEs did not complete:*",
            "*ve2: not running (state STOPPED) after * of 25 pings*",
            "*ve4: failed to start: liblxc: *",
        ]
    )
    result.stdout.fnmatch_lines(["25-ping VEs      : 4", "No log file VEs  : 1", "4 VEs have a PID"])
    assert leftovers(names) == []


def test_keep_leaves_experiment_up_for_the_cli(pytester, clean_host, leftovers, cli):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(
        pytester, names, "--ve-count=4", "--ve-pings=2", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M", "--ve-keep"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [f"*--ve-keep: the experiment is still up; take it down with: lxcexp takedown --root {names.root}"]
    )
    assert network.bridge_owner(names.bridge) == names.tag
    info = cli("info", "--root", names.root)
    assert info.returncode == 0 and info.stdout.count("RUNNING") == 4
    down = cli("takedown", "--root", names.root)
    assert down.returncode == 0, down.stderr
    assert "4 VEs stopped" in down.stdout
    assert leftovers(names) == []


def test_foreign_root_is_refused_before_anything_is_made(pytester, clean_host, leftovers):
    names = clean_host
    os.makedirs(names.root)
    with open(os.path.join(names.root, "precious.txt"), "w") as handle:
        handle.write("not lxcexp's")
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(pytester, names, "--ve-count=2", timeout=120)
    assert result.ret == 4  # usage error
    result.stderr.fnmatch_lines([f"*--ve-root: {names.root} is not empty and carries no pytest-lxcexp marker*"])
    assert os.listdir(names.root) == ["precious.txt"]
    assert network.bridge_owner(names.bridge) is None
    os.remove(os.path.join(names.root, "precious.txt"))
    os.rmdir(names.root)
    assert leftovers(names) == []


def test_cli_runs_the_original_steps(clean_host, leftovers, cli):
    names = clean_host
    setup = cli("setup", "8", *names.cli_options(), "--pings", "2", "--ping-interval", "0.2", "--tmpfs-size", "64M")
    assert setup.returncode == 0, setup.stderr
    assert cli("start", "1", "4", "--root", names.root).returncode == 0
    bad = cli("start", "5", "9", "--root", names.root)
    assert bad.returncode == 2 and "outside the experiment's 8 VEs" in bad.stderr
    assert cli("start", "5", "8", "--root", names.root).returncode == 0
    again = cli("setup", "8", "--root", names.root, "--bridge", names.bridge)
    assert again.returncode == 2 and f"lxcexp takedown --root {names.root}" in again.stderr
    time.sleep(1.5)
    stats = cli("stats", "--root", names.root)
    assert "Total VEs        : 8" in stats.stdout and "2-ping VEs       : 8" in stats.stdout, stats.stdout
    part = cli("stats", "3", "4", "--root", names.root)
    assert "Total VEs        : 2" in part.stdout
    assert cli("takedown", "--root", names.root).returncode == 0
    assert cli("takedown", "--root", names.root).returncode == 0  # idempotent
    assert leftovers(names) == []


def test_stale_experiment_is_taken_down_before_a_new_run(pytester, clean_host, leftovers, cli):
    names = clean_host
    # A run that died without its takedown: VEs still running in the root.
    setup = cli("setup", "3", *names.cli_options(), "--pings", "1000", "--tmpfs-size", "64M")
    assert setup.returncode == 0, setup.stderr
    assert cli("start", "--root", names.root).returncode == 0
    old_pids = [int(line.split()[2]) for line in cli("info", "--root", names.root).stdout.splitlines()[1:]]
    assert all(alive(pid) for pid in old_pids)

    assert_next_run_takes_the_stale_experiment_down(pytester, names)
    assert not any(alive(pid) for pid in old_pids)
    assert leftovers(names) == []
