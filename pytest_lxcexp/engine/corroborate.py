"""Does the host agree with a host limit that only a VE's own output names?

A VE's workload log is written inside the VE: a hostile one can print "can't fork: Resource
temporarily unavailable" and have a ramp stop "for the host's pids limit" that nobody hit.
liblxc's log is written on the host, out of the VE's reach, and is taken as it is. A limit
named only by the workload is taken when the host's own counters show it:

- pids: a fork refused by the VE's own pids cgroup or the experiment's (pids.events `max`),
  the experiment's budget at its pids.max now or at some moment before (pids.peak), or the
  host's threads within 5% of kernel.pid_max / kernel.threads-max;
- files (ENFILE): the host's file table within 5% of fs.file-max; EMFILE is a process's own
  RLIMIT_NOFILE, never the host's;
- memory: less available than the reserve a ramp keeps for the host, or the experiment's
  memory cgroups at their limit (--ve-memory-max; v2's memory.events `max`, v1's failcnt);
- an OOM kill (a workload that died of SIGKILL): the experiment's memory cgroups counted one
  (the VE's own on cgroup v2, the experiment's on v1, where the VEs share one by default);
- tmpfs: the experiment's tmpfs (nearly) full.

The limits liblxc reports (bridge ports, keys, ptys) and those with no counter read here
(neighbours, other ENOSPC) are taken as named.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable

from . import cgroups, host
from .faults import HostLimit, tmpfs_low

NEAR = 0.95  # "at the limit": within 5% of it
# Cgroups of one VE's subtree looked at (a system init makes a few dozen; a VE cannot make the
# tool walk without end).
SUBTREE_CGROUPS = 500


def host_agrees(limit: HostLimit, root: str, tag: str, ve: str) -> bool:
    """Whether the host's counters show `limit`, named by VE `ve`'s own output."""
    if limit.name == "pids":
        return _forks_refused(tag, ve) or _near(host.processes_in_use(), _pid_limit())
    if limit.name == "files":
        return "ENFILE" in limit.words and _file_table_near_full()
    if limit.name == "memory":
        return host.memory_available() < host.MEMORY_RESERVE or cgroups.memory_events(tag, ve, "max") > 0
    if limit.name == "oom":
        return cgroups.memory_events(tag, ve, "oom_kill") > 0
    if limit.name == "tmpfs":
        return tmpfs_low(root)
    return True


def checker(root: str, tag: str, ve: str) -> Callable[[HostLimit], bool]:
    """host_agrees for VE `ve` of the experiment at `root` with `tag`, as faults.HostAgrees."""
    return functools.partial(host_agrees, root=root, tag=tag, ve=ve)


def _near(used: int, limit: int | None) -> bool:
    return limit is not None and used >= NEAR * limit


def _pid_limit() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return min(host.read_int("/proc/sys/kernel/pid_max"), host.read_int("/proc/sys/kernel/threads-max"))
    return None


def _forks_refused(tag: str, ve: str) -> bool:
    """A pids cgroup of the VE's (its own or one it made below it, where the kernel counts the
    refusal: the forking process's) refused a fork, or the experiment's budget or the VE's own
    cgroup is at its pids.max now, or the budget reached it before (its pids.peak). On cgroup
    v1 a refusal is counted only in the forking process's cgroup, which liblxc removes when
    the VE stops, and the budget has room again once the VE's processes are gone: its peak is
    what still shows it (a ramp's VE once failed "for no host limit named" that way)."""
    budget, own = cgroups.pids_budget_path(tag), cgroups.ve_pids_cgroup(tag, ve)
    if budget is not None and (cgroups.refused_forks(budget) > 0 or _at_max(budget) or _at_max(budget, "pids.peak")):
        return True
    if own is None or not os.path.isdir(own):
        return False
    if _at_max(own):
        return True
    for seen, (directory, _, _) in enumerate(os.walk(own)):  # os.walk does not follow symlinks
        if seen >= SUBTREE_CGROUPS:
            return False
        if cgroups.refused_forks(directory) > 0:
            return True
    return False


def _at_max(cgroup: str, count: str = "pids.current") -> bool:
    """Its `count` (pids.current now, or pids.peak: the most it ever held, Linux 6.1+; absent:
    False) has reached its pids.max (not "max")."""
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(cgroup, "pids.max")) as handle:
            limit = handle.read().strip()
        if limit != "max":
            return host.read_int(os.path.join(cgroup, count)) >= int(limit)
    return False


def _file_table_near_full() -> bool:
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/sys/fs/file-nr") as handle:
            allocated = int(handle.read().split()[0])
        return _near(allocated, host.read_int("/proc/sys/fs/file-max"))
    return False
