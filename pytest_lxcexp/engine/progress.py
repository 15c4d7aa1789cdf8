"""The live status line's text: started / running / completed / failed, a rate and an ETA.

Pure: the plugin decides where it goes (one updating line on a terminal, a line every
30 s in a log); the engine only counts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Counts:
    """Where a run stands, and the phase's own progress: `done` of its events (starts, or
    completions while waiting) in `elapsed` seconds, `left` still to come."""

    total: int  # VEs the run has (so far, for a ramp)
    started: int  # start attempts done, good or not
    failed: int  # starts that failed
    completed: int
    done: int
    left: int
    elapsed: float
    phase: str = "start"  # "start" or "wait": what the rate counts
    # Events per second lately (RecentRate); None: the phase's average, done / elapsed.
    recent_rate: float | None = None


class RecentRate:
    """The rate over the last `window` seconds: starts slow down as VEs pile up (20 a second
    at 15,000 running here, 2 at 20,000), so the average since the first start promised an
    ETA of minutes for what then took most of an hour."""

    def __init__(self, window: float = 30.0) -> None:
        self.window = window
        self._seen: deque[tuple[float, int]] = deque()

    def update(self, now: float, done: int) -> float | None:
        """Note `done` events at `now` (monotonic); their rate over the window, None before
        two notes span any time."""
        self._seen.append((now, done))
        while len(self._seen) > 2 and now - self._seen[1][0] >= self.window:
            self._seen.popleft()
        then, done_then = self._seen[0]
        return (done - done_then) / (now - then) if now > then else None


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "ETA -"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"ETA {seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"ETA {seconds // 60}m{seconds % 60:02d}s"
    return f"ETA {seconds}s"


def status_text(counts: Counts) -> str:
    rate = counts.recent_rate
    if rate is None:
        rate = counts.done / counts.elapsed if counts.elapsed > 0 else 0.0
    eta = 0.0 if not counts.left else (counts.left / rate if rate > 0 else None)
    unit = "starts/s" if counts.phase == "start" else "completions/s"
    return (
        f"lxcexp: {counts.started} started / {counts.started - counts.failed} running / {counts.completed} completed"
        f" / {counts.failed} failed of {counts.total}; {rate:.1f} {unit}, {eta_text(eta)}"
    )


class Status(Protocol):
    """Where a caller shows the status line: called with each new text, ended when a phase of them is over."""

    def __call__(self, text: str) -> None: ...

    def end(self) -> None: ...


class NoStatus:
    """No status line (the CLI, benchmarks)."""

    def __call__(self, text: str) -> None:
        pass

    def end(self) -> None:
        pass


NO_STATUS = NoStatus()
