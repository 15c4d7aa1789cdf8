"""When a range's wait gives up, and what each wait did (results.json's `timings.waits`).

A range's deadline counts from the range's own first start, not from the moment a test
began to wait on it: a suite starts every range before it waits on any (the ping suite's
test_start, then test_completed), so ten ranges with one hung VE each would otherwise wait
ten timeouts one after another. All times are epoch seconds: the starts are stamped by the
starter processes with the same clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


def range_first_start(started_at: Iterable[float]) -> float | None:
    """The range's first start request, or None if none of its VEs was asked to start."""
    return min(started_at, default=None)


def wait_deadline(first_start: float | None, timeout: float, now: float, held: float = 0.0) -> float:
    """The moment (epoch) a range's wait gives up: `timeout` after its first start; a range
    nobody started (its wait starts it) gets the whole timeout from now. `held`: seconds its
    hung starts kept their starters waiting (each until its deadline), added on, so that the
    VEs started after one are not judged by the time it took from them."""
    return (now if first_start is None else first_start) + timeout + held


@dataclass(frozen=True)
class RangeWait:
    """One wait on veFIRST..veLAST, as it happened (epoch seconds)."""

    first: int
    last: int
    timeout: float
    first_start: float | None  # the range's first start request
    began: float  # the wait was called
    deadline: float  # it would give up then (wait_deadline)
    ended: float  # it returned: every VE done, or the deadline, or a full tmpfs
    pending: int  # VEs still not done when it returned

    def to_dict(self) -> dict[str, Any]:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}
