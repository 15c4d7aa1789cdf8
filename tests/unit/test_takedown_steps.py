"""The takedown's step timings, and its wait for the kernel to free the VEs' veths."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from pytest_lxcexp.engine import network
from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import median_timings, summarize, takedown_steps, timings_lines
from pytest_lxcexp.engine.takedown import TakedownReport
from pytest_lxcexp.report.html import timings_section


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


def test_each_takedown_becomes_phases_of_its_steps(tmp_path: Path) -> None:
    experiment = Experiment(build_config(root=str(tmp_path / "exp"), count=3))
    report = experiment.takedown_report
    # Two of the plugin's fixtures take down in turn, on the same report.
    with experiment.timed_takedown(), report.timed("kill"):
        time.sleep(0.01)
    with experiment.timed_takedown(), report.timed("bridge"):
        pass
    timings = experiment.timings
    assert list(timings) == ["takedown", "takedown kill", "takedown bridge"]
    assert timings["takedown kill"] >= 0.01
    assert timings["takedown kill"] + timings["takedown bridge"] <= timings["takedown"]
    assert takedown_steps(timings) == {"kill": timings["takedown kill"], "bridge": timings["takedown bridge"]}


def test_the_summary_and_the_report_show_the_steps_under_the_takedown() -> None:
    timings = {"start all": 1.0, "takedown": 2.5, "takedown kill": 0.25, "takedown exits": 2.0}
    lines = timings_lines(timings, summarize([]))
    assert lines == [
        "start all             :     1.00 s",
        "takedown              :     2.50 s",
        "  of it               : kill 0.25 s, exits 2.00 s",
    ]
    # With --ve-repeat each step is a phase like any other: its median over the rounds.
    rounds = [timings, {**timings, "takedown kill": 0.75}, {**timings, "takedown kill": 0.5}]
    assert median_timings(rounds)["takedown kill"] == 0.5
    card = timings_section({"timings": {"phases": timings, "start_latency": {}}, "resources": {}})
    assert ">takedown</td><td>2.50</td>" in card and "takedown kill" not in card
    assert re.findall(r"takedown: (\w+)</td><td>([\d.]+)</td>", card) == [("kill", "0.25"), ("exits", "2.00")]
