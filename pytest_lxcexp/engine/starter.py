"""The starter: a small process of its own that starts VEs with liblxc, run as a script.

    python starter.py LXCPATH DELAY [--lxc-etc DIR] [--join CGROUP]...  <names on stdin, one per line>

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

--lxc-etc DIR: liblxc takes the cgroup controllers it gives each VE (lxc.cgroup.use) only
from the host-wide /etc/lxc/lxc.conf. The starter shows liblxc the tool's own copy, DIR
bind-mounted over /etc/lxc in a mount namespace of the starter's own, and the host's
file stays as it is. --join CGROUP: cgroup directories the starter moves itself into
first, so every VE it starts is inside them too (the experiment's one memory cgroup,
when the VEs get none of their own).
"""

from __future__ import annotations

import argparse
import ctypes
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


CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SLAVE = 0x80000


def show_liblxc_config(directory: str) -> None:
    """Bind `directory` over /etc/lxc for this process and its children only."""
    libc = ctypes.CDLL(None, use_errno=True)
    # Slave, not private: the host's later mounts and unmounts (the tmpfs at takedown) still reach us.
    calls = (
        ("unshare a mount namespace", lambda: libc.unshare(CLONE_NEWNS)),
        ("make / a slave mount", lambda: libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None)),
        (f"bind {directory} over /etc/lxc", lambda: libc.mount(directory.encode(), b"/etc/lxc", None, MS_BIND, None)),
    )
    for what, call in calls:
        if call() != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"could not {what}: {os.strerror(error)}")


def join_cgroup(directory: str) -> None:
    with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
        handle.write(str(os.getpid()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lxcpath")
    parser.add_argument("delay", type=float)
    parser.add_argument("--lxc-etc")
    parser.add_argument("--join", action="append", default=[])
    args = parser.parse_args()
    lxcpath, delay = args.lxcpath, args.delay
    names = [line.strip() for line in sys.stdin if line.strip()]
    try:
        if args.lxc_etc:
            show_liblxc_config(args.lxc_etc)
        for directory in args.join:
            join_cgroup(directory)
    except OSError as error:
        for name in names:
            print(json.dumps({"name": name, "ok": False, "error": f"the starter could not prepare: {error}"}))
        return 1
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
