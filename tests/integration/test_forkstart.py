"""VEs started through the fork server (engine/forkstart.c), and through lxc-start when asked."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from integration_helpers import alive, run_to_completion, running_experiment

from pytest_lxcexp.engine import cgroups, forkstart
from pytest_lxcexp.report import comparable

COUNT = 6


def _exe(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/exe")


def _fds(pid: int) -> list[str]:
    return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]


def test_ves_start_from_the_fork_server_and_hold_nothing_of_it(clean_host, leftovers):
    server = forkstart.build()
    assert server is not None, "the fork server could not be built: `make deps` installs gcc and lxc-dev"
    with running_experiment(clean_host, count=COUNT, parallel=2) as experiment:
        records = run_to_completion(experiment)
        assert len(records) == COUNT
        monitors = {result.monitor for result in experiment.starts.values()}
        assert len(monitors) == COUNT and None not in monitors
        for monitor in monitors:
            # liblxc's monitor is a fork of the server, not of an executed lxc-start.
            assert _exe(monitor) == server
            # The server's pipes to the starter (and the starter's) are closed in every monitor.
            assert not [fd for fd in _fds(monitor) if fd.startswith("pipe:")], _fds(monitor)
        # No server outlives its starts: every process in the experiment's cgroups that runs the
        # server's binary is a VE's monitor.
        servers = {pid for pid in cgroups.experiment_pids(clean_host.tag) if alive(pid) and _exe(pid) == server}
        assert servers == monitors
        assert comparable.host_fingerprint(experiment.config.ve_controllers)["start_path"] == forkstart.FORK_SERVER


def test_lxc_start_per_ve_when_asked(clean_host, leftovers, monkeypatch):
    monkeypatch.setenv(forkstart.CHOICE_VARIABLE, forkstart.LXC_START)
    with running_experiment(clean_host, count=2) as experiment:
        run_to_completion(experiment)
        lxc_start = os.path.realpath(shutil.which("lxc-start") or "lxc-start")
        assert {_exe(result.monitor) for result in experiment.starts.values()} == {lxc_start}
        assert comparable.host_fingerprint(experiment.config.ve_controllers)["start_path"] == forkstart.LXC_START


@pytest.mark.parametrize(
    ("line", "answer"),
    [
        ("no tabs here\n", "E22"),  # not NAME<TAB>LOG<TAB>PIDFILE
        ("a\tb\tc\td\n", "E22"),
        # A container that does not exist: no config, the start is not tried.
        ("lxcexp-not-a-ve\t/dev/null\t/dev/null\n", "4"),
    ],
)
def test_the_server_answers_every_line(tmp_path, line: str, answer: str):
    server = forkstart.build()
    assert server is not None
    done = subprocess.run([server, str(tmp_path)], input=line, capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, f"{answer}\n")
