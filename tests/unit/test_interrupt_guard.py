"""Interrupts without the host: the guard's signal policy, children that neither inherit the
handler nor get cut in half, critical sections, and the plugin's session under SIGTERM."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from pytest_lxcexp.engine import children
from pytest_lxcexp.engine.signals import signals_deferred
from pytest_lxcexp.interrupts import GIVE_UP_AFTER, InterruptGuard, phase_words, shielded


@pytest.fixture
def guard():
    """A guard installed for the test, with the handlers it replaced put back afterwards."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    phase = {"now": "start"}
    installed = InterruptGuard(lambda: phase["now"], lambda: "lxcexp takedown --root /x")
    assert installed.install()
    installed.phase = phase  # type: ignore[attr-defined] - the test moves the phase along
    yield installed
    installed.uninstall()
    assert {signum: signal.getsignal(signum) for signum in before} == before


def _signal_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.5)  # the handler runs here, in this (the main) thread


def test_first_sigterm_raises_keyboardinterrupt_naming_signal_and_phase(guard: InterruptGuard) -> None:
    with pytest.raises(KeyboardInterrupt, match="SIGTERM received while starting VEs"):
        _signal_self(signal.SIGTERM)
    assert guard.first is not None
    assert (guard.first.signal, guard.first.phase) == ("SIGTERM", "start")
    assert guard.first.to_dict()["description"] == "SIGTERM while starting VEs"


def test_later_signals_are_noted_until_the_user_insists(guard: InterruptGuard, capfd: pytest.CaptureFixture) -> None:
    with pytest.raises(KeyboardInterrupt):
        _signal_self(signal.SIGINT)
    guard.phase["now"] = "takedown"  # type: ignore[attr-defined]
    for _ in range(GIVE_UP_AFTER - 1):
        _signal_self(signal.SIGINT)  # noted: the takedown must go on
    assert "finishing the takedown first" in capfd.readouterr().err
    with pytest.raises(KeyboardInterrupt, match="3 times"):
        _signal_self(signal.SIGTERM)
    assert "lxcexp takedown --root /x" in capfd.readouterr().err
    assert [i.phase for i in guard.received] == ["start", "takedown", "takedown", "takedown"]


def test_a_shielded_block_notes_without_raising(guard: InterruptGuard) -> None:
    with shielded(guard):
        _signal_self(signal.SIGTERM)
    assert guard.first is not None and guard.first.signal == "SIGTERM"
    assert guard.shielded  # once interrupted, later signals stay noted


def test_install_outside_the_main_thread_leaves_python_defaults() -> None:
    results = []
    guard = InterruptGuard(lambda: "x")
    thread = threading.Thread(target=lambda: results.append(guard.install()))
    thread.start()
    thread.join()
    assert results == [False] and not guard.installed


@pytest.mark.parametrize(
    ("phase", "words"),
    [
        ("setup tmpfs", "while mounting the tmpfs"),
        ("setup clones", "while creating the clones"),
        ("after setup clones", "after creating the clones"),
        ("wait", "while waiting for VEs to complete"),
        ("reporting", "while reporting"),
        ("something new", "during something new"),
    ],
)
def test_phase_words(phase: str, words: str) -> None:
    assert phase_words(phase) == words


# A process of map_in_processes: what it inherited, then each item slowly (its begin and end marked).
CHILD_VIEW = (
    "import json, os, signal, sys, time\n"
    "for line in sys.stdin:\n"
    "    item = int(line)\n"
    "    print(json.dumps({'item': item, 'own_group': os.getpgid(0) == os.getpid(),\n"
    "        'blocked': sorted(signal.pthread_sigmask(signal.SIG_BLOCK, set()))}), flush=True)\n"
)
SLOW = (
    "import json, pathlib, sys, time\n"
    "for line in sys.stdin:\n"
    "    item = int(line)\n"
    "    (pathlib.Path(sys.argv[1]) / f'began-{item}').touch()\n"
    "    time.sleep(float(sys.argv[2]))\n"
    "    (pathlib.Path(sys.argv[1]) / f'ended-{item}').touch()  # an item is never cut in half\n"
    "    print(json.dumps({'item': item}), flush=True)\n"
)


def test_processes_get_a_group_of_their_own_and_no_blocked_signal(guard: InterruptGuard) -> None:
    results = children.map_in_processes([sys.executable, "-c", CHILD_VIEW], ["1", "2", "3"], workers=3)
    assert [{k: v for k, v in r.items() if k != "item"} for r in results] == [{"own_group": True, "blocked": []}] * 3
    # The parent's own mask is back to what it was (nothing blocked).
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == set()


def test_an_interrupted_parent_stops_its_processes_after_their_current_item(guard: InterruptGuard, tmp_path: Path):
    timer = threading.Timer(0.9, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        children.map_in_processes([sys.executable, "-c", SLOW, str(tmp_path), "0.3"], list(map(str, range(20))), 2)
    timer.join()
    # Every process was reaped before the interrupt went on (no zombie, none still running).
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)
    began = {p.name.split("-")[1] for p in tmp_path.glob("began-*")}
    ended = {p.name.split("-")[1] for p in tmp_path.glob("ended-*")}
    assert began == ended, "a process was killed in the middle of an item"
    assert 2 <= len(ended) < 20, "processes should stop after their current item, not run all"
    time.sleep(0.5)
    assert {p.name for p in tmp_path.glob("began-*")} == {f"began-{i}" for i in began}


def test_a_process_that_outlives_the_reap_timeout_is_killed(
    guard: InterruptGuard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guard, not the ambient handler: a shell's background job inherits SIGINT ignored.
    monkeypatch.setattr(children, "REAP_TIMEOUT", 0.5)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        children.map_in_processes([sys.executable, "-c", SLOW, str(tmp_path), "60"], ["1"], 1)
    timer.join()
    assert time.monotonic() - began < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("other_thread", [False, True], ids=["alone", "with-another-thread"])
def test_signals_deferred_delivers_after_the_block(guard: InterruptGuard, other_thread: bool) -> None:
    # Another live thread (the report's sampler, xdist's execnet) is where the kernel delivers a
    # signal the main thread blocks; the block must hold it all the same.
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    if other_thread:
        thread.start()
    done = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.2)
                done.append("the whole block ran")
            time.sleep(0.5)
    finally:
        stop.set()
    assert done == ["the whole block ran"]
    assert guard.first is not None


SESSION_SUITE = """
import os, signal, time
import pytest

@pytest.fixture(scope="session")
def resource(tmp_path_factory):
    yield
    # The session's takedown: a signal here is noted, the teardown still finishes.
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.3)
    open(os.environ["TORN_DOWN"], "w").write("yes")

def test_one(resource):
    pass

def test_terminated(resource):
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)

def test_never_runs(resource):
    pass
"""


def test_a_session_without_an_experiment_keeps_default_signal_handling(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The guard is installed only for sessions that set an experiment up (the integration
    tests in tests/integration/test_interrupts.py cover those): any other session, such as
    this project's own unit tests, keeps Python's handling and its own exit status."""
    marker = tmp_path / "torn-down"
    pytester.makepyfile(test_term=SESSION_SUITE)
    os.environ["TORN_DOWN"] = str(marker)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    finally:
        del os.environ["TORN_DOWN"]
    assert result.ret == -signal.SIGTERM  # killed by it, as without the plugin
    assert not marker.exists()
    assert "SIGTERM noted" not in result.stderr.str()
