"""The starter: a small process of its own that starts VEs, one `lxc-start -d` each, run as a script.

    python starter.py LXCPATH DELAY [--lxc-etc DIR] [--join CGROUP]...  <names on stdin, one per line>

It prints one JSON line per VE: {"name", "ok", "latency", "started_at", "pid"}, or
{"name", "ok": false, "error"} when the start could not even be tried.

Why lxc-start (liblxc's own command-line front end) and not liblxc's Python binding in
this process: every start forks its caller for the VE's monitor, which lives as long as
the VE, and a fork of a Python process keeps a private copy of each heap page Python
touched since: 0.70 MiB per monitor, against 0.36 MiB for a fork of lxc-start (measured
at 1000 VEs). A process per start also escapes liblxc's leak of an open lxc.log per loaded
container, which made each start walk a longer /proc/self/fd. The starter itself is a
freshly executed interpreter importing only the standard library, not a fork of the
tool: a fork costs in proportion to the process forked.

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
import subprocess
import sys
import time


def init_pid(monitor_pid_file: str) -> int | None:
    """The VE's init: the only child of its monitor, whose PID lxc-start -p wrote."""
    try:
        with open(monitor_pid_file) as handle:
            monitor = int(handle.read())
        os.unlink(monitor_pid_file)  # read once; a tmpfs page per VE otherwise
        with open(f"/proc/{monitor}/task/{monitor}/children") as handle:
            children = handle.read().split()
    except (OSError, ValueError):
        return None
    return int(children[0]) if children else None


def start(name: str, lxcpath: str) -> dict:
    pid_file = os.path.join(lxcpath, name, "monitor.pid")
    # -d: returns once the VE runs (or failed); -C: lxc-start closes fds it inherits
    # instead of refusing to run (subprocess passes none but the standard three).
    argv = ["lxc-start", "-P", lxcpath, "-n", name, "-d", "-C", "-p", pid_file]
    # The log file and level on the command line too, as in the VE's config: liblxc 6.0
    # (Debian 13) left the config's lxc.log.file empty when a start failed, so the tool
    # could not say why.
    argv += ["-o", os.path.join(lxcpath, name, "lxc.log"), "-l", "WARN"]
    started_at = time.time()
    began = time.monotonic()
    # Its error lines go to the VE's lxc.log too, where the tool reads the reason of a failure.
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latency = time.monotonic() - began
    ok = done.returncode == 0
    pid = init_pid(pid_file) if ok else None
    return {"name": name, "ok": ok, "latency": latency, "started_at": started_at, "pid": pid}


BROKEN_PIPE = 2


def say(result: dict) -> None:
    print(json.dumps(result), flush=True)


def stop_listening() -> int:
    """The tool closed our pipe (an interrupt): no more output, not even at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return BROKEN_PIPE


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
    names = [line.strip() for line in sys.stdin if line.strip()]
    try:
        if args.lxc_etc:
            show_liblxc_config(args.lxc_etc)
        for directory in args.join:
            join_cgroup(directory)
    except OSError as error:
        try:
            for name in names:
                say({"name": name, "ok": False, "error": f"the starter could not prepare: {error}"})
        except BrokenPipeError:
            return stop_listening()
        return 1
    for position, name in enumerate(names):
        if args.delay and position:
            time.sleep(args.delay)
        try:
            result = start(name, args.lxcpath)
        except OSError as error:
            # Out of processes or memory (a full host), or no lxc-start: said for this VE, the others go on.
            result = {"name": name, "ok": False, "error": f"could not run lxc-start: {error}"}
        try:
            say(result)
        except BrokenPipeError:
            return stop_listening()  # stop after the start in hand
    return 0


if __name__ == "__main__":
    sys.exit(main())
