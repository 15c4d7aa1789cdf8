"""engine.children.map_in_processes with small Python programs (no liblxc involved), and the
liblxc helper's processes: the tool never forks itself."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from pytest_lxcexp.engine import fleet
from pytest_lxcexp.engine.children import map_in_processes
from pytest_lxcexp.engine.storage import Layout

ECHO = (
    "import json, os, sys\n"
    "for line in sys.stdin:\n"
    "    item = int(line)\n"
    "    print(json.dumps({'item': item, 'pid': os.getpid(), 'pad': 'x' * (item % 97)}), flush=True)\n"
)
# Dies at item 13, before reporting it.
DYING = ECHO.replace("    print(", "    if item == 13: os._exit(3)\n    print(")
# Each item's result is `item` kilobytes long: results larger than a pipe's buffer.
LARGE = (
    "import json, sys\n"
    "for line in sys.stdin:\n"
    "    item = int(line)\n"
    "    print(json.dumps({'item': item, 'blob': 'y' * 1024 * item}), flush=True)\n"
)


def run(program: str, items: list[int], **kwargs: object) -> list[dict]:
    return map_in_processes([sys.executable, "-c", program], [str(item) for item in items], **kwargs)  # type: ignore[arg-type]


def test_more_input_than_a_pipe_holds_while_the_process_prints_as_it_goes() -> None:
    # 20,000 VEs' names are 160 KB on one process's stdin, and it prints a line for each as
    # it reads them: written all at once first, both pipes filled and both sides waited for
    # ever (seen in a ramp at 20,725 VEs). A thread, so that a hang fails the test instead.
    items = list(range(100_000, 140_000))  # 280 KB of input, 2 MB of output
    found: list[dict] = []
    worker = threading.Thread(target=lambda: found.extend(run(ECHO, items)), daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "map_in_processes hung with more input than a pipe holds"
    assert sorted(r["item"] for r in found) == items


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_all_results_arrive_from_processes_not_this_one(workers: int) -> None:
    results = run(ECHO, list(range(20)), workers=workers)
    assert sorted(r["item"] for r in results) == list(range(20))
    assert all(r["pad"] == "x" * (r["item"] % 97) for r in results)
    pids = {r["pid"] for r in results}
    assert os.getpid() not in pids and len(pids) == workers


def test_map_in_processes_feeds_contiguous_chunks_and_reaps_every_process():
    results = run(ECHO, list(range(1, 11)), workers=3)
    assert sorted(r["item"] for r in results) == list(range(1, 11))
    by_pid: dict[int, list[int]] = {}
    for result in results:
        by_pid.setdefault(result["pid"], []).append(result["item"])
    assert sorted(sorted(items) for items in by_pid.values()) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    for pid in by_pid:
        assert not os.path.exists(f"/proc/{pid}"), "a process was left running or unreaped"


@pytest.mark.parametrize("workers", [0, -3, 8])
def test_workers_are_between_one_and_the_items(workers: int) -> None:
    results = run(ECHO, [3, 4], workers=workers)
    assert sorted(r["item"] for r in results) == [3, 4]
    assert len({r["pid"] for r in results}) == (2 if workers == 8 else 1)


def test_no_items_start_no_process() -> None:
    assert run(ECHO, [], workers=3) == []


def test_on_result_sees_every_result_as_it_arrives() -> None:
    seen: list[dict] = []
    results = run(ECHO, list(range(50)), workers=3, on_result=seen.append)
    assert seen == results and len(results) == 50


def test_large_results_all_arrive() -> None:
    results = run(LARGE, [1, 200, 300], workers=2)
    assert {r["item"]: len(r["blob"]) for r in results} == {1: 1024, 200: 204800, 300: 307200}


def test_map_in_processes_leaves_out_what_a_dying_process_never_reported():
    seen: list[int] = []
    results = run(DYING, [11, 12, 13, 14], on_result=lambda r: seen.append(r["item"]))
    assert [r["item"] for r in results] == seen == [11, 12]


def test_liblxc_is_asked_from_helper_processes_never_a_fork_of_this_one(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sampler thread (or execnet's) runs in the tool: a fork of it could deadlock in the child.
    def no_fork() -> int:
        raise AssertionError("os.fork() called")

    monkeypatch.setattr(os, "fork", no_fork)
    layout = Layout(str(tmp_path / "root"))
    states = fleet.ve_states(layout, [1, 2, 3], workers=2)
    # Real liblxc, through the helper: containers that were never created are STOPPED.
    assert states == {index: fleet.VEState("STOPPED", None) for index in (1, 2, 3)}
    assert fleet.stop_all(layout, [1, 2], workers=2) == set()


# Never answers item 2 (a liblxc call to a VE's monitor that is stuck); echoes the rest.
STUCK = ECHO.replace("    print(", "    if item == 2: os.kill(os.getpid(), 19)\n    print(")


def test_a_process_silent_past_the_deadline_is_killed_and_the_rest_of_its_items_go_on() -> None:
    # Without a deadline, one item that never returns kept map_in_processes waiting for good.
    # A thread, so that a hang fails the test instead.
    found: list[dict] = []
    stood_in: list[str] = []

    def silent(item: str) -> dict:
        stood_in.append(item)
        return {"item": int(item), "silent": True}

    call = lambda: found.extend(run(STUCK, list(range(1, 7)), workers=2, silence=0.5, on_silent=silent))  # noqa: E731
    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "map_in_processes waited for good on a process that never answered"
    assert stood_in == ["2"]
    assert sorted(r["item"] for r in found) == [1, 2, 3, 4, 5, 6]
    # Items 1-3 went to one process, which was killed at 2; a new one answered 3.
    assert {r["item"] for r in found if r.get("silent")} == {2}
    pids = {r["item"]: r["pid"] for r in found if "pid" in r}
    assert pids[4] == pids[5] == pids[6] and len({pids[1], pids[3], pids[4]}) == 3
