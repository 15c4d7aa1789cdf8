"""Ctrl-C and SIGTERM at every phase of a real run: a full takedown, zero leftovers, and the
results so far written, saying the run was interrupted.

Two ways to hit a phase:
- a conftest in the run's directory that sends the signal to its own pytest process at
  that moment (right after the tmpfs is mounted but before it is marked ours, halfway
  through the clones, after the second start, ...): exact, and it hits the narrow
  windows a timer would miss. Only the timing is arranged; LXC, the mounts and the
  bridge are real.
- from outside, as a user would: watch the host until the phase shows (LXC monitors of
  this root running) and signal the pytest process, or its whole process group as a
  terminal's Ctrl-C does.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable

import pytest
from integration_helpers import PING_SUITE, Names, lxc_monitors, results_in, run_pytest, started_pytest, wait_for

from pytest_lxcexp.engine.storage import Layout

# Sends LXCEXP_SIGNAL to this very pytest process at LXCEXP_SIGNAL_AT.
SIGNALLING_CONFTEST = """
import os, signal, threading, time

from pytest_lxcexp.engine import base, experiment, fleet, network, storage
from pytest_lxcexp import fixtures
from pytest_lxcexp.report import plugin as report_plugin

AT = os.environ["LXCEXP_SIGNAL_AT"]
SIG = getattr(signal, os.environ["LXCEXP_SIGNAL"])


def fire():
    os.kill(os.getpid(), SIG)
    time.sleep(0.5)  # the handler runs here, in the main thread


def after(module, name, when=lambda *a, **k: True):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            fire()
        return result

    setattr(module, name, wrapper)


def before(module, name):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        fire()
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


if AT == "mount":  # mounted, not yet marked ours
    after(storage, "mount_tmpfs")
elif AT == "base":
    after(base, "install_base")
elif AT == "network":  # the bridge exists, the run has not taken it over yet
    after(network, "create_network")
elif AT == "clones":  # halfway through the clones
    after(fleet, "ve_config_text", when=lambda *a, **k: (a[2] if len(a) > 2 else k.get("index")) == 3)
elif AT == "start":  # two VEs started, the others not yet
    calls = []
    after(fleet, "record_start", when=lambda layout, result: calls.append(1) or len(calls) == 2)
elif AT == "wait":
    original_wait = experiment.Experiment.wait

    def wait(self, *args, **kwargs):
        threading.Timer(1.0, os.kill, (os.getpid(), SIG)).start()
        return original_wait(self, *args, **kwargs)

    experiment.Experiment.wait = wait
elif AT == "takedown":  # a signal during the takedown is noted; the takedown goes on
    before(fixtures, "takedown_ves")
elif AT == "reporting":  # the takedown is done, the results are about to be built and written
    before(report_plugin, "own_results")
"""

PHASES = [
    # (where, signal, the words the summary uses, VEs started)
    ("mount", "SIGINT", "while mounting the tmpfs", 0),
    ("base", "SIGTERM", "while installing the base", 0),
    ("network", "SIGINT", "while creating the network", 0),
    ("clones", "SIGTERM", "while creating the clones", 0),
    # Two starts reported; the starter may finish a third before it stops.
    ("start", "SIGINT", "while starting VEs", (2, 3)),
    ("start", "SIGTERM", "while starting VEs", (2, 3)),
    ("wait", "SIGTERM", "while waiting for VEs to complete", 6),
    ("takedown", "SIGINT", "during the takedown", 6),
    ("reporting", "SIGTERM", "while reporting", 6),
]


def _run_options(report_dir: pathlib.Path, pings: int = 3) -> list[str]:
    return [
        "--ve-count=6",
        "--ve-batch=3",
        "--ve-parallel=1",  # starts one after another: "two started" is exact
        f"--ve-pings={pings}",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=64M",
        f"--ve-report-dir={report_dir}",
    ]


@pytest.mark.parametrize(("where", "signame", "words", "started"), PHASES, ids=[f"{p[0]}-{p[1]}" for p in PHASES])
def test_signal_at_each_phase_takes_everything_down(
    pytester, clean_host, leftovers, monkeypatch, where, signame, words, started
):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    pytester.makeconftest(SIGNALLING_CONFTEST)
    monkeypatch.setenv("LXCEXP_SIGNAL_AT", where)
    monkeypatch.setenv("LXCEXP_SIGNAL", signame)
    report_dir = pytester.path / "reports"
    # Waiting must outlast the timer's second: more pings there.
    pings = 30 if where == "wait" else 3
    result = run_pytest(pytester, names, *_run_options(report_dir, pings=pings), timeout=180)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str() + result.stderr.str()
    assert leftovers(names) == []
    out = result.stdout.str()
    assert f"INTERRUPTED by {signame} {words}" in out, out
    assert "Takedown: nothing left behind" in out
    if started == 0:
        assert "no VE was started" in out
    elif isinstance(started, tuple):
        assert any(f"{n} of 6 VEs were started, {6 - n} never were" in out for n in started), out
    results = results_in(report_dir)
    interrupted = results["session"]["interrupted"]
    assert interrupted["signal"] == signame and interrupted["description"] == f"{signame} {words}"
    assert results["session"]["exitstatus"] == pytest.ExitCode.INTERRUPTED or where in ("takedown", "reporting")
    if started:
        # What was gathered is kept: every VE has its record, the started ones with their start.
        assert len(results["ves"]) == 6
        recorded = sum(ve["started_at"] is not None for ve in results["ves"])
        assert recorded in started if isinstance(started, tuple) else recorded == started
    if where in ("takedown", "reporting"):
        # Interrupted only after the VEs completed: their results are whole.
        assert results["summary"]["completed"] == 6


def _interrupted_from_outside(
    pytester: pytest.Pytester,
    names: Names,
    ves_up: Callable[[], bool],
    what: str,
    interrupt: Callable[[subprocess.Popen], None],
) -> str:
    """Start a long run, wait until the host shows `what`, interrupt it from outside as a user
    would, and return its output once it has ended interrupted with a full takedown."""
    pytester.makepyfile(test_ping=PING_SUITE)
    with started_pytest(pytester, names, *_run_options(pytester.path / "reports", pings=200)) as run:
        wait_for(ves_up, run, what=what)
        interrupt(run)
        out, _ = run.communicate(timeout=120)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "Takedown: nothing left behind" in out, out
    return out


def test_ctrl_c_from_a_terminal_while_ves_run(pytester, clean_host, leftovers):
    """SIGINT to the whole process group, as a terminal's Ctrl-C, once VEs run."""
    names = clean_host
    out = _interrupted_from_outside(
        pytester,
        names,
        lambda: len(lxc_monitors(names.root)) >= 3,
        "three VEs running",
        lambda run: os.killpg(run.pid, signal.SIGINT),
    )
    assert "INTERRUPTED by SIGINT" in out, out
    assert leftovers(names) == []
    results = results_in(pytester.path / "reports")
    assert results["session"]["interrupted"]["signal"] == "SIGINT"


def test_sigterm_from_outside_while_waiting(pytester, clean_host, leftovers):
    """SIGTERM to the pytest process alone (as `kill PID` or a CI runner's timeout)."""
    names = clean_host

    def sigterm_while_waiting(run: subprocess.Popen) -> None:
        time.sleep(1.0)  # into test_completed's wait
        run.send_signal(signal.SIGTERM)

    def all_six_starts_recorded() -> bool:
        # The tool's own record of each start (not the monitors, which exist before a start
        # returns: on a slow VM the sixth was still starting when they were six).
        try:
            with open(Layout(names.root).starts_log) as handle:
                return sum(1 for line in handle if line.strip()) == 6
        except FileNotFoundError:
            return False

    out = _interrupted_from_outside(
        pytester, names, all_six_starts_recorded, "all six starts recorded", sigterm_while_waiting
    )
    assert "INTERRUPTED by SIGTERM" in out and "all 6 VEs were started" in out, out
    assert leftovers(names) == []


def test_repeated_ctrl_c_during_takedown_does_not_cut_it_short(pytester, clean_host, leftovers):
    """A user hammering Ctrl-C: the first interrupts, the second is noted, the takedown finishes."""
    names = clean_host

    def ctrl_c_twice(run: subprocess.Popen) -> None:
        os.killpg(run.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(run.pid, signal.SIGINT)

    out = _interrupted_from_outside(
        pytester, names, lambda: len(lxc_monitors(names.root)) == 6, "all six VEs running", ctrl_c_twice
    )
    assert "SIGINT noted; finishing the takedown first" in out, out
    assert leftovers(names) == []
