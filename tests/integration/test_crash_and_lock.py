"""A run killed outright (SIGKILL) and recovered; two runs on one root at once."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from pytest_lxcexp.engine import network
from pytest_lxcexp.engine.storage import Layout, lock_path

PING_SUITE = (pathlib.Path(__file__).parents[2] / "example_suites" / "ping" / "test_ping.py").read_text()


def _monitors(root: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if handle.read().startswith(f"[lxc monitor] {root} ".encode()):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def _settled_monitors(root: str, count: int) -> list[int]:
    """The VEs' monitor PIDs once they stay put: liblxc's daemonizing fork briefly shows a
    second process under the monitor's name, so one snapshot can catch the wrong one."""
    previous: list[int] = []
    for _ in range(100):
        current = _monitors(root)
        if len(current) == count and current == previous:
            return current
        previous = current
        time.sleep(0.3)
    raise AssertionError(f"monitors never settled: {previous}")


def _wait_for(condition, run: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if run.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{run.stdout.read() if run.stdout else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for PID 1 to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _start_run(pytester, names, count: int = 4, pings: int = 200) -> subprocess.Popen:
    pytester.makepyfile(test_ping=PING_SUITE)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--ve-count={count}",
            f"--ve-pings={pings}",
            "--ve-ping-interval=0.2",
            "--ve-tmpfs-size=64M",
            *names.options(),
            "-p",
            "no:cacheprovider",
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _sigkill_mid_run(pytester, names) -> list[int]:
    """Start a real run, SIGKILL it once its VEs run; returns the VEs' monitor PIDs."""
    run = _start_run(pytester, names)
    layout = Layout(names.root)
    # Running their workload: a monitor each and the workload's log (a monitor alone can be
    # a start still in flight).
    running = lambda: len(_monitors(names.root)) >= 4 and all(  # noqa: E731
        os.path.exists(layout.ve_workload_log(index)) for index in range(1, 5)
    )
    try:
        _wait_for(running, run, what="four VEs running")
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Killed outright: everything is still there, and the state file says whose it is.
    time.sleep(0.5)  # a start in flight when the run died completes on its own
    monitors = _monitors(names.root)
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
    result = pytester.runpytest_subprocess(
        "--ve-count=2",
        "--ve-pings=2",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=64M",
        *names.options(),
        "-p",
        "no:cacheprovider",
        timeout=300,
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"lxcexp: {names.root} holds a stale experiment of ours*taking it down first"])
    result.stdout.fnmatch_lines(["Total VEs        : 2", "Takedown: nothing left behind"])
    assert not any(_alive(pid) for pid in old_monitors)
    assert leftovers(names) == []


def test_sigkilled_run_is_cleaned_by_lxcexp_takedown(pytester, clean_host, leftovers, cli):
    names = clean_host
    _sigkill_mid_run(pytester, names)
    down = cli("takedown", "--root", names.root)
    assert down.returncode == 0, down.stderr
    assert "4 VEs stopped" in down.stdout and "bridge deleted" in down.stdout, down.stdout
    assert leftovers(names) == []
    again = cli("takedown", "--root", names.root)  # safe to repeat
    assert again.returncode == 0, again.stderr
    assert leftovers(names) == []


def test_a_second_run_on_the_same_root_refuses_and_leaves_the_first_alone(pytester, clean_host, leftovers, cli):
    names = clean_host
    first = _start_run(pytester, names, count=3, pings=25)
    try:
        _wait_for(lambda: len(_monitors(names.root)) == 3, first, what="the first run's VEs running")
        monitors = _settled_monitors(names.root, 3)
        second = pytester.runpytest_subprocess(
            "--ve-count=2", *names.options(), "-p", "no:cacheprovider", timeout=120
        )
        assert second.ret == pytest.ExitCode.USAGE_ERROR
        lines = [line for line in second.errlines if "--ve-root" in line]
        assert lines == [
            f"ERROR: --ve-root: another lxcexp run (pid {first.pid}) is using {names.root}; wait for it"
        ], second.errlines
        # The CLI's takedown refuses too, while the run holds the root.
        down = cli("takedown", "--root", names.root)
        assert down.returncode == 1 and f"pid {first.pid}" in down.stderr, down.stderr
        assert _monitors(names.root) == monitors  # the first run's VEs untouched
        out, _ = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, out
    assert "2 passed" in out, out
    assert "25-ping VEs      : 3" in out, out
    assert not os.path.exists(lock_path(names.root))
    assert leftovers(names) == []
