"""The takedown's step timings, and its wait for the kernel to free the VEs' veths."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine import network
from pytest_lxcexp.engine.takedown import TakedownReport


def test_timed_steps_add_up_and_count_a_failed_step() -> None:
    report = TakedownReport()
    with report.timed("kill"):
        pass
    with pytest.raises(RuntimeError), report.timed("exits"):
        raise RuntimeError("boom")
    with report.timed("kill"):
        pass
    assert list(report.seconds) == ["kill", "exits"]
    assert all(seconds >= 0 for seconds in report.seconds.values())
    report.seconds = {"kill": 1.849, "exits": 9.6}
    assert report.steps_text() == "kill 1.85 s, exits 9.60 s"


def _sysfs(monkeypatch: pytest.MonkeyPatch, listings: list[list[str]]) -> list[int]:
    """/sys/class/net listing as given, one listing per read, the last one repeated."""
    reads: list[int] = []

    def listdir(path: str) -> list[str]:
        assert path == "/sys/class/net"
        reads.append(1)
        return listings[min(len(reads), len(listings)) - 1]

    monkeypatch.setattr(network.os, "listdir", listdir)
    return reads


def test_waits_while_the_kernel_frees_the_veths(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = "t1"
    veths = [network.veth_name(tag, i) for i in range(1, 6)]
    others = ["eth0", "lo", f"ve{tag}b1"]  # a sub-bridge of ours is not a VE's veth
    reads = _sysfs(monkeypatch, [others + veths, others + veths[2:], others + veths[2:], others + veths[4:], others])
    assert network.wait_for_ve_veths_to_go(tag, quiet_for=2.0, few=0) == 0
    assert len(reads) == 5


def test_a_few_left_are_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = "t4"
    veths = [network.veth_name(tag, i) for i in range(1, 21)]
    reads = _sysfs(monkeypatch, [veths, veths[10:]])
    assert network.wait_for_ve_veths_to_go(tag, few=16) == 10
    assert len(reads) == 2


def test_gives_up_on_veths_that_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    tag = "t2"
    veths = [network.veth_name(tag, i) for i in range(1, 4)]
    reads = _sysfs(monkeypatch, [veths, veths[1:]])
    assert network.wait_for_ve_veths_to_go(tag, quiet_for=0.5, few=0) == 2
    assert len(reads) >= 3  # it watched them stay before giving up


def test_no_veths_no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    reads = _sysfs(monkeypatch, [["lo", "eth0"]])
    assert network.wait_for_ve_veths_to_go("t3") == 0
    assert len(reads) == 1
