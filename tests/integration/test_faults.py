"""Faults injected for real: each failed VE reported with its reason, the other VEs'
results intact, and the session failing where VEs failed.

Covered elsewhere: a VE killed mid-run and a VE liblxc refuses to start
(test_plugin_runs.py::test_failures_name_each_ve_and_its_reason); a foreign interface
holding the bridge's name (test_bad_input.py).
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
from integration_helpers import Names, reported_run, running_experiment

from pytest_lxcexp.engine import fleet

WORKLOAD_SUITE = """
import os, signal, time

from pytest_lxcexp.engine import cgroups
from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_break_ve3_workload(ve_experiment):
    # A broken workload.env in ve3's own overlay upper dir, over the base's.
    layout = ve_experiment.layout
    with open(os.path.join(layout.base_rootfs, "etc/lxcexp/workload.env")) as handle:
        lines = handle.read().splitlines()
    broken = [("PINGS=many" if line.startswith("PINGS=") else line) for line in lines]
    os.makedirs(os.path.join(layout.ve_upper(3), "etc/lxcexp"), exist_ok=True)
    with open(os.path.join(layout.ve_upper(3), "etc/lxcexp/workload.env"), "w") as handle:
        handle.write("\\n".join(broken) + "\\n")


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_crash_ve2_workload(ve_experiment):
    # The ping inside ve2 dies: a PID in ve2's own cgroup whose name is ping.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in cgroups.ve_pids(ve_experiment.config.tag, "ve2"):
            try:
                with open(f"/proc/{pid}/comm") as handle:
                    name = handle.read().strip()
            except OSError:
                continue
            if name == "ping":
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.05)
    raise AssertionError("no ping ran in ve2")


def test_completed(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
"""


def _run_faults(pytester: pytest.Pytester, names: Names, suite: str, *options: str) -> tuple[pytest.RunResult, dict]:
    """Run a suite that injects faults: the run, and its VEs in results.json by name."""
    pytester.makepyfile(test_faults=suite)
    result, results = reported_run(pytester, names, *options)
    return result, {ve["name"]: ve for ve in results["ves"]}


def test_crashed_and_broken_workloads_are_named_and_the_rest_complete(pytester, clean_host, leftovers):
    names = clean_host
    result, ves = _run_faults(
        pytester,
        names,
        WORKLOAD_SUITE,
        "--ve-count=6",
        "--ve-pings=25",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=64M",
    )
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*2 of 6 VEs did not complete:*",
            "*ve2: incomplete: * of 25 pings answered; its workload was killed by SIGKILL (rc=137)*",
            "*ve3: incomplete: 0 of 25 pings answered; its workload said: ping: invalid number 'many'*",
        ]
    )
    result.stdout.fnmatch_lines(["25-ping VEs      : 4", "Incomplete VEs   : 2", "Takedown: nothing left behind"])
    assert [name for name, ve in ves.items() if ve["completed"]] == ["ve1", "ve4", "ve5", "ve6"]
    assert all(ves[name]["pings"] == 25 for name in ("ve1", "ve4", "ve5", "ve6"))
    assert "killed by SIGKILL" in ves["ve2"]["failure"] and ves["ve2"]["fault"]
    assert leftovers(names) == []


ENOSPC_SUITE = """
import errno, os

from pytest_lxcexp.fixtures import describe_failures


def test_start_two(ve_experiment):
    assert all(result.ok for result in ve_experiment.start(1, 2))


def test_fill_the_tmpfs(ve_experiment):
    # A file in the experiment's own tmpfs takes every block left.
    with open(os.path.join(ve_experiment.config.root, "filler"), "wb", buffering=0) as handle:
        for size in (1 << 20, 4096):
            try:
                while handle.write(b"\\0" * size):
                    pass
            except OSError as error:
                assert error.errno == errno.ENOSPC
    assert os.statvfs(ve_experiment.config.root).f_bavail == 0


def test_start_two_more(ve_experiment):
    ve_experiment.start(3, 4)  # each may fail to start or start and fail to log: both are reported


def test_completed(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
"""


def test_a_full_tmpfs_is_named_as_the_reason(pytester, clean_host, leftovers):
    names = clean_host
    result, ves = _run_faults(
        pytester,
        names,
        ENOSPC_SUITE,
        "--ve-count=4",
        "--ve-pings=150",
        "--ve-ping-interval=0.05",
        "--ve-tmpfs-size=16M",
    )
    result.assert_outcomes(passed=3, failed=1)
    full = f"host limit: the tmpfs at {names.root} is full (ENOSPC; raise --ve-tmpfs-size)"
    result.stdout.fnmatch_lines(["*4 of 4 VEs did not complete:*"])
    for name in ("ve1", "ve2", "ve3", "ve4"):
        result.stdout.fnmatch_lines([f"*{name}: *{full}*"])
    assert all(full in ve["failure"] for ve in ves.values()), {n: v["failure"] for n, v in ves.items()}
    assert "Takedown: nothing left behind" in result.stdout.str()
    assert leftovers(names) == []


PIDS_SUITE = """
import os

from pytest_lxcexp.engine import cgroups
from pytest_lxcexp.fixtures import describe_failures


def test_first_two_complete(ve_experiment):
    assert all(result.ok for result in ve_experiment.start(1, 2))
    records = ve_experiment.wait(1, 2)
    assert all(record.completed for record in records), describe_failures(records)


def test_the_experiments_pids_limit_is_reached(ve_experiment):
    # The experiment's own pids cgroup, never the host's: no process more in it.
    tag = ve_experiment.config.tag
    for hierarchy in cgroups.hierarchies():
        path = os.path.join(hierarchy, cgroups.container_dir(tag))
        if os.path.exists(os.path.join(path, "pids.max")):
            with open(os.path.join(path, "pids.current")) as handle:
                current = handle.read().strip()
            with open(os.path.join(path, "pids.max"), "w") as handle:
                handle.write(current)
            return
    raise AssertionError("no pids controller over the experiment's cgroup")


def test_two_more_hit_the_limit(ve_experiment):
    ve_experiment.start(3, 4)
    records = ve_experiment.wait(3, 4)
    assert all(record.completed for record in records), describe_failures(records)
"""


def test_a_pids_limit_reached_mid_run_is_named(pytester, clean_host, leftovers):
    names = clean_host
    result, ves = _run_faults(
        pytester,
        names,
        PIDS_SUITE,
        "--ve-count=4",
        "--ve-pings=3",
        "--ve-ping-interval=0.2",
        "--ve-timeout=15",
        "--ve-tmpfs-size=64M",
    )
    result.assert_outcomes(passed=2, failed=1)
    limit = "host limit: out of processes (fork failed with EAGAIN"
    result.stdout.fnmatch_lines(["*2 of 2 VEs did not complete:*", f"*ve3: *{limit}*", f"*ve4: *{limit}*"])
    assert ves["ve1"]["completed"] and ves["ve2"]["completed"]
    assert limit in ves["ve3"]["failure"] and limit in ves["ve4"]["failure"]
    assert "Takedown: nothing left behind" in result.stdout.str()
    assert leftovers(names) == []


def test_a_monitor_that_never_answers_costs_one_deadline_not_the_run(
    clean_host: Names, monkeypatch: pytest.MonkeyPatch
) -> None:
    # liblxc's state() and stop() wait on the VE's monitor without a deadline (lxc-ls, lxc-info
    # and lxc-stop hang on it too). A stopped monitor answers nothing, as a build that
    # deadlocks would not: without the deadline ve_states waited for good.
    monkeypatch.setattr(fleet, "QUERY_DEADLINE", 3.0)
    with running_experiment(clean_host, count=2, network="none", workload="idle") as experiment:
        results = experiment.start(1, 2)
        assert all(result.ok for result in results), results
        monitor = results[0].monitor
        assert monitor
        os.kill(monitor, signal.SIGSTOP)
        try:
            found: dict = {}
            # One helper for both (workers=1): ve2 is asked after the stuck ve1. A thread, so
            # that a hang fails the test instead.
            worker = threading.Thread(
                target=lambda: found.update(
                    states=fleet.ve_states(experiment.layout, [1, 2]), stopped=fleet.stop_all(experiment.layout, [1, 2])
                ),
                daemon=True,
            )
            worker.start()
            worker.join(timeout=120)
            assert not worker.is_alive(), "a monitor that never answers kept the tool waiting"
            states = found["states"]
            assert states[1].state == "UNKNOWN (its LXC monitor did not answer liblxc's state in 3 s)"
            assert states[2].state == "RUNNING"
            assert found["stopped"] == {"ve2"}
            # Not known to be stopped: not destroyed, and the reason named.
            with pytest.raises(RuntimeError, match=r"ve1 \(UNKNOWN \(its LXC monitor did not answer"):
                experiment.destroy(1, 1)
        finally:
            os.kill(monitor, signal.SIGCONT)
