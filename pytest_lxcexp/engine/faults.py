"""Name the host limit behind a VE's failure, instead of leaving it as "no log file".

The original experiment's 296 "no log file" VEs had a cause: a host limit (ptys) that
nobody named. liblxc's first ERROR line and the workload's own log carry the errno
when a limit bites; this maps the usual ones to the limit, in words, with what to raise.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from dataclasses import dataclass

from .safefs import UnsafeVEFile, read_ve_tail, read_ve_text


@dataclass(frozen=True)
class HostLimit:
    """A host limit, named: `name` short (for results.json), `words` for people, `setting` what raises it."""

    name: str
    words: str
    setting: str


# (pattern in an error text, the limit). Order matters: the specific before the general.
HOST_LIMITS: list[tuple[re.Pattern[str], HostLimit]] = [
    (
        re.compile(r"Too many open files in system|\bENFILE\b"),
        HostLimit("files", "host limit: the system's file table is full (ENFILE; raise fs.file-max)", "fs.file-max"),
    ),
    (
        re.compile(r"Too many open files|\bEMFILE\b"),
        HostLimit(
            "files",
            "host limit: out of file descriptors (EMFILE; raise RLIMIT_NOFILE, ulimit -n)",
            "RLIMIT_NOFILE (ulimit -n)",
        ),
    ),
    (
        re.compile(r"Exchange full|\bEXFULL\b"),
        HostLimit(
            "ports",
            "host limit: the bridge is full (EXFULL; a Linux bridge holds at most 1023 ports)",
            "more sub-bridges (BR_MAX_PORTS is fixed at 1024)",
        ),
    ),
    (
        re.compile(r"can't fork|Cannot fork|fork(?:ing)? failed|Resource temporarily unavailable|\bEAGAIN\b", re.I),
        HostLimit(
            "pids",
            "host limit: out of processes (fork failed with EAGAIN; a pids cgroup's pids.max, "
            "kernel.pid_max or kernel.threads-max)",
            "pids.max (--ve-pids-max), kernel.pid_max, kernel.threads-max",
        ),
    ),
    (
        re.compile(r"Disk quota exceeded|\bEDQUOT\b"),
        HostLimit(
            "keys",
            "host limit: the key quota is used up (EDQUOT; raise kernel.keys.root_maxkeys / root_maxbytes)",
            "kernel.keys.root_maxkeys, kernel.keys.root_maxbytes",
        ),
    ),
    (
        re.compile(r"Cannot allocate memory|Out of memory|\bENOMEM\b"),
        HostLimit(
            "memory",
            "host limit: out of memory (ENOMEM: the host's, or the experiment's --ve-memory-max)",
            "more memory, fewer VEs, or a higher --ve-memory-max",
        ),
    ),
    (
        re.compile(r"No buffer space available|\bENOBUFS\b|neighbour table overflow"),
        HostLimit(
            "neighbours",
            "host limit: network buffers or the neighbour table are full "
            "(ENOBUFS; raise net.ipv4.neigh.default.gc_thresh3)",
            "net.ipv4.neigh.default.gc_thresh3",
        ),
    ),
]
PTYS = HostLimit("ptys", "host limit: out of ptys (ENOSPC; raise kernel.pty.max)", "kernel.pty.max")
NO_SPACE = HostLimit(
    "space",
    "host limit: no space left (ENOSPC: a full filesystem or kernel table, e.g. inotify watches)",
    "the full filesystem's size, or fs.inotify.max_user_watches",
)
# Not a pattern in a log: a workload killed by SIGKILL while the experiment's memory cgroups
# counted an OOM kill (corroborate.py). Its words follow "killed by SIGKILL (rc=137): ".
OOM_KILLED = HostLimit(
    "oom",
    "the kernel's OOM killer ended it (out of memory: the experiment's --ve-memory-max, or the host's)",
    "--ve-memory-max, or more memory",
)
# A VE that stopped by itself (its init gone) while the OOM killer counted kills where it was
# charged: its own memory cgroup's count on cgroup v2, the experiment's shared one on v1.
OOM_CRASH_WORDS = "the kernel's OOM killer ended processes in its memory cgroup (its init among them, likely)"
_ENOSPC = re.compile(r"No space left on device|\bENOSPC\b")
_PTY_WORDS = re.compile(r"pty|tty|console|devpts|ptmx", re.I)
# The tail of a workload log that is scanned for an error (the log of a VE stuck in a
# fork loop can be large).
LOG_SCAN_BYTES = 64 * 1024


def tmpfs_full(root: str) -> bool:
    """True when the experiment's tmpfs has no free block or no free inode left."""
    try:
        info = os.statvfs(root)
    except OSError:
        return False
    return info.f_bavail == 0 or (info.f_files > 0 and info.f_favail == 0)


def tmpfs_full_words(root: str) -> str:
    return tmpfs_limit(root).words


def tmpfs_limit(root: str) -> HostLimit:
    return HostLimit(
        "tmpfs", f"host limit: the tmpfs at {root} is full (ENOSPC; raise --ve-tmpfs-size)", "--ve-tmpfs-size"
    )


# An ENOSPC with less than this free on the tmpfs is the tmpfs's: a write of a larger block
# fails while a few blocks are still free (dd with bs=64k), so "full" alone misses it.
TMPFS_LOW_BYTES = 1024 * 1024


def tmpfs_low(root: str) -> bool:
    if tmpfs_full(root):
        return True
    try:
        info = os.statvfs(root)
    except OSError:
        return False
    return info.f_bavail * info.f_frsize < TMPFS_LOW_BYTES


def classify(text: str, root: str | None = None) -> HostLimit | None:
    """The host limit an error text points at, or None."""
    if _ENOSPC.search(text):
        if root is not None and tmpfs_low(root):
            return tmpfs_limit(root)
        return PTYS if _PTY_WORDS.search(text) else NO_SPACE
    for pattern, limit in HOST_LIMITS:
        if pattern.search(text):
            return limit
    return None


def host_limit(text: str, root: str | None = None) -> str | None:
    """The host limit an error text points at, in words, or None."""
    found = classify(text, root)
    return found.words if found else None


def lxc_errors(path: str) -> list[str]:
    """The ERROR lines of a VE's lxc.log, oldest first (the first is the cause).
    Raises safefs.UnsafeVEFile when something other than a plain file is in its place."""
    text = read_ve_tail(path, LOG_SCAN_BYTES)
    return [line.strip() for line in (text or "").splitlines() if " ERROR " in line]


def workload_errors(path: str) -> list[str]:
    """Lines of a VE's workload log that are neither ping output nor the workload's own markers."""
    text = read_ve_text(path, LOG_SCAN_BYTES)
    if text is None:
        return []
    found = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("lxcexp-begin", "lxcexp-end", "lxcexp-wait", "lxcexp-poweroff", "PING ")):
            continue
        if re.match(r"^\d+ bytes from ", line) or line.startswith(("---", "round-trip", "rtt ")):
            continue
        if re.match(r"^\d+ packets transmitted", line):
            continue
        found.append(line)
    return found


# Whether the host's own counters show a limit that only a VE's output named (corroborate.py).
# Required everywhere: a caller that took a VE's words alone would let a VE that prints
# "can't fork" stop a ramp for the host's pids limit.
HostAgrees = Callable[[HostLimit], bool]


def ve_limit(
    root: str, lxc_log: str, workload_log: str, *, full_tmpfs: bool = True, host_agrees: HostAgrees
) -> tuple[HostLimit, str] | None:
    """The host limit that stopped a VE, and the line that shows it in the kernel's words
    (liblxc's error, which carries the errno's text, or the workload's), or None.
    `full_tmpfs=False`: only what the VE's own logs say (a full tmpfs does not stop a VE that runs).
    A limit only the workload's output names (the VE's own words) is taken when `host_agrees`.
    Raises safefs.UnsafeVEFile when its lxc.log is not a plain file."""
    if full_tmpfs and tmpfs_full(root):
        return tmpfs_limit(root), f"statvfs({root}): no free blocks or inodes left"
    for line in lxc_errors(lxc_log)[:1]:
        found = classify(line, root)
        if found is not None:
            return found, line
    for line in workload_errors(workload_log)[-20:]:
        found = classify(line, root)
        if found is not None and host_agrees(found):
            return found, line
    return None


def ve_fault(root: str, lxc_log: str, workload_log: str, *, host_agrees: HostAgrees) -> str | None:
    """Why a VE that did not complete failed, when a host limit explains it; else None.

    Looks at the tmpfs first (a full tmpfs truncates logs and keeps liblxc from logging
    at all), then liblxc's errors, then what the workload itself printed.
    """
    try:
        found = ve_limit(root, lxc_log, workload_log, host_agrees=host_agrees)
    except UnsafeVEFile as refusal:
        return f"its lxc.log is {refusal.found}"
    return found[0].words if found else None


class FullTmpfsWatch:
    """Ends a wait that cannot end: with the tmpfs full, the VEs' logs cannot grow, so
    their end lines never come. Hopeless once the tmpfs is full and no pending VE's log
    has grown for `patience` seconds."""

    def __init__(self, root: str, patience: float) -> None:
        self.root = root
        self.patience = patience
        self._sizes: dict[str, int] = {}
        self._since: float | None = None
        self.seen_full = False

    def hopeless(self, logs: list[str], now: float) -> bool:
        if not tmpfs_full(self.root):
            self._since = None
            return False
        self.seen_full = True
        sizes = {}
        for path in logs:
            try:
                sizes[path] = os.lstat(path).st_size
            except OSError:
                sizes[path] = -1
        if self._since is None or sizes != self._sizes:
            self._sizes, self._since = sizes, now
            return False
        return now - self._since >= self.patience


def explain(
    root: str, lxc_log: str, workload_log: str, exit_status: int | None, *, host_agrees: HostAgrees
) -> str | None:
    """What explains a VE's failure beyond its counts: a host limit, else the signal that
    killed its workload, else the workload's own last error line. None when nothing does."""
    limit = ve_fault(root, lxc_log, workload_log, host_agrees=host_agrees)
    if limit is not None:
        return limit
    if exit_status is not None and exit_status > 128:
        # The shell's own "Killed" line says less than the signal's name.
        try:
            name = signal.Signals(exit_status - 128).name
        except ValueError:
            name = f"signal {exit_status - 128}"
        said = f"its workload was killed by {name} (rc={exit_status})"
        if exit_status - 128 == signal.SIGKILL and host_agrees(OOM_KILLED):
            said += f": {OOM_KILLED.words}"
        return said
    said = workload_errors(workload_log)
    if said:
        return f"its workload said: {said[-1][:200]}"
    return None
