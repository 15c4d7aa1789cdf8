"""A run killed outright (SIGKILL) and recovered; two runs on one root at once."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
from integration_helpers import (
    PING_SUITE,
    Names,
    alive,
    assert_next_run_takes_the_stale_experiment_down,
    lxc_monitors,
    run_pytest,
    started_pytest,
    wait_for,
)

from pytest_lxcexp.engine import network
from pytest_lxcexp.engine.storage import Layout, lock_path


def _settled_monitors(root: str, count: int) -> list[int]:
    """The VEs' monitor PIDs once they stay put: liblxc's daemonizing fork briefly shows a
    second process under the monitor's name, so one snapshot can catch the wrong one."""
    previous: list[int] = []
    for _ in range(100):
        current = lxc_monitors(root)
        if len(current) == count and current == previous:
            return current
        previous = current
        time.sleep(0.3)
    raise AssertionError(f"monitors never settled: {previous}")


def _start_run(
    pytester: pytest.Pytester, names: Names, count: int = 4, pings: int = 200
) -> contextlib.AbstractContextManager[subprocess.Popen]:
    """The ping suite, started and left running (killed if the test leaves it running)."""
    pytester.makepyfile(test_ping=PING_SUITE)
    return started_pytest(
        pytester, names, f"--ve-count={count}", f"--ve-pings={pings}", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"
    )


def _sigkill_mid_run(pytester: pytest.Pytester, names: Names) -> list[int]:
    """Start a real run, SIGKILL it once its VEs run; returns the VEs' monitor PIDs."""
    layout = Layout(names.root)

    def running() -> bool:
        # Running their workload: a monitor each and the workload's log (a monitor alone can be
        # a start still in flight).
        return len(lxc_monitors(names.root)) >= 4 and all(
            os.path.exists(layout.ve_workload_log(index)) for index in range(1, 5)
        )

    with _start_run(pytester, names) as run:
        wait_for(running, run, what="four VEs running")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    # Killed outright: everything is still there, and the state file says whose it is.
    time.sleep(0.5)  # a start in flight when the run died completes on its own
    monitors = lxc_monitors(names.root)
    assert len(monitors) >= 4
    with open(Layout(names.root).marker) as handle:
        marker = json.load(handle)
    assert marker["pid"] == run.pid and marker["tag"] == names.tag
    assert oct(os.stat(Layout(names.root).marker).st_mode & 0o777) == "0o600"
    assert network.bridge_owner(names.bridge) == names.tag
    return monitors


def test_sigkilled_run_is_recovered_by_the_next_run(pytester, clean_host, leftovers):
    names = clean_host
    old_monitors = _sigkill_mid_run(pytester, names)
    assert_next_run_takes_the_stale_experiment_down(pytester, names)
    assert not any(alive(pid) for pid in old_monitors)
    assert leftovers(names) == []


def test_sigkilled_run_is_cleaned_by_lxcexp_takedown(pytester, clean_host, leftovers, cli):
    names = clean_host
    _sigkill_mid_run(pytester, names)
    down = cli("takedown", "--root", names.root)
    assert down.returncode == 0, down.stderr
    assert "4 VEs stopped" in down.stdout and "bridge deleted" in down.stdout, down.stdout
    # Where its time went, step by step.
    assert re.search(r"steps: kill [\d.]+ s, exits [\d.]+ s, .*storage [\d.]+ s", down.stdout), down.stdout
    assert leftovers(names) == []
    again = cli("takedown", "--root", names.root)  # safe to repeat
    assert again.returncode == 0, again.stderr
    assert leftovers(names) == []


def test_a_second_run_on_the_same_root_refuses_and_leaves_the_first_alone(pytester, clean_host, leftovers, cli):
    names = clean_host
    with _start_run(pytester, names, count=3, pings=25) as first:
        wait_for(lambda: len(lxc_monitors(names.root)) == 3, first, what="the first run's VEs running")
        monitors = _settled_monitors(names.root, 3)
        second = run_pytest(pytester, names, "--ve-count=2", timeout=120)
        assert second.ret == pytest.ExitCode.USAGE_ERROR
        lines = [line for line in second.errlines if "--ve-root" in line]
        assert lines == [
            f"ERROR: --ve-root: another lxcexp run (pid {first.pid}) is using {names.root}; wait for it"
        ], second.errlines
        # The CLI's takedown refuses too, while the run holds the root.
        down = cli("takedown", "--root", names.root)
        assert down.returncode == 1 and f"pid {first.pid}" in down.stderr, down.stderr
        assert lxc_monitors(names.root) == monitors  # the first run's VEs untouched
        out, _ = first.communicate(timeout=180)
    assert first.returncode == 0, out
    assert "2 passed" in out, out
    assert "25-ping VEs      : 3" in out, out
    assert not os.path.exists(lock_path(names.root))
    assert leftovers(names) == []
