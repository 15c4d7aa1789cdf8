"""The starter: a small process of its own that starts VEs with liblxc, run as a script.

    python starter.py LXCPATH DELAY  <names on stdin, one per line>

It prints one JSON line per VE: {"name", "ok", "latency", "started_at", "pid"}, or
{"name", "ok": false, "error"} when the start could not even be tried.

Why a separate, freshly executed process rather than a fork of the tool: every liblxc
start forks the caller several times (the monitor, the VE's init), and the cost of a
fork grows with the size of the process forked; a pytest session is 5-10x the size of
this script, and its starts were 3x slower at 300 MB. It imports nothing but liblxc's
binding and the standard library for the same reason. The starts run in forks of
its own, a few dozen starts each, because liblxc leaks an open fd per container it
loads (its lxc.log), and every start walks /proc/self/fd: a process that starts VE
after VE slows down with each one.
The monitor each start leaves behind is a fork of this small process, not of the tool.
"""

from __future__ import annotations

import json
import os
import sys
import time

import lxc


def start(name: str, lxcpath: str) -> dict:
    container = lxc.Container(name, lxcpath)
    started_at = time.time()
    began = time.monotonic()
    # close_fds: the monitor must not inherit our pipes.
    ok = container.start(close_fds=True)
    latency = time.monotonic() - began
    pid = container.init_pid if ok else -1
    return {"name": name, "ok": ok, "latency": latency, "started_at": started_at, "pid": pid if pid > 0 else None}


# Starts per fork: few enough that the leaked fds cost nothing (the /proc/self/fd walk of
# 32 entries), many enough that the fork and exit (about 4 ms each) are shared.
STARTS_PER_FORK = 32
BROKEN_PIPE = 2


def start_batch(names: list[str], lxcpath: str, delay: float, first: bool) -> None:
    """In a fork: start each VE, one JSON line each on stdout (the tool's pipe)."""
    status = 1
    try:
        for name in names:
            if delay and not first:
                time.sleep(delay)
            first = False
            try:
                try:
                    result = start(name, lxcpath)
                except Exception as error:  # noqa: BLE001 - reported for this VE, the others go on
                    result = {"name": name, "ok": False, "error": f"{type(error).__name__}: {error}"}
                print(json.dumps(result), flush=True)
            except BrokenPipeError:
                status = BROKEN_PIPE  # the tool stopped listening (an interrupt)
                return
        status = 0
    finally:
        os._exit(status)


def main() -> int:
    lxcpath, delay = sys.argv[1], float(sys.argv[2])
    names = [line.strip() for line in sys.stdin if line.strip()]
    for at in range(0, len(names), STARTS_PER_FORK):
        try:
            pid = os.fork()
        except OSError as error:
            # Out of processes (a full host): say so for every VE not started.
            for name in names[at:]:
                print(json.dumps({"name": name, "ok": False, "error": f"the starter could not fork: {error}"}))
            return 1
        if pid == 0:
            start_batch(names[at : at + STARTS_PER_FORK], lxcpath, delay, first=at == 0)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == BROKEN_PIPE:
            return 0  # stop after the start in hand; a fork that died leaves its VEs unreported
    return 0


if __name__ == "__main__":
    sys.exit(main())
