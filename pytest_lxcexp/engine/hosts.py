"""A run over several hosts: which VEs each host runs, so VE numbers stay unique across them.

The ranges of ve1..veN are split into one consecutive block per host, in the order the
hosts were given (host 1 gets ve1.., the last host ..veN). A test belongs to the host
of the range in its id ("test_start[ve101-ve200]"); a test without a range runs anywhere.
"""

from __future__ import annotations

import re

# A ve_range parameter id inside a test id's brackets, alone or among other parameters.
_RANGE_ID = re.compile(r"\[(?:[^\]]*-)?ve(\d+)-ve(\d+)(?:-[^\]]*)?\]$")


class HostPlanError(ValueError):
    """The hosts cannot share the run's ranges; the message says why."""


def split_ranges(ranges: list[tuple[int, int]], hosts: int) -> list[list[tuple[int, int]]]:
    """One consecutive block of ranges per host, as even as whole ranges allow."""
    if hosts < 1:
        raise HostPlanError("a run needs at least one host")
    if hosts > len(ranges):
        raise HostPlanError(f"{hosts} hosts but only {len(ranges)} ranges of VEs: lower --ve-batch or use fewer hosts")
    return [ranges[host * len(ranges) // hosts : (host + 1) * len(ranges) // hosts] for host in range(hosts)]


def range_of_test(nodeid: str) -> tuple[int, int] | None:
    """The (first, last) VE range a test id names, or None."""
    found = _RANGE_ID.search(nodeid)
    return (int(found.group(1)), int(found.group(2))) if found else None


class HostPlan:
    """Hosts (by key, in order) and the VEs each runs."""

    def __init__(self, hosts: list[str], ranges: list[tuple[int, int]]) -> None:
        self.hosts = list(dict.fromkeys(hosts))  # each host once, in first-given order
        self.blocks = dict(zip(self.hosts, split_ranges(ranges, len(self.hosts)), strict=True))
        self._owner = {bounds: host for host, block in self.blocks.items() for bounds in block}

    def ves_of(self, host: str) -> tuple[int, int]:
        """The first and last VE of a host's block."""
        block = self.blocks[host]
        return block[0][0], block[-1][1]

    def owner_of_test(self, nodeid: str) -> str | None:
        """The host that runs a test: its range's host; None (any host) for a test without a range."""
        bounds = range_of_test(nodeid)
        return None if bounds is None else self._owner.get(bounds)
