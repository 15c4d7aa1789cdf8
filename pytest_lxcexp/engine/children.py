"""Run liblxc calls in short-lived forked children, never in the tool's own process.

Two things liblxc does to its caller make this necessary (both seen with liblxc 5.0.2):
- start() moves the calling process into the new VE's monitor cgroup;
- loading a container whose config sets lxc.log.file opens that file and keeps it
  open, so the caller ends up holding one fd per VE (RLIMIT_NOFILE) and a busy
  tmpfs that cannot be unmounted.
A child that exits after its batch takes both with it. Starts go through
map_in_processes and starter.py instead: a small executed process, cheaper to fork.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = dict[str, Any]
# How long an interrupted parent waits for its children to finish their current item
# (one liblxc call) before it kills them.
REAP_TIMEOUT = 60.0


def _become_plain_child() -> None:
    """In the child: no handler of the parent's (the plugin's raises KeyboardInterrupt) and
    a process group of its own, so a terminal's Ctrl-C reaches only the parent, which
    stops its children in order (it closes their pipes) instead of killing them in the
    middle of a liblxc call. SIG_DFL is also what liblxc's monitor should inherit."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)


def _reap(pids: list[int], timeout: float | None = None) -> None:
    """Wait for every child; kill (they are ours) those that are still busy at the deadline."""
    deadline = time.monotonic() + (REAP_TIMEOUT if timeout is None else timeout)
    pending = set(pids)
    while pending:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                pending.discard(pid)
        if not pending:
            return
        if time.monotonic() > deadline:
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.01)


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


def _fork_child(func: Callable[[Any], Result], chunk: Sequence[Any], reader: int, writer: int) -> int:
    """Fork one child for a chunk; returns its PID. The child never returns from here."""
    # Signals are blocked across the fork: a Ctrl-C landing between fork() and the
    # child's reset would run the parent's handler in the child, which would then go on
    # running the parent's code (a second pytest session).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            status = 1
            try:
                _become_plain_child()
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                os.close(reader)
                _child_body(func, chunk, writer)
                status = 0
            finally:
                os._exit(status)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    # Also from here, whichever of the two runs first (OSError: it did already, or exited).
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    return pid


def _gather(
    selector: selectors.BaseSelector, results: list[Result], on_result: Callable[[Result], None] | None
) -> None:
    """Read JSON lines from every registered pipe until all are closed; results as they arrive."""
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
    children: list[int] = []
    results: list[Result] = []
    try:
        for chunk in chunks:
            reader, writer = os.pipe()
            # Registered first: whatever interrupts us from here, finally closes it.
            selector.register(reader, selectors.EVENT_READ, data=bytearray())
            try:
                children.append(_fork_child(func, chunk, reader, writer))
            finally:
                os.close(writer)
        _gather(selector, results, on_result)
    finally:
        # On an interrupt: closed pipes make each child stop after its current item
        # (its next write fails), so no liblxc call is cut in half.
        for fd in list(selector.get_map()):
            os.close(fd)
        selector.close()
        _reap(children)
    return results


def map_in_processes(
    argv: list[str],
    items: Sequence[str],
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
) -> list[Result]:
    """Run the program `argv` in `workers` processes, each fed a contiguous chunk of `items`
    (one per line on its stdin), and collect the JSON lines they print, as they arrive.

    On an interrupt the pipes are closed: each process stops after its current item (its
    next write fails), then is waited for like map_in_children's children.
    """
    items = list(items)
    if not items:
        return []
    workers = max(1, min(workers, len(items)))
    size = -(-len(items) // workers)
    selector = selectors.DefaultSelector()
    processes: list[subprocess.Popen] = []
    results: list[Result] = []
    try:
        for start in range(0, len(items), size):
            # A process group of its own: a terminal's Ctrl-C reaches only the tool, which
            # stops its processes in order instead of cutting a liblxc call in half.
            process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0)
            processes.append(process)
            assert process.stdin is not None and process.stdout is not None
            selector.register(os.dup(process.stdout.fileno()), selectors.EVENT_READ, data=bytearray())
            process.stdout.close()
            process.stdin.write("".join(f"{item}\n" for item in items[start : start + size]).encode())
            process.stdin.close()
        _gather(selector, results, on_result)
    finally:
        for process in processes:
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr] - an interrupt mid-write: EOF all the same
        for fd in list(selector.get_map()):
            os.close(fd)
        selector.close()
        _wait_processes(processes)
    return results


def _wait_processes(processes: list[subprocess.Popen], timeout: float = REAP_TIMEOUT) -> None:
    """Wait for each process; kill the process group (ours: each was started in its own)
    of one still busy at the deadline, so its forks go too."""
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
