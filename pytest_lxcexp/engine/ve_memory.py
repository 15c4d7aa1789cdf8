"""Memory per VE, read while it runs: its LXC monitor's PSS and what its own memory cgroup is charged.

- `monitor_pss`: the proportional set size of the VE's LXC monitor (`Pss:` of
  /proc/PID/smaps_rollup, one read the kernel sums for us): the monitor's own pages, and
  its share of pages it maps together with other monitors (liblxc, libc). A build whose
  monitor allocates more shows here, whatever else runs on the host.
- `cgroup_charge`: what the VE's own memory cgroup (`lxcexp-<tag>/veN`) is charged
  (v1 `memory.usage_in_bytes`, v2 `memory.current`: its processes, page cache and kernel
  memory). Only where each VE has a memory cgroup of its own (--ve-cgroups with memory,
  or a cgroup v2 host); by default the VEs are all charged to the experiment's one memory
  cgroup and there is nothing per VE to read: None.

The PID comes from the start (lxc-start -p). Before reading, the process must still sit
in that VE's monitor cgroup: a PID reused since by another process is never read. Both
files are opened relative to one /proc/PID directory, so they are the same process's.
"""

from __future__ import annotations

import contextlib
import os

from . import cgroups


def _read_at(directory: int, name: str) -> str:
    handle = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=directory)
    try:
        chunks = []
        while chunk := os.read(handle, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")
    finally:
        os.close(handle)


def monitor_pss(pid: int | None, tag: str, name: str) -> int | None:
    """Bytes of PSS of `name`'s LXC monitor `pid`; None if that PID is gone or not (any more) its monitor."""
    if not pid:
        return None
    try:
        directory = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        suffix = f"/{cgroups.monitor_dir(tag)}/{name}"
        if not any(line.endswith(suffix) for line in _read_at(directory, "cgroup").splitlines()):
            return None
        for line in _read_at(directory, "smaps_rollup").splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(directory)
    return None


def cgroup_charge(tag: str, name: str, hierarchy: str | None) -> int | None:
    """Bytes charged to `name`'s own memory cgroup in `hierarchy` (memory_hierarchy()'s); None without one."""
    if hierarchy is None:
        return None
    directory = os.path.join(hierarchy, cgroups.container_dir(tag), name)
    for file in ("memory.usage_in_bytes", "memory.current"):  # v1, v2
        with contextlib.suppress(OSError, ValueError, IndexError), open(os.path.join(directory, file)) as handle:
            return int(handle.read().split()[0])
    return None


def memory_hierarchy(ves_have_memory_cgroups: bool) -> str | None:
    """The hierarchy holding the VEs' own memory cgroups; None where they have none (charged together)."""
    return cgroups.memory_hierarchy() if ves_have_memory_cgroups else None
