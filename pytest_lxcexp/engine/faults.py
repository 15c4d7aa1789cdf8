"""Name the host limit behind a VE's failure, instead of leaving it as "no log file".

The original experiment's 296 "no log file" VEs had a cause: a host limit (ptys) that
nobody named. liblxc's first ERROR line and the workload's own log carry the errno
when a limit bites; this maps the usual ones to the limit, in words, with what to raise.
"""

from __future__ import annotations

import os
import re
import signal

from .safefs import UnsafeVEFile, read_ve_tail, read_ve_text

# (pattern in an error text, what it means). Order matters: the specific before the general.
HOST_LIMITS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"Too many open files in system|\bENFILE\b"),
        "host limit: the system's file table is full (ENFILE; raise fs.file-max)",
    ),
    (
        re.compile(r"Too many open files|\bEMFILE\b"),
        "host limit: out of file descriptors (EMFILE; raise RLIMIT_NOFILE, ulimit -n)",
    ),
    (
        re.compile(r"Exchange full|\bEXFULL\b"),
        "host limit: the bridge is full (EXFULL; a Linux bridge holds at most 1023 ports)",
    ),
    (
        re.compile(r"can't fork|Cannot fork|fork(?:ing)? failed|Resource temporarily unavailable|\bEAGAIN\b", re.I),
        "host limit: out of processes (fork failed with EAGAIN; a pids cgroup's pids.max, "
        "kernel.pid_max or kernel.threads-max)",
    ),
    (
        re.compile(r"Disk quota exceeded|\bEDQUOT\b"),
        "host limit: the key quota is used up (EDQUOT; raise kernel.keys.root_maxkeys / root_maxbytes)",
    ),
    (
        re.compile(r"Cannot allocate memory|Out of memory|\bENOMEM\b"),
        "host limit: out of memory (ENOMEM)",
    ),
    (
        re.compile(r"No buffer space available|\bENOBUFS\b|neighbour table overflow"),
        "host limit: network buffers or the neighbour table are full "
        "(ENOBUFS; raise net.ipv4.neigh.default.gc_thresh3)",
    ),
]
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
    return f"host limit: the tmpfs at {root} is full (ENOSPC; raise --ve-tmpfs-size)"


def host_limit(text: str, root: str | None = None) -> str | None:
    """The host limit an error text points at, in words, or None."""
    if _ENOSPC.search(text):
        if root is not None and tmpfs_full(root):
            return tmpfs_full_words(root)
        if _PTY_WORDS.search(text):
            return "host limit: out of ptys (ENOSPC; raise kernel.pty.max)"
        return "host limit: no space left (ENOSPC: a full filesystem or kernel table, e.g. inotify watches)"
    for pattern, words in HOST_LIMITS:
        if pattern.search(text):
            return words
    return None


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


def ve_fault(root: str, lxc_log: str, workload_log: str) -> str | None:
    """Why a VE that did not complete failed, when a host limit explains it; else None.

    Looks at the tmpfs first (a full tmpfs truncates logs and keeps liblxc from logging
    at all), then liblxc's errors, then what the workload itself printed.
    """
    if tmpfs_full(root):
        return tmpfs_full_words(root)
    try:
        first_error = lxc_errors(lxc_log)[:1]
    except UnsafeVEFile as refusal:
        return f"its lxc.log is {refusal.found}"
    for line in first_error + workload_errors(workload_log)[-20:]:
        found = host_limit(line, root)
        if found is not None:
            return found
    return None


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


def explain(root: str, lxc_log: str, workload_log: str, exit_status: int | None) -> str | None:
    """What explains a VE's failure beyond its counts: a host limit, else the signal that
    killed its workload, else the workload's own last error line. None when nothing does."""
    limit = ve_fault(root, lxc_log, workload_log)
    if limit is not None:
        return limit
    if exit_status is not None and exit_status > 128:
        # The shell's own "Killed" line says less than the signal's name.
        try:
            name = signal.Signals(exit_status - 128).name
        except ValueError:
            name = f"signal {exit_status - 128}"
        return f"its workload was killed by {name} (rc={exit_status})"
    said = workload_errors(workload_log)
    if said:
        return f"its workload said: {said[-1][:200]}"
    return None
