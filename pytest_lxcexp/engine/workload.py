"""The workload a VE runs, the files that configure it, the log it writes, and its parser.

Workloads (--ve-workload):

    ping-localhost   ping 127.0.0.1 PINGS times (the original experiment)
    ping-gateway     ping the bridge's own address (the host side of the project's bridge)
    ping-neighbour   veK pings ve(K+1), the host's last VE its first, across the bridge
    idle             log the begin line and stay up: pure density
    cmd:COMMAND      run COMMAND with /bin/sh; its output and exit status are logged
    hook             an init script returned by the pytest_lxcexp_workload hook

Log format (one line each, written by the VE into /var/log/lxcexp/workload.log):

    lxcexp-begin <epoch seconds> <hostname> workload=<kind> at=<epoch.microseconds>
    lxcexp-wait <target> <seconds> at=<epoch.microseconds>
                                              <- ping workloads: the target first answered after
                                                 that long, at that moment (unlogged probes)
    PING 127.0.0.1 (127.0.0.1): 56 data bytes
    64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.044 ms      <- one per ping answered
    ...                                       <- or the command's output
    lxcexp-end <epoch seconds> rc=<exit status of ping or the command>
    lxcexp-poweroff <epoch seconds>           <- --ve-poweroff: written just before powering off

An idle VE writes no end line. A restarted VE appends a new begin line: the parser
describes the latest run and counts the runs. Version 1 logs (no workload= field, no
wait/poweroff lines) and version 2 logs (no at= stamps) parse the same way. An at= is
empty where the shell has no $EPOCHREALTIME (dash).
"""

from __future__ import annotations

import collections
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .addressing import AddressPlan
from .safefs import UnsafeVEFile, open_ve_file, read_at_most, read_ve_tail
from .workload_kinds import COMMAND_PREFIX, NETWORK_WORKLOADS, REACH_TIMEOUT, workload_kind

if TYPE_CHECKING:
    from .config import ExperimentConfig

WORKLOAD_VERSION = 5
INIT_PATH = "/sbin/lxcexp-workload"
SYSTEM_INIT_PATH = "/sbin/init"
ENV_PATH = "etc/lxcexp/workload.env"
# Per-VE parameters (the neighbour's address), written into each VE's overlay upper dir.
VE_ENV_PATH = "etc/lxcexp/ve.env"
SYSTEMD_UNIT = "lxcexp-workload.service"
# Lines of a command's output kept in its per-VE record.
OUTPUT_LINES = 20
# Characters of one line kept (markers and ping replies are far shorter): a VE printing
# 20 lines of 50 MB must not put 1 GB in the tool's memory and results.json.
OUTPUT_LINE_CHARS = 500
_CUT = " ...(line cut)"
# Bytes of a log's end read for its tail (reports show its last lines).
TAIL_BYTES = 64 * 1024


INIT_SCRIPT = r"""#!/bin/sh
# lxcexp workload (version @VERSION@): the VE's init (PID 1) with --ve-init=workload,
# a service of the distribution's own init with --ve-init=system.
# The moment it began, in microseconds, without a fork (busybox ash; empty under dash).
began_at=$EPOCHREALTIME
# The OOM killer's first pick before anything of the host's or the tool's, set before it
# forks anything, so all it runs inherits it (a builtin, no fork). The starter writes the
# same once the start returned: too late for a workload forked at once, which kept 0 and
# let the OOM killer end its neighbours' inits instead.
echo 1000 >/proc/self/oom_score_adj 2>/dev/null
. /etc/lxcexp/workload.env
[ -r /etc/lxcexp/ve.env ] && . /etc/lxcexp/ve.env
# No fork before the log is open ([ is a builtin): a VE out of PIDs then logs why it failed.
[ -d /var/log/lxcexp ] || mkdir -p /var/log/lxcexp
exec >>/var/log/lxcexp/workload.log 2>&1 </dev/null
echo "lxcexp-begin $(date +%s) $(hostname) workload=$WORKLOAD at=$began_at"
ip link set lo up || echo "lxcexp-error lo-up"
# eth0 comes up here, not in liblxc (GATEWAY set): liblxc brings it up before it turns
# the VE's IPv6 off, and what IPv6 sends meanwhile is flooded to every port of the bridge.
if [ -n "$GATEWAY" ]; then
    { ip link set eth0 up && ip route add default via "$GATEWAY"; } || echo "lxcexp-error eth0-up"
fi
rc=
case "$WORKLOAD" in
ping-gateway|ping-neighbour|ping-localhost)
    # The target may not be up yet (a neighbour starts later): wait for a first answer
    # with probes that are not logged, so the counted pings meet a reachable target;
    # the moment of that first answer is the VE's first_ping phase.
    began=$(date +%s)
    until ping -c 1 -W 1 "$TARGET" >/dev/null 2>&1; do
        [ $(($(date +%s) - began)) -ge "$REACH_TIMEOUT" ] && break
        sleep 1
    done
    echo "lxcexp-wait $TARGET $(($(date +%s) - began)) at=$EPOCHREALTIME"
    ping -c "$PINGS" -i "$INTERVAL" "$TARGET"
    rc=$?
    ;;
command)
    /bin/sh -c "$COMMAND"
    rc=$?
    # Output without a final newline ("printf x") must not swallow the end marker.
    [ -n "$(tail -c 1 /var/log/lxcexp/workload.log 2>/dev/null)" ] && echo
    ;;
idle) ;;
*)
    echo "lxcexp-error unknown workload $WORKLOAD"
    rc=127
    ;;
esac
[ -n "$rc" ] && echo "lxcexp-end $(date +%s) rc=$rc"
if [ -n "$rc" ] && [ "$POWEROFF" = 1 ]; then
    # The status is logged above, before the VE goes: stats tell a poweroff from a crash.
    echo "lxcexp-poweroff $(date +%s)"
    if [ "$$" = 1 ]; then
        poweroff -f
        exit "$rc"  # no CAP_SYS_BOOT: init exiting ends the container just the same
    fi
    poweroff  # a service: let the distribution's init shut down cleanly
    exit "$rc"
fi
# As a service the distribution's init keeps the VE up; as init, stay up as the
# original's VEs did: the experiment measures running containers.
[ "$$" = 1 ] || exit 0
# A user's command may leave processes behind, which init must reap: the shell stays.
[ "$WORKLOAD" = command ] && while :; do sleep 86400; done
# The tool's own workloads leave nothing: sleep in place of the shell, one process fewer
# per VE (140 KiB of host memory each; docs/benchmarks.md).
exec sleep 2147483647
""".replace("@VERSION@", str(WORKLOAD_VERSION))

SYSTEMD_UNIT_TEXT = f"""[Unit]
Description=pytest-lxcexp workload (logs to /var/log/lxcexp/workload.log)
After=local-fs.target

[Service]
Type=exec
ExecStart={INIT_PATH}

[Install]
WantedBy=multi-user.target
"""

# busybox init: run the workload once as a service; nothing on ttys (the VE has none).
BUSYBOX_INITTAB = f"::once:{INIT_PATH}\n"

_BEGIN = re.compile(r"^lxcexp-begin (\d+)(?:\s+\S+)?(?:\s+workload=(\S+))?(?:\s+at=([0-9]+\.[0-9]+))?")
_WAIT = re.compile(r"^lxcexp-wait \S+ \d+ at=([0-9]+\.[0-9]+)")
_END = re.compile(r"^lxcexp-end (\d+) rc=(\d+)")
_POWEROFF = re.compile(r"^lxcexp-poweroff (\d+)")
# busybox: "64 bytes from 10.0.0.1: seq=0 ..."; iputils: also "64 bytes from name (10.0.0.1): icmp_seq=1 ..."
_REPLY = re.compile(r"^\d+ bytes from (?:\S+ \()?([0-9A-Fa-f.:]+?)\)?:")


def workload_command(workload: str) -> str | None:
    return workload[len(COMMAND_PREFIX) :] if workload.startswith(COMMAND_PREFIX) else None


def ping_target(config: ExperimentConfig, index: int | None = None) -> str | None:
    """The address a ping workload pings; for ping-neighbour, veK's is ve(K+1)'s (a host's last: its first)."""
    kind = workload_kind(config.workload)
    if kind == "ping-localhost":
        return "127.0.0.1"
    if kind not in NETWORK_WORKLOADS or config.network != "bridge":
        return None
    plan = AddressPlan(config.subnet)
    if kind == "ping-gateway":
        return str(plan.gateway)
    if index is None:
        return None
    # The next VE of this host's, wrapping: a neighbour on another host would be unreachable.
    neighbour = index + 1 if index < config.ve_last else config.ve_first
    return str(plan.ve_address(neighbour))


def workload_env(
    pings: int,
    interval: float,
    target: str = "127.0.0.1",
    workload: str = "ping-localhost",
    poweroff: bool = False,
    gateway: str = "",
) -> str:
    """/etc/lxcexp/workload.env: sourced by the init script, shared by every VE through the base.
    GATEWAY, when set, tells the init script to bring eth0 up itself (init_brings_up_network)."""
    lines = [
        f"WORKLOAD={workload_kind(workload)}",
        f"PINGS={pings}",
        f"INTERVAL={interval:g}",
        f"TARGET={target}",
        f"REACH_TIMEOUT={REACH_TIMEOUT}",
        f"POWEROFF={int(poweroff)}",
    ]
    if gateway:
        lines.append(f"GATEWAY={gateway}")
    command = workload_command(workload)
    if command is not None:
        # shlex.quote is POSIX sh quoting: the command reaches `sh -c` byte for byte.
        lines.append(f"COMMAND={shlex.quote(command)}")
    return "\n".join(lines) + "\n"


def init_brings_up_network(config: ExperimentConfig) -> bool:
    """Whether the tool's own init script (PID 1, not a hook's script or a distribution's
    init) brings eth0 up, after liblxc turned the VE's IPv6 off (see INIT_SCRIPT)."""
    return config.network == "bridge" and config.init == "workload" and config.workload_script is None


def env_for(config: ExperimentConfig) -> str:
    target = ping_target(config) or "127.0.0.1"
    gateway = str(AddressPlan(config.subnet).gateway) if init_brings_up_network(config) else ""
    return workload_env(config.pings, config.ping_interval, target, config.workload, config.poweroff, gateway)


def ve_env(config: ExperimentConfig, index: int) -> str | None:
    """Per-VE parameters, or None when the workload needs none (then no file is written)."""
    if workload_kind(config.workload) != "ping-neighbour":
        return None
    return f"VE={index}\nTARGET={ping_target(config, index)}\n"


def init_command(config: ExperimentConfig) -> str:
    """lxc.init.cmd: the workload itself, or the distribution's init that runs it as a service."""
    return SYSTEM_INIT_PATH if config.init == "system" else INIT_PATH


def mount_auto(config: ExperimentConfig) -> str:
    """lxc.mount.auto: a system init (systemd) needs writable cgroups and sysfs, as LXC's common.conf gives."""
    return "proc:mixed sys:mixed cgroup:mixed" if config.init == "system" else "proc:mixed sys:ro"


def expected_exit_status(workload: str) -> int | None:
    """The exit status that counts as success: 0 for a command or a hook's script; None where pings decide."""
    return 0 if workload_kind(workload) in ("command", "hook") else None


@dataclass(frozen=True)
class WorkloadLog:
    """What one VE's log says its latest run did."""

    present: bool
    began: int | None = None
    pings: int = 0
    ended: int | None = None
    exit_status: int | None = None
    workload: str | None = None
    powered_off: bool = False
    runs: int = 0
    repliers: tuple[str, ...] = ()
    output: tuple[str, ...] = field(default=(), compare=False, repr=False)
    began_at: float | None = None  # the init's first moment (epoch, microseconds), from at=
    first_answer_at: float | None = None  # a ping workload's first answered probe
    # Why the host would not read it (a FIFO, a device, a symlink, too large...): the VE fails with it.
    refused: str | None = None

    @property
    def finished(self) -> bool:
        return self.ended is not None


class LogParser:
    """The log's meaning so far, fed line by line (a follower feeds only what is new)."""

    def __init__(self) -> None:
        self.began: int | None = None
        self.ended: int | None = None
        self.status: int | None = None
        self.kind: str | None = None
        self.began_at: float | None = None
        self.first_answer_at: float | None = None
        self.pings = 0
        self.runs = 0
        self.powered_off = False
        self.repliers: dict[str, None] = {}
        self.output: collections.deque[str] = collections.deque(maxlen=OUTPUT_LINES)

    def copy(self) -> LogParser:
        twin = LogParser()
        twin.__dict__.update(self.__dict__)
        twin.repliers = dict(self.repliers)
        twin.output = collections.deque(self.output, maxlen=OUTPUT_LINES)
        return twin

    def feed(self, line: str) -> None:
        if len(line) > OUTPUT_LINE_CHARS:
            line = line[:OUTPUT_LINE_CHARS] + _CUT
        if match := _REPLY.match(line):
            self.pings += 1
            self.repliers.setdefault(match.group(1))
            self.output.append(line)
        elif match := _BEGIN.match(line):
            # A new run (a restart appends to the same log): forget the previous one.
            self.began, self.kind, self.runs = int(match.group(1)), match.group(2), self.runs + 1
            self.began_at = float(match.group(3)) if match.group(3) else None
            self.ended = self.status = self.first_answer_at = None
            self.pings, self.powered_off = 0, False
            self.repliers.clear()
            self.output.clear()
        elif match := _END.match(line):
            self.ended, self.status = int(match.group(1)), int(match.group(2))
        elif _POWEROFF.match(line):
            self.powered_off = True
        elif match := _WAIT.match(line):
            self.first_answer_at = float(match.group(1))
        elif not line.startswith("lxcexp-"):
            self.output.append(line)

    def result(self) -> WorkloadLog:
        return WorkloadLog(
            present=True,
            began=self.began,
            pings=self.pings,
            ended=self.ended,
            exit_status=self.status,
            workload=self.kind,
            powered_off=self.powered_off,
            runs=self.runs,
            repliers=tuple(self.repliers),
            output=tuple(self.output),
            began_at=self.began_at,
            first_answer_at=self.first_answer_at,
        )


def parse_log(text: str | None) -> WorkloadLog:
    if text is None:
        return WorkloadLog(present=False)
    parser = LogParser()
    for line in text.splitlines():
        parser.feed(line)
    return parser.result()


class LogFollower:
    """One VE's log, followed: each poll reads only the bytes written since the last one.

    The file is opened afresh each poll through safefs (no symlink, no FIFO, no device,
    bounded size) and closed again; a log replaced (another inode) or truncated is read
    from its beginning.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._parser = LogParser()

    def _restart(self, identity: tuple[int, int] | None) -> None:
        self._identity, self._offset, self._partial, self._parser = identity, 0, b"", LogParser()

    def poll(self) -> WorkloadLog:
        try:
            fd = open_ve_file(self.path)
        except FileNotFoundError:
            self._restart(None)
            return WorkloadLog(present=False)
        except UnsafeVEFile as refusal:
            self._restart(None)
            # There is something in its place (counted as a log that is refused, not as none).
            return WorkloadLog(present=True, refused=refusal.found)
        try:
            info = os.fstat(fd)
            identity = (info.st_dev, info.st_ino)
            if identity != self._identity or info.st_size < self._offset:
                self._restart(identity)
            new = read_at_most(fd, self._offset, info.st_size - self._offset)
        finally:
            os.close(fd)
        self._offset += len(new)
        *lines, self._partial = (self._partial + new).split(b"\n")
        # A line without its end yet is carried to the next poll: only as much as feed() keeps
        # (one byte more, so it is still known to be cut), not up to 64 MiB per VE.
        self._partial = self._partial[: 4 * OUTPUT_LINE_CHARS + 1]
        for line in lines:
            self._parser.feed(line.decode(errors="replace").rstrip("\r"))
        if not self._partial:
            return self._parser.result()
        # A line still being written counts as it stands now, as parse_log would read it.
        parser = self._parser.copy()
        parser.feed(self._partial.decode(errors="replace"))
        return parser.result()


def read_log(path: str) -> WorkloadLog:
    # The VE wrote it: anything but a plain regular file is refused (see safefs).
    return LogFollower(path).poll()


def log_tail(path: str, lines: int = 5) -> str:
    try:
        text = read_ve_tail(path, TAIL_BYTES)
    except UnsafeVEFile as refusal:
        return f"(not read: {refusal.found})"
    if text is None:
        return ""
    return "\n".join(
        line[:OUTPUT_LINE_CHARS] + _CUT if len(line) > OUTPUT_LINE_CHARS else line
        for line in text.splitlines()[-lines:]
    )
