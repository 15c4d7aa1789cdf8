"""engine.children.map_in_children with pure Python functions (no liblxc involved)."""

from __future__ import annotations

import os
import sys

import pytest

from pytest_lxcexp.engine.children import map_in_children, map_in_processes


def square(x: int) -> dict:
    return {"item": x, "square": x * x}


def by_item(results: list[dict]) -> dict:
    return {result["item"]: result for result in results}


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_all_results_arrive(workers: int) -> None:
    items = list(range(1, 11))
    results = map_in_children(lambda x: {"item": x, "square": x * x}, items, workers=workers)
    assert len(results) == len(items)
    assert sorted(results, key=lambda r: r["item"]) == [{"item": x, "square": x * x} for x in items]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_work_runs_in_children_not_here(workers: int) -> None:
    results = map_in_children(lambda x: {"item": x, "pid": os.getpid()}, list(range(8)), workers=workers)
    pids = {result["pid"] for result in results}
    assert os.getpid() not in pids
    assert len(pids) == workers


def test_contiguous_chunks_per_child() -> None:
    results = map_in_children(lambda x: {"item": x, "pid": os.getpid()}, list(range(10)), workers=4)
    items_by_pid: dict[int, list[int]] = {}
    for result in results:
        items_by_pid.setdefault(result["pid"], []).append(result["item"])
    runs = sorted(sorted(items) for items in items_by_pid.values())
    # ceil(10 / 4) = 3 items per child: consecutive runs.
    assert runs == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


def test_more_workers_than_items() -> None:
    results = map_in_children(square, [3, 4], workers=8)
    assert by_item(results) == {3: {"item": 3, "square": 9}, 4: {"item": 4, "square": 16}}


@pytest.mark.parametrize("workers", [0, -1])
def test_non_positive_workers_means_one(workers: int) -> None:
    results = map_in_children(square, [1, 2, 3], workers=workers)
    assert sorted(r["square"] for r in results) == [1, 4, 9]


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_an_exception_comes_back_and_the_rest_go_on(workers: int) -> None:
    def func(x: int) -> dict:
        if x == 5:
            raise RuntimeError(f"item {x} is cursed")
        return {"item": x, "square": x * x}

    results = map_in_children(func, list(range(1, 11)), workers=workers)
    assert len(results) == 10
    found = by_item(results)
    assert set(found) == set(range(1, 11))
    failed = found[5]
    assert failed["exception"] == "RuntimeError: item 5 is cursed"
    assert "RuntimeError" in failed["traceback"]
    assert "square" not in failed
    for x in set(range(1, 11)) - {5}:
        assert found[x] == {"item": x, "square": x * x}


def test_every_item_raising() -> None:
    def func(x: int) -> dict:
        raise ValueError(x)

    results = map_in_children(func, [1, 2, 3], workers=2)
    assert sorted(r["item"] for r in results) == [1, 2, 3]
    assert all(r["exception"] == f"ValueError: {r['item']}" for r in results)


@pytest.mark.parametrize("workers", [1, 4])
def test_empty_list(workers: int) -> None:
    assert map_in_children(square, [], workers=workers) == []


def test_accepts_any_sequence() -> None:
    results = map_in_children(square, range(5), workers=2)
    assert sorted(r["square"] for r in results) == [0, 1, 4, 9, 16]


def test_on_result_sees_every_result_as_it_arrives() -> None:
    seen: list[dict] = []
    results = map_in_children(square, list(range(50)), workers=3, on_result=seen.append)
    assert seen == results
    assert len(seen) == 50


def test_many_results_all_arrive() -> None:
    # Far more than one pipe read (64 KiB) holds: lines split across reads must be rejoined.
    items = list(range(2000))
    results = map_in_children(lambda x: {"item": x, "pad": "x" * (x % 97), "square": x * x}, items, workers=2)
    assert len(results) == 2000
    assert sorted(r["item"] for r in results) == items
    assert all(r["square"] == r["item"] ** 2 and r["pad"] == "x" * (r["item"] % 97) for r in results)


def test_large_single_results() -> None:
    # Each result is bigger than a pipe buffer and one read.
    results = map_in_children(lambda x: {"item": x, "blob": "y" * 200_000}, [1, 2, 3], workers=2)
    assert sorted(r["item"] for r in results) == [1, 2, 3]
    assert all(len(r["blob"]) == 200_000 for r in results)


def test_children_are_reaped() -> None:
    results = map_in_children(lambda x: {"item": x, "pid": os.getpid()}, list(range(6)), workers=3)
    pids = {result["pid"] for result in results}
    assert len(pids) == 3
    for pid in pids:
        # Already waited for: no zombie is left behind.
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


ECHO = (
    "import json, os, sys\n"
    "for line in sys.stdin:\n"
    "    item = int(line)\n"
    "    if item == 13: os._exit(3)\n"
    "    print(json.dumps({'item': item, 'pid': os.getpid()}), flush=True)\n"
)


def test_map_in_processes_feeds_contiguous_chunks_and_reaps_every_process():
    results = map_in_processes([sys.executable, "-c", ECHO], [str(n) for n in range(1, 11)], workers=3)
    assert sorted(r["item"] for r in results) == list(range(1, 11))
    by_pid: dict[int, list[int]] = {}
    for result in results:
        by_pid.setdefault(result["pid"], []).append(result["item"])
    assert sorted(sorted(items) for items in by_pid.values()) == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    for pid in by_pid:
        assert not os.path.exists(f"/proc/{pid}"), "a process was left running or unreaped"


def test_map_in_processes_leaves_out_what_a_dying_process_never_reported():
    seen: list[int] = []
    results = map_in_processes(
        [sys.executable, "-c", ECHO], [str(n) for n in (11, 12, 13, 14)], on_result=lambda r: seen.append(r["item"])
    )
    assert [r["item"] for r in results] == seen == [11, 12]
