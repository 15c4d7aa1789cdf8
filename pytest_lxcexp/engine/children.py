"""Run work in processes of the tool's own, never liblxc in the tool's own process, and never
a fork of the tool.

Two things liblxc does to its caller keep it out of the tool's process (both seen with
liblxc 5.0.2):
- start() moves the calling process into the new VE's monitor cgroup;
- loading a container whose config sets lxc.log.file opens that file and keeps it
  open, so the caller ends up holding one fd per VE (RLIMIT_NOFILE) and a busy
  tmpfs that cannot be unmounted.
The processes are small executed programs (starter.py, lxcquery.py), not forks of the tool:
the tool runs threads (the report's sampler, execnet's under xdist), and a fork of a threaded
process can deadlock in the child (Python 3.12 warns of it); a fork also costs in proportion to
the process forked. A process that exits after its batch takes liblxc's effects with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

Result = dict[str, Any]
# How long an interrupted parent waits for its processes to finish their current item
# (one liblxc call) before it kills them.
REAP_TIMEOUT = 60.0


class _Feed:
    """What is left to write to one process's stdin (a non-blocking pipe)."""

    def __init__(self, payload: bytes) -> None:
        self.left = memoryview(payload)

    def write(self, fd: int) -> bool:
        """Write what the pipe takes now; True once all is written (or the reader is gone)."""
        try:
            self.left = self.left[os.write(fd, self.left[:65536]) :]
        except BlockingIOError:
            return False
        except BrokenPipeError:
            return True  # the process ended early: what it printed is still read
        return not self.left


class _Output:
    """One process's output pipe: its items, how many it has answered, and when it last did."""

    def __init__(self, process: subprocess.Popen, items: list[str], feed: int) -> None:
        self.process, self.items, self.feed = process, items, feed
        self.pending = bytearray()
        self.answered = 0
        self.heard = time.monotonic()


def _close(selector: selectors.BaseSelector, fd: int) -> None:
    with contextlib.suppress(KeyError):
        selector.unregister(fd)
        os.close(fd)


def _gather(
    selector: selectors.BaseSelector,
    results: list[Result],
    on_result: Callable[[Result], None] | None,
    silence: float | None = None,
    on_silent: Callable[[_Output], None] | None = None,
) -> None:
    """Feed every process its items and read its JSON lines, both as the pipes allow, until
    every output pipe is closed; results as they arrive. Both at once: a process prints as it
    goes, so a parent that wrote all input first would wait on a full input pipe while the
    process waits on a full output pipe (20,000 VEs' names are 160 KB; a pipe holds 64 KiB).
    A process silent for `silence` seconds goes to `on_silent`, which must close its pipes."""
    while selector.get_map():
        timeout = None
        if silence is not None:
            outputs = [key.data for key in selector.get_map().values() if isinstance(key.data, _Output)]
            if outputs:
                quietest = min(outputs, key=lambda output: output.heard)
                timeout = quietest.heard + silence - time.monotonic()
                if timeout <= 0 and on_silent:
                    on_silent(quietest)
                    continue
        for key, _ in selector.select(timeout):
            if isinstance(key.data, _Feed):
                if key.data.write(key.fd):
                    _close(selector, key.fd)  # EOF: the process ends after its last item
                continue
            # Raw reads: a buffered reader could hold lines that select() never reports.
            chunk_bytes = os.read(key.fd, 65536)
            output: _Output = key.data
            if not chunk_bytes:
                _close(selector, key.fd)
                continue
            _take(output, chunk_bytes, results, on_result)


def _take(output: _Output, data: bytes, results: list[Result], on_result: Callable[[Result], None] | None) -> None:
    """The complete lines in what `output`'s process printed, as results."""
    output.heard = time.monotonic()
    output.pending.extend(data)
    *lines, rest = output.pending.split(b"\n")
    output.pending[:] = rest
    for line in lines:
        result = json.loads(line)
        output.answered += 1
        results.append(result)
        if on_result:
            on_result(result)


def map_in_processes(
    argv: list[str],
    items: Sequence[str],
    workers: int = 1,
    on_result: Callable[[Result], None] | None = None,
    silence: float | None = None,
    on_silent: Callable[[str], Result] | None = None,
) -> list[Result]:
    """Run the program `argv` in `workers` processes, each fed a contiguous chunk of `items`
    (one per line on its stdin), and collect the JSON lines they print, as they arrive.

    With `silence`, for a program that prints one line per item, in order: a process that
    prints nothing for that many seconds is stuck in its current item (a liblxc call to a
    monitor that never answers). Its process group is killed, `on_silent(item)` stands for
    that item's result, and a new process takes the rest of its chunk.

    On an interrupt the pipes are closed: each process stops after its current item (its
    next write fails), then is waited for, and killed with its process group past REAP_TIMEOUT.
    """
    items = list(items)
    if not items:
        return []
    workers = max(1, min(workers, len(items)))
    size = -(-len(items) // workers)
    selector = selectors.DefaultSelector()
    processes: list[subprocess.Popen] = []
    results: list[Result] = []

    def spawn(chunk: list[str]) -> None:
        # A process group of its own: a terminal's Ctrl-C reaches only the tool, which
        # stops its processes in order instead of cutting a liblxc call in half.
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0)
        processes.append(process)
        assert process.stdin is not None and process.stdout is not None
        feed = os.dup(process.stdin.fileno())
        process.stdin.close()
        os.set_blocking(feed, False)
        selector.register(os.dup(process.stdout.fileno()), selectors.EVENT_READ, data=_Output(process, chunk, feed))
        process.stdout.close()
        selector.register(feed, selectors.EVENT_WRITE, data=_Feed("".join(f"{item}\n" for item in chunk).encode()))

    def silent(output: _Output) -> None:
        pipes = [fd for fd, key in selector.get_map().items() if key.data is output or fd == output.feed]
        for fd in pipes:
            if fd != output.feed:  # what it printed just before the deadline still counts
                os.set_blocking(fd, False)
                with contextlib.suppress(BlockingIOError):
                    _take(output, os.read(fd, 1 << 20), results, on_result)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(output.process.pid, signal.SIGKILL)
        for fd in pipes:
            _close(selector, fd)
        if output.answered >= len(output.items):
            return
        stuck, rest = output.items[output.answered], output.items[output.answered + 1 :]
        assert on_silent is not None
        result = on_silent(stuck)
        results.append(result)
        if on_result:
            on_result(result)
        if rest:
            spawn(rest)

    try:
        for start in range(0, len(items), size):
            spawn(items[start : start + size])
        _gather(selector, results, on_result, silence if on_silent else None, silent)
    finally:
        for process in processes:
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr] - an interrupt mid-write: EOF all the same
        for fd in list(selector.get_map()):
            os.close(fd)
        selector.close()
        _wait_processes(processes)
    return results


def _wait_processes(processes: list[subprocess.Popen], timeout: float | None = None) -> None:
    """Wait for each process; kill the process group (ours: each was started in its own)
    of one still busy at the deadline, so its forks go too."""
    deadline = time.monotonic() + (REAP_TIMEOUT if timeout is None else timeout)
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
