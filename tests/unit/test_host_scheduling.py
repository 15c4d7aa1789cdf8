"""Scheduling over several hosts: each range's tests reach only workers of the host that owns it."""

from __future__ import annotations

from pytest_lxcexp.engine.config import ve_ranges
from pytest_lxcexp.engine.hosts import HostPlan
from pytest_lxcexp.host_scheduling import HostScheduling

TESTS = [f"t.py::test_{kind}[ve{a}-ve{b}]" for kind in ("start", "completed") for a, b in ve_ranges(40, 10)]
TESTS.append("t.py::test_report")  # no range: any host


class FakeConfig:
    def __init__(self, specs: list[str]) -> None:
        self.specs = specs

    def getvalue(self, name: str) -> list[str]:
        return self.specs

    def getoption(self, name: str) -> None:
        return None  # maxschedchunk


class FakeWorker:
    def __init__(self, host: str) -> None:
        self.host = host
        self.gateway = type("Gateway", (), {"id": f"gw-{host}-{id(self)}"})()
        self.received: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.received += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def _run(workers: list[FakeWorker]) -> HostScheduling:
    plan = HostPlan([w.host for w in workers], ve_ranges(40, 10))
    scheduler = HostScheduling(FakeConfig(["popen"] * len(workers)), None, plan.owner_of_test, lambda w: w.host)
    for worker in workers:
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, TESTS)
    scheduler.schedule()
    # Workers finish what they hold, one test at a time, until none is left anywhere.
    while any(scheduler.node2pending.values()):
        for worker in workers:
            if scheduler.node2pending[worker]:
                scheduler.mark_test_complete(worker, scheduler.node2pending[worker][0])
    return scheduler


def test_each_host_gets_its_own_ranges_only_and_every_test_runs_once():
    a1, a2, b = FakeWorker("a"), FakeWorker("a"), FakeWorker("b")
    scheduler = _run([a1, a2, b])
    ran = [TESTS[i] for w in (a1, a2, b) for i in w.received]
    assert sorted(ran) == sorted(TESTS) and not scheduler.pending
    for worker in (a1, a2, b):
        for index in worker.received:
            first = TESTS[index].split("[ve")[1].split("-")[0] if "[" in TESTS[index] else None
            if first is not None:
                assert (int(first) <= 20) == (worker.host == "a"), (worker.host, TESTS[index])
    assert all(worker.shutting_down for worker in (a1, a2, b))


def test_a_host_runs_its_ranges_in_collection_order_all_starts_before_any_wait():
    a, b = FakeWorker("a"), FakeWorker("b")
    _run([a, b])
    assert [TESTS[i] for i in b.received if "[" in TESTS[i]] == [
        "t.py::test_start[ve21-ve30]",
        "t.py::test_start[ve31-ve40]",
        "t.py::test_completed[ve21-ve30]",
        "t.py::test_completed[ve31-ve40]",
    ]


def test_a_worker_given_its_hosts_last_test_is_told_to_shut_down_at_once():
    # xdist runs a worker's last test only once it has a next one or a shutdown.
    a, b = FakeWorker("a"), FakeWorker("b")
    plan = HostPlan(["a", "b"], ve_ranges(40, 10))
    scheduler = HostScheduling(FakeConfig(["popen"] * 2), None, plan.owner_of_test, lambda w: w.host)
    for worker in (a, b):
        scheduler.add_node(worker)
        scheduler.add_node_collection(worker, TESTS)
    scheduler.schedule()
    while scheduler._tests_for(b):
        scheduler.mark_test_complete(b, scheduler.node2pending[b][0])
    assert b.shutting_down and scheduler.node2pending[b], "b holds tests but was not told to finish"
