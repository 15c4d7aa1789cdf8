"""pytest-xdist scheduling for a run over several hosts: each range's tests on its own host.

Like --dist load (tests handed out in collection order, a few at a time, to whichever
worker has room), except that a worker only gets the tests of ranges its host owns, and
tests without a range. Within a host, its workers share the host's experiment as in
`-n N` (engine/shared.py). A worker with nothing left for its host is shut down, which
lets its host's last worker take that host down while the others still run.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController


class HostScheduling(LoadScheduling):
    def __init__(
        self,
        config: pytest.Config,
        log: Producer | None,
        owner_of_test: Callable[[str], str | None],
        host_of_node: Callable[[WorkerController], str],
    ) -> None:
        super().__init__(config, log)
        self.owner_of_test = owner_of_test
        self.host_of_node = host_of_node

    def _tests_for(self, node: WorkerController) -> list[int]:
        """Pending tests this node may run, in collection order."""
        assert self.collection is not None
        host = self.host_of_node(node)
        return [index for index in self.pending if self.owner_of_test(self.collection[index]) in (None, host)]

    def _send_tests(self, node: WorkerController, num: int) -> None:
        chosen = self._tests_for(node)[:num]
        if not chosen:
            return
        taken = set(chosen)
        self.pending[:] = [index for index in self.pending if index not in taken]
        self.node2pending[node].extend(chosen)
        node.send_runtest_some(chosen)

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        """The load heuristic of LoadScheduling, counted over this host's tests and workers."""
        if node.shutting_down:
            return
        mine = self._tests_for(node)
        if not mine:
            node.shutdown()  # it finishes what it holds, then leaves its host's shared run
            return
        host = self.host_of_node(node)
        peers = sum(1 for other in self.node2pending if self.host_of_node(other) == host)
        low = max(2, len(mine) // peers // 4)
        high = max(2, len(mine) // peers // 2)
        held = self.node2pending[node]
        if len(held) >= low or (duration >= 0.1 and len(held) >= 2):
            return
        chunk = max(2 - len(held), self.maxschedchunk or len(mine))
        self._send_tests(node, min(high - len(held), chunk))
        if not self._tests_for(node):
            # A worker runs its last test only once it has a next one or a shutdown.
            node.shutdown()

    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.collection is None:
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            self.pending[:] = range(len(self.collection))
        for node in self.nodes:
            self.check_schedule(node)
