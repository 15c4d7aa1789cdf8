"""The live status line's text: started / running / completed / failed, a rate and an ETA.

Pure: the plugin decides where it goes (one updating line on a terminal, a line every
30 s in a log); the engine only counts.
"""

from __future__ import annotations

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
