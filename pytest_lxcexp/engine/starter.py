"""The starter: a small process of its own that starts VEs, run as a script.

    python starter.py LXCPATH DELAY [--builds JSON] [--forkstart PATH] [--lxc-etc DIR [--config-dir DIR]...]
        [--join CGROUP]... [--deadline SECONDS]
        <"NAME", "NAME<TAB>BUILD" or "NAME<TAB>BUILD<TAB>VETH" on stdin, one per line>

--forkstart PATH: the fork server (forkstart.c, built by forkstart.py): one runs per build,
with the build's environment, and starts each of its VEs through liblxc's API as `lxc-start
-d` would, without an exec per VE (docs/design.md, "The fork server"). Without it, each VE
gets an executed `lxc-start -d`.

It prints one JSON line per VE: {"name", "ok", "latency", "started_at", "pid", "monitor",
"build"}, or {"name", "ok": false, "error"} when the start could not even be tried.

--builds JSON: the LXC builds (engine/builds.py), a list of {"lxc_start": PATH, "env":
{VARIABLE: VALUE or null}}; BUILD on a stdin line is an index into it (default 0). Each
start runs that build's lxc-start with the loader variables it names set (or unset).

Why lxc-start (liblxc's own command-line front end) and not liblxc's Python binding in
this process: every start forks its caller for the VE's monitor, which lives as long as
the VE, and a fork of a Python process keeps a private copy of each heap page Python
touched since: 0.70 MiB per monitor, against 0.36 MiB for a fork of lxc-start (measured
at 1000 VEs). A process per start also escapes liblxc's leak of an open lxc.log per loaded
container, which made each start walk a longer /proc/self/fd. The starter itself is a
freshly executed interpreter importing only the standard library, not a fork of the
tool: a fork costs in proportion to the process forked.

VETH: the VE's host-side veth, whose IPv6 the starter turns off as soon as lxc-start
returned. liblxc brings it up with the host's IPv6 defaults: a link-local address and
three routes each, and every later link event walks the whole IPv6 routing table (at
3000 VEs, IPv6 address and route work took a fifth of the host's CPU during starts:
docs/benchmarks.md). Off, the table stays as small as the number of starts in flight.
The experiment is IPv4; the VEs' own IPv6 is off through lxc.sysctl.

--lxc-etc DIR: liblxc takes the cgroup controllers it gives each VE (lxc.cgroup.use) only
from its global config, /etc/lxc/lxc.conf for the distribution's (`<prefix>/etc/lxc` for a
build under a prefix: each --config-dir). The starter shows liblxc the tool's own copy, DIR
bind-mounted over each in a mount namespace of the starter's own, and the host's
files stay as they are. --join CGROUP: cgroup directories the starter moves itself into
first, so every VE it starts is inside them too (the experiment's one memory cgroup,
when the VEs get none of their own).

--deadline SECONDS: how long one start may take (config.START_DEADLINE, or --ve-timeout).
A start that has not returned by then (a build that deadlocks, an init the OOM killer
took before its exec while its monitor waits on it) is ended: its monitor, its init and
the process doing the start are killed by the PIDs this start made, and the VE is
reported failed, so that one start cannot keep the run waiting for good.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from typing import IO


def _children(pid: int) -> list[int]:
    """The PIDs of `pid`'s children (a monitor's: its init; a fork server's: the child running the start in hand)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            return [int(child) for child in handle.read().split()]
    except (OSError, ValueError):
        return []


def monitor_and_init(monitor_pid_file: str) -> tuple[int | None, int | None]:
    """The VE's monitor, whose PID lxc-start -p wrote, and its init: the monitor's only child."""
    try:
        with open(monitor_pid_file) as handle:
            monitor = int(handle.read())
        os.unlink(monitor_pid_file)  # read once; a tmpfs page per VE otherwise
    except (OSError, ValueError):
        return None, None
    children = _children(monitor)
    return monitor, children[0] if children else None


class ForkServer:
    """forkstart.c, running for one build: a line per start, its exit status back."""

    def __init__(self, path: str, lxcpath: str, env: dict) -> None:
        self.argv = [path, lxcpath]
        self.env = env
        self.process: subprocess.Popen | None = None

    def run(self, name: str, log_file: str, pid_file: str, deadline: float | None = None) -> int:
        """The start's exit status (0: running); OSError when it could not be tried,
        StartHung when it had not returned `deadline` seconds on (it was ended)."""
        if self.process is None or self.process.poll() is not None:
            # Started on first use, again if it died: its death costs one start, not the rest.
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, text=True, bufsize=1
            )
        assert self.process.stdin and self.process.stdout
        hung = False
        try:
            self.process.stdin.write(f"{name}\t{log_file}\t{pid_file}\n")
            self.process.stdin.flush()
            if deadline is not None and not _readable(self.process.stdout, deadline):
                hung = True
                end_hung_start(pid_file, _children(self.process.pid))
                if not _readable(self.process.stdout, min(HUNG_REPLY_GRACE, deadline)):
                    self.process.kill()  # still no answer: the server itself is stuck
            reply = self.process.stdout.readline().strip()
        except BrokenPipeError:
            reply = ""
        if not reply:
            self._forget()
            if hung:
                raise StartHung(deadline or 0.0)
            raise OSError("the fork server exited before answering")
        if hung:
            raise StartHung(deadline or 0.0)  # its answer read: the next start gets its own
        if reply.startswith("E"):
            error = int(reply[1:])
            raise OSError(error, f"the fork server could not fork: {os.strerror(error)}")
        return int(reply)

    def _forget(self) -> None:
        """It died: reap it, and the next start begins another."""
        assert self.process
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.process.wait()
        self.process = None

    def close(self) -> None:
        if self.process and self.process.poll() is None:
            assert self.process.stdin
            self.process.stdin.close()  # EOF: it exits after the start in hand
            self.process.wait()


# Seconds a hung start's server has to answer once what ran the start was killed (at
# most the deadline itself): past them the server is stuck too, and is killed.
HUNG_REPLY_GRACE = 10.0


class StartHung(Exception):
    """A start that had not returned by its deadline; its processes were killed."""

    def __init__(self, deadline: float) -> None:
        super().__init__(deadline)
        self.deadline = deadline

    def __str__(self) -> str:
        return (
            f"its start had not returned after {self.deadline:g} s, its deadline (a shorter --ve-timeout "
            "lowers it): liblxc's start, the VE's monitor and its init were killed"
        )


def _readable(stream: IO[str], seconds: float) -> bool:
    """Whether `stream` has something to read within `seconds` (its buffer is empty
    between starts: the server writes one line per start, after it was asked)."""
    return bool(select.select([stream], [], [], max(0.0, seconds))[0])


def end_hung_start(pid_file: str, starting: list[int]) -> None:
    """Kill a hung start's processes, by the PIDs it made: the VE's monitor (from the pid
    file liblxc wrote for this start) and its init, then `starting`, what called liblxc
    (lxc-start, or the fork server's child), which then returns."""
    monitor, init = monitor_and_init(pid_file)
    for pid in (init, monitor, *starting):
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Build:
    """One LXC build's lxc-start (or fork server) and the environment its starts run with."""

    def __init__(self, lxc_start: str = "lxc-start", env: dict | None = None) -> None:
        self.lxc_start = lxc_start
        self.env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                self.env.pop(key, None)
            else:
                self.env[key] = value
        self.server: ForkServer | None = None


_VETH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def quiet_ipv6(veth: str) -> None:
    """Turn the host-side veth's IPv6 off (nothing to do where the host has no IPv6)."""
    if not _VETH_NAME.fullmatch(veth) or veth in (".", ".."):
        return
    try:
        with open(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6", "w") as handle:
            handle.write("1")
    except OSError:
        pass  # no IPv6 on this host, or the VE (and its veth) already gone


def start(
    name: str, lxcpath: str, build: Build, number: int = 0, veth: str = "", deadline: float | None = None
) -> dict:
    pid_file = os.path.join(lxcpath, name, "monitor.pid")
    # -d: returns once the VE runs (or failed); -C: lxc-start closes fds it inherits
    # instead of refusing to run (subprocess passes none but the standard three).
    argv = [build.lxc_start, "-P", lxcpath, "-n", name, "-d", "-C", "-p", pid_file]
    # The log file and level on the command line too, as in the VE's config: liblxc 6.0
    # (Debian 13) left the config's lxc.log.file empty when a start failed, so the tool
    # could not say why.
    log_file = os.path.join(lxcpath, name, "lxc.log")
    argv += ["-o", log_file, "-l", "WARN"]
    started_at = time.time()
    began = time.monotonic()
    try:
        if build.server:
            status = build.server.run(name, log_file, pid_file, deadline)
        else:
            status = run_lxc_start(argv, build.env, pid_file, deadline)
    except StartHung as hung:
        return {
            "name": name,
            "ok": False,
            "error": str(hung),
            "latency": time.monotonic() - began,
            "started_at": started_at,
            "build": number,
            "hung": True,
        }
    latency = time.monotonic() - began
    ok = status == 0
    if ok and veth:
        quiet_ipv6(veth)
    monitor, pid = monitor_and_init(pid_file) if ok else (None, None)
    if pid:
        first_pick_for_oom_killer(pid)
    return {
        "name": name,
        "ok": ok,
        "latency": latency,
        "started_at": started_at,
        "pid": pid,
        "monitor": monitor,
        "build": number,
    }


def run_lxc_start(argv: list[str], env: dict, pid_file: str, deadline: float | None) -> int:
    """An executed lxc-start's exit status; StartHung (its processes killed) past `deadline`."""
    # Its error lines go to the VE's lxc.log too, where the tool reads the reason of a failure.
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        return process.wait(timeout=deadline)
    except subprocess.TimeoutExpired:
        end_hung_start(pid_file, [process.pid])
        process.wait()
        raise StartHung(deadline or 0.0) from None


# The OOM killer's standing of a VE's processes: its first pick, before any process of the
# host's or the tool's (whose starters, fork servers and monitors share the experiment's
# memory cgroup on cgroup v1: a small --ve-memory-max once saw both starters killed before
# any VE); among VEs the greediest still goes first.
OOM_SCORE_ADJ_VE = 1000


def first_pick_for_oom_killer(init_pid: int) -> None:
    """Given to the VE's init once its start returned, so what it forks inherits it. Not
    through liblxc's lxc.proc.oom_score_adj: that reaches the init before its exec, while
    its monitor waits on it, and an OOM kill there left the start (and the run) waiting for
    good. Raising needs no privilege; written by root with CAP_SYS_RESOURCE, the VE cannot
    lower it again without that capability (the kernel's oom_score_adj_min)."""
    with contextlib.suppress(OSError), open(f"/proc/{init_pid}/oom_score_adj", "w") as handle:
        handle.write(str(OOM_SCORE_ADJ_VE))


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


def show_liblxc_config(directory: str, targets: list[str]) -> None:
    """Bind `directory` over each build's global config directory, for this process and its children only."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(what: str, status: int) -> None:
        if status != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"could not {what}: {os.strerror(error)}")

    check("unshare a mount namespace", libc.unshare(CLONE_NEWNS))
    # Slave, not private: the host's later mounts and unmounts (the tmpfs at takedown) still reach us.
    check("make / a slave mount", libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None))
    for target in dict.fromkeys(targets):
        check(f"bind {directory} over {target}", libc.mount(directory.encode(), target.encode(), None, MS_BIND, None))


def join_cgroup(directory: str) -> None:
    with open(os.path.join(directory, "cgroup.procs"), "w") as handle:
        handle.write(str(os.getpid()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lxcpath")
    parser.add_argument("delay", type=float)
    parser.add_argument("--lxc-etc")
    parser.add_argument("--config-dir", action="append", default=[])
    parser.add_argument("--join", action="append", default=[])
    parser.add_argument("--builds", default="[{}]")
    parser.add_argument("--forkstart")
    parser.add_argument("--deadline", type=float)
    args = parser.parse_args()
    builds = [Build(**build) for build in json.loads(args.builds)]
    if args.forkstart:
        for build in builds:
            build.server = ForkServer(args.forkstart, args.lxcpath, build.env)
    lines = [line.strip().split("\t") for line in sys.stdin if line.strip()]
    names = [fields[0] for fields in lines]
    numbers = [int(fields[1]) if len(fields) > 1 else 0 for fields in lines]
    veths = [fields[2] if len(fields) > 2 else "" for fields in lines]
    try:
        if args.lxc_etc:
            show_liblxc_config(args.lxc_etc, args.config_dir or ["/etc/lxc"])
        for directory in args.join:
            join_cgroup(directory)
    except OSError as error:
        try:
            for name in names:
                say({"name": name, "ok": False, "error": f"the starter could not prepare: {error}"})
        except BrokenPipeError:
            return stop_listening()
        return 1
    try:
        return start_all(args, names, numbers, veths, builds)
    finally:
        for build in builds:
            if build.server:
                build.server.close()


def start_all(args: argparse.Namespace, names: list[str], numbers: list[int], veths: list[str], builds: list) -> int:
    for position, name in enumerate(names):
        if args.delay and position:
            time.sleep(args.delay)
        try:
            result = start(
                name, args.lxcpath, builds[numbers[position]], numbers[position], veths[position], args.deadline
            )
        except OSError as error:
            # Out of processes or memory (a full host), or no lxc-start: said for this VE, the others go on.
            result = {"name": name, "ok": False, "error": f"could not start it: {error}"}
        try:
            say(result)
        except BrokenPipeError:
            return stop_listening()  # stop after the start in hand
    return 0


if __name__ == "__main__":
    sys.exit(main())
