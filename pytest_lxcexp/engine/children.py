"""Run liblxc calls in short-lived forked children, never in the tool's own process.

Two things liblxc does to its caller make this necessary (both seen with liblxc 5.0.2):
- start() moves the calling process into the new VE's monitor cgroup;
- loading a container whose config sets lxc.log.file opens that file and keeps it
  open, so the caller ends up holding one fd per VE (RLIMIT_NOFILE) and a busy
  tmpfs that cannot be unmounted.
A child that exits after its batch takes both with it.
"""

from __future__ import annotations

import json
import os
import selectors
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = dict[str, Any]


def _child_body(func: Callable[[Any], Result], items: Sequence[Any], writer: int) -> None:
    with os.fdopen(writer, "w", buffering=1) as out:
        for item in items:
            try:
                line = json.dumps(func(item))
            except Exception as error:  # noqa: BLE001 - reported per item, the rest go on
                failure = {
                    "item": item,
                    "exception": f"{type(error).__name__}: {error}",
                    "traceback": traceback.format_exc(limit=3),
                }
                line = json.dumps(failure)
            out.write(line + "\n")


def map_in_children(
    func: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Call func(item) for every item in `workers` forked children; results as they arrive.

    Items are dealt out in contiguous chunks, so each child handles a consecutive run.
    Results that a child could not send (it died) are simply missing: callers check.
    """
    items = list(items)
    if not items:
        return []
    workers = max(1, min(workers, len(items)))
    size = -(-len(items) // workers)
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    selector = selectors.DefaultSelector()
    children = []
    for chunk in chunks:
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            os.close(reader)
            status = 0
            try:
                _child_body(func, chunk, writer)
            except BaseException:  # noqa: BLE001
                status = 1
            os._exit(status)
        os.close(writer)
        children.append(pid)
        selector.register(reader, selectors.EVENT_READ, data=bytearray())
    results: list[Result] = []
    try:
        while selector.get_map():
            for key, _ in selector.select():
                # Raw reads: a buffered reader could hold lines that select() never reports.
                chunk_bytes = os.read(key.fd, 65536)
                pending: bytearray = key.data
                if not chunk_bytes:
                    selector.unregister(key.fd)
                    os.close(key.fd)
                    continue
                pending.extend(chunk_bytes)
                *lines, rest = pending.split(b"\n")
                pending[:] = rest
                for line in lines:
                    result = json.loads(line)
                    results.append(result)
                    if on_result:
                        on_result(result)
    finally:
        for fd in list(selector.get_map()):
            os.close(fd)
        selector.close()
        for pid in children:
            os.waitpid(pid, 0)
    return results
