"""Ctrl-C and SIGTERM at any phase: a full takedown, the results so far, and a word about it.

pytest already turns KeyboardInterrupt into a session that ends normally (session
finalizers, hence the takedown, run), but SIGTERM kills a Python process outright.
So for the session's lifetime SIGINT and SIGTERM both raise KeyboardInterrupt in the
main thread, once. From the first signal on, and during the whole session end
(takedown and reporting) even without one, further signals are only noted: a second
Ctrl-C must not cut a takedown short and leave mounts, bridges or VEs behind. The
third noted signal gives up and raises anyway (the user insists; `lxcexp takedown`
cleans up afterwards).

Forked children (engine/children.py) reset both signals to SIG_DFL and sit in their
own process group, so neither our handler nor a terminal's Ctrl-C reaches them; the
parent stops them by closing their pipes.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

import pytest

from .session import run_state_key

HANDLED = (signal.SIGINT, signal.SIGTERM)
# Noted signals after which the guard stops shielding and raises.
GIVE_UP_AFTER = 3

# RunState.phase -> words for the user.
PHASE_WORDS = {
    "preflight": "before the experiment was set up",
    "setup tmpfs": "while mounting the tmpfs",
    "setup base": "while installing the base",
    "setup network": "while creating the network",
    "setup clones": "while creating the clones",
    "start": "while starting VEs",
    "wait": "while waiting for VEs to complete",
    "records": "while reading the VEs' results",
    "takedown": "during the takedown",
    "reporting": "while reporting",
}


def phase_words(phase: str) -> str:
    if phase.startswith("after "):
        inner = phase.removeprefix("after ")
        return f"after {PHASE_WORDS.get(inner, inner).removeprefix('while ').removeprefix('during ')}"
    return PHASE_WORDS.get(phase, f"during {phase}")


@dataclass(frozen=True)
class Interruption:
    """One signal the session received."""

    signal: str
    phase: str
    at: float

    @property
    def words(self) -> str:
        return f"{self.signal} {phase_words(self.phase)}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "description": self.words}


def _say(message: str) -> None:
    # os.write, not print: the handler may run while the terminal writer is mid-write,
    # and a reentrant write to a buffered stream raises.
    with suppress(OSError):
        os.write(2, f"\n{message}\n".encode())


class InterruptGuard:
    """Raises KeyboardInterrupt on the first SIGINT/SIGTERM; shields what must finish."""

    def __init__(self, phase: Callable[[], str], cleanup_hint: Callable[[], str] = lambda: "") -> None:
        self._phase = phase
        self._hint = cleanup_hint
        self._previous: dict[int, Any] = {}
        self.received: list[Interruption] = []
        self.shielded = False
        self.noted = 0

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> bool:
        """Install the handlers; only the main thread can (else: leave Python's defaults)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in HANDLED:
            self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        try:
            phase = self._phase()
        except Exception:  # noqa: BLE001 - a handler must not fail on bookkeeping
            phase = "unknown"
        self.received.append(Interruption(name, phase, time.time()))
        if not self.shielded:
            # From now on the takedown runs; later signals must not break it.
            self.shielded = True
            raise KeyboardInterrupt(f"{name} received {phase_words(phase)}")
        self.noted += 1
        if self.noted >= GIVE_UP_AFTER:
            self.shielded = False
            hint = self._hint()
            _say(f"lxcexp: {name} again: giving up the takedown." + (f" Clean up with: {hint}" if hint else ""))
            raise KeyboardInterrupt(f"{name} received {GIVE_UP_AFTER} times during the takedown")
        left = GIVE_UP_AFTER - self.noted
        _say(
            f"lxcexp: {name} noted; finishing the takedown first "
            f"({left} more to abandon it and leave the experiment up)"
        )

    def shield(self) -> None:
        """From here on (the session's end) signals are noted, not raised."""
        self.shielded = True

    @property
    def first(self) -> Interruption | None:
        return self.received[0] if self.received else None


@contextmanager
def shielded(guard: InterruptGuard | None) -> Iterator[None]:
    """Shield a block (a takedown) for its duration, then restore the guard's mode."""
    if guard is None:
        yield
        return
    before = guard.shielded
    guard.shield()
    try:
        yield
    finally:
        guard.shielded = before or bool(guard.received)


guard_key = pytest.StashKey[InterruptGuard]()


def guard_of(config: pytest.Config) -> InterruptGuard | None:
    return config.stash.get(guard_key, None)


def interruption(config: pytest.Config) -> Interruption | None:
    """The first signal this session received, if any (summary and results report it)."""
    guard = guard_of(config)
    return guard.first if guard is not None else None


class InterruptPlugin:
    """Registered by plugin.py: owns the guard for the session's lifetime."""

    def __init__(self) -> None:
        self.ending = False
        self.torn_down = False

    def _phase(self, config: pytest.Config) -> str:
        if self.torn_down:
            return "reporting"
        if self.ending:
            return "takedown"
        state = config.stash.get(run_state_key, None)
        return state.phase if state is not None else "preflight"

    def _hint(self, config: pytest.Config) -> str:
        state = config.stash.get(run_state_key, None)
        return f"lxcexp takedown --root {state.config.root}" if state is not None else ""

    def pytest_configure(self, config: pytest.Config) -> None:
        # Installed by plugin.py only once the session is known to need the host: a session
        # that runs no experiment keeps Python's own signal handling (and its exit status).
        config.stash[guard_key] = InterruptGuard(lambda: self._phase(config), lambda: self._hint(config))

    def _session_ends(self, config: pytest.Config) -> None:
        self.ending = True
        guard = guard_of(config)
        if guard is not None:
            guard.shield()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        # The last test's teardown tears the session fixtures down: the takedown starts here.
        if nextitem is None:
            self._session_ends(item.config)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Iterator[None]:
        # After an interrupt (or -x) the session fixtures, hence the takedown, are torn
        # down in here; the reports are written in here in any case.
        self._session_ends(session.config)
        guard = guard_of(session.config)
        try:
            return (yield)
        finally:
            if (
                guard is not None
                and guard.received
                and session.exitstatus
                in (
                    pytest.ExitCode.OK,
                    pytest.ExitCode.TESTS_FAILED,
                )
            ):
                session.exitstatus = pytest.ExitCode.INTERRUPTED

    def pytest_fixture_post_finalizer(self, fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
        if fixturedef.argname == "ve_root" and self.ending:
            self.torn_down = True  # the last step of the takedown: what follows is reporting

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        guard = guard_of(config)
        if guard is not None:
            guard.uninstall()
