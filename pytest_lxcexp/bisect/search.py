"""Which commit to try next, and what the answers so far say: git bisect's search, as pure logic.

Positions 0..n-1 are the commits after --good, oldest first; the last is --bad (known
bad); --good itself is position -1 (known good). Each tried commit is good, bad or
skipped (it did not build, or its verdict stayed "can't tell"). The next one is the
untried commit nearest the middle of the range still in doubt, between the newest good
and the oldest bad; a skipped one is stepped around, as `git bisect skip` does. The
search ends when no untried commit is left in that range: the first bad commit is the
oldest bad one when nothing between it and the newest good was skipped, else it is one
of the skipped ones or that bad one, and the answer says so.
"""

from __future__ import annotations

from dataclasses import dataclass

GOOD, BAD, SKIPPED = "good", "bad", "skipped"


@dataclass(frozen=True)
class Answer:
    first_bad: int | None  # its position, when the search narrowed it to one commit
    candidates: tuple[int, ...]  # positions the first bad commit may be (one when found)
    skipped: tuple[int, ...]  # skipped positions among the candidates


class Search:
    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("a search needs at least the bad commit")
        self.count = count
        self.outcomes: dict[int, str] = {count - 1: BAD}

    def record(self, position: int, outcome: str) -> None:
        if outcome not in (GOOD, BAD, SKIPPED):
            raise ValueError(f"unknown outcome {outcome!r}")
        if not self.newest_good < position < self.oldest_bad:
            raise ValueError(f"position {position} is outside the range in doubt")
        self.outcomes[position] = outcome

    @property
    def newest_good(self) -> int:
        return max((p for p, o in self.outcomes.items() if o == GOOD), default=-1)

    @property
    def oldest_bad(self) -> int:
        return min(p for p, o in self.outcomes.items() if o == BAD)

    def untried(self) -> list[int]:
        return [p for p in range(self.newest_good + 1, self.oldest_bad) if p not in self.outcomes]

    def next_position(self) -> int | None:
        """The untried commit nearest the middle of the range in doubt (the older of two as near);
        None when none is left."""
        middle = (self.newest_good + self.oldest_bad) // 2
        return min(self.untried(), key=lambda p: (abs(p - middle), p), default=None)

    def steps_left(self) -> int:
        """About this many more commits to try: log2 of the untried ones plus one, rounded up."""
        return len(self.untried()).bit_length()

    def answer(self) -> Answer:
        """Every commit after the newest good up to the oldest bad may be the first bad one;
        when that is one commit, it is."""
        candidates = tuple(range(self.newest_good + 1, self.oldest_bad + 1))
        skipped = tuple(p for p in candidates if self.outcomes.get(p) == SKIPPED)
        return Answer(candidates[0] if len(candidates) == 1 else None, candidates, skipped)
