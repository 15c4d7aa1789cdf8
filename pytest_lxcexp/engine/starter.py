"""The starter: a small process of its own that starts VEs with liblxc, run as a script.

    python starter.py LXCPATH DELAY  <names on stdin, one per line>

It prints one JSON line per VE: {"name", "ok", "latency", "started_at", "pid"}.

Why a separate, freshly executed process rather than a fork of the tool: every liblxc
start forks the caller several times (the monitor, the VE's init), and the cost of a
fork grows with the size of the process forked; a pytest session is 5-10x the size of
this script, and its starts were 3x slower at 300 MB. It imports nothing but liblxc's
binding and the standard library for the same reason. Each start runs in a fork of its
own, because liblxc leaks an open fd per container it loads (its lxc.log), and every
start walks /proc/self/fd: a process that starts VE after VE slows down with each one.
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


def start_in_fork(name: str, lxcpath: str) -> dict:
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(reader)
            with os.fdopen(writer, "w") as out:
                out.write(json.dumps(start(name, lxcpath)))
            status = 0
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader) as handle:
        text = handle.read()
    os.waitpid(pid, 0)
    if not text:
        return {"name": name, "ok": False, "latency": 0.0, "started_at": time.time(), "pid": None, "died": True}
    return json.loads(text)


def main() -> int:
    lxcpath, delay = sys.argv[1], float(sys.argv[2])
    first = True
    for line in sys.stdin:
        name = line.strip()
        if not name:
            continue
        if delay and not first:
            time.sleep(delay)
        first = False
        try:
            print(json.dumps(start_in_fork(name, lxcpath)), flush=True)
        except BrokenPipeError:
            return 0  # the tool stopped listening (an interrupt): stop after the start in hand
    return 0


if __name__ == "__main__":
    sys.exit(main())
