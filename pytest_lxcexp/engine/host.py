"""Preflight: can this host run the requested experiment? Reads only; changes nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

from . import cgroups
from .config import ConfigError, ExperimentConfig

# Processes per running VE: its monitor, its init (the workload shell) and ping or sleep.
PROCESSES_PER_VE = 3
# Measured: 1.2 MiB of host memory per running busybox VE (docs/benchmarks.md), and 0.83 MiB
# more when each VE and its monitor get memory cgroups of their own (--ve-cgroups).
MEMORY_PER_VE = 3 * 1024 * 1024 // 2
MEMORY_CGROUPS_PER_VE = 1024 * 1024
# Per VE on the tmpfs: overlay upper and work dirs, config, lxc.log; plus each ping's log line.
TMPFS_PER_VE = 24 * 1024
TMPFS_PER_PING = 64
TMPFS_BASE = 8 * 1024 * 1024
# Open files per running VE across its monitor and processes (generous).
FILES_PER_VE = 32


class PreflightError(RuntimeError):
    """The host cannot run the experiment as asked; the message says what is short."""


@dataclass(frozen=True)
class Requirement:
    """One host limit the experiment needs, what it needs, and what the host has."""

    what: str
    need: int
    have: int
    sysctl: str | None = None  # a /proc/sys path that --ve-tune-host may raise
    fix: str = ""
    hard: bool = True  # False: the run can go on, but something may suffer (a warning)

    @property
    def short(self) -> bool:
        return self.need > self.have

    def line(self) -> str:
        fix = self.fix or (f"raise {self.what} (or use --ve-tune-host)" if self.sysctl else "")
        short = self.need - self.have
        return f"{self.what:<34} need {self.need:>12}  have {self.have:>12}  short by {short:>10}  {fix}"


# Kept for the table's callers: a requirement that is short.
Shortfall = Requirement


def read_int(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().split()[0])


def require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError("lxcexp must run as root: it mounts a tmpfs, creates bridges and starts containers")


def require_lxc() -> None:
    # Found, not imported: liblxc is loaded only in the forked children that call it.
    if importlib.util.find_spec("lxc") is None:
        raise PreflightError(
            "python3-lxc is not importable: apt-get install python3-lxc, and use a venv made "
            "with --system-site-packages from /usr/bin/python3"
        )
    # The starters start each VE with lxc-start (see starter.py), and show it their own /etc/lxc.
    if shutil.which("lxc-start") is None or not os.path.isdir("/etc/lxc"):
        raise PreflightError("lxc-start is not on PATH or /etc/lxc is missing: apt-get install lxc")


def require_controllers(config: ExperimentConfig) -> None:
    """Every controller --ve-cgroups lists exists on this host (else liblxc would drop it unsaid)."""
    if config.cgroups in ("auto", "all") or config.ve_controllers is None:
        return
    missing = [name for name in config.ve_controllers if name not in cgroups.host_controllers()]
    if missing:
        raise ConfigError("--ve-cgroups", f"this host has no {', '.join(missing)} cgroup controller")


def require_filesystems() -> None:
    with open("/proc/filesystems") as handle:
        known = {line.split()[-1] for line in handle if line.strip()}
    missing = [fs for fs in ("tmpfs", "overlay") if fs not in known]
    if missing:
        raise PreflightError(f"the kernel lacks filesystems: {', '.join(missing)} (try: modprobe overlay)")


def _sysctl(name: str) -> tuple[str, int]:
    path = "/proc/sys/" + name.replace(".", "/")
    return path, read_int(path)


def requirements(config: ExperimentConfig) -> list[Requirement]:
    """What this host's VEs need from it, limit by limit."""
    count = len(config.ves)
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    processes = count * PROCESSES_PER_VE + running + 1000
    found = []
    for name, need in (
        ("kernel.pid_max", processes),
        ("kernel.threads-max", processes),
        ("fs.file-max", count * FILES_PER_VE + read_int("/proc/sys/fs/file-nr")),
        # Each VE gets a session keyring of its own (lxc.keyring.session).
        ("kernel.keys.root_maxkeys", count + 200),
    ):
        path, have = _sysctl(name)
        found.append(Requirement(name, need, have, sysctl=path))
    if config.network == "bridge":
        # A broadcast (ARP) is queued once per port in the per-CPU backlog: a shorter
        # backlog silently drops it for the VEs past the limit. The ARP table and its
        # gc_thresh limits are shared by every network namespace: host <-> every VE
        # takes two entries per VE (seen: 1030 VEs, 65 unreachable at gc_thresh3 1230,
        # none at 2300). Traffic across the bridge to every VE needs both; the default
        # workload (ping localhost) does not, so these only warn.
        for name, need in (
            ("net.core.netdev_max_backlog", count + 100),
            ("net.ipv4.neigh.default.gc_thresh2", 2 * count + 100),
            ("net.ipv4.neigh.default.gc_thresh3", 2 * count + 200),
        ):
            path, have = _sysctl(name)
            found.append(Requirement(name, need, have, sysctl=path, hard=False))
    tmpfs_need = TMPFS_BASE + count * (TMPFS_PER_VE + config.pings * TMPFS_PER_PING)
    found.append(
        Requirement("tmpfs size (--ve-tmpfs-size)", tmpfs_need, config.tmpfs_size, fix="raise --ve-tmpfs-size")
    )
    with open("/proc/meminfo") as handle:
        meminfo = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in handle}
    per_ve = MEMORY_PER_VE + (MEMORY_CGROUPS_PER_VE if cgroups.ves_get_memory_cgroups(config.ve_controllers) else 0)
    found.append(
        Requirement("memory available (bytes)", count * per_ve, meminfo["MemAvailable"], fix="fewer VEs or more memory")
    )
    return found


def shortfalls(config: ExperimentConfig) -> list[Requirement]:
    return [item for item in requirements(config) if item.short]


def preflight(config: ExperimentConfig) -> list[str]:
    """Everything checked before anything is created; raises with the full list of what is short.

    Returns warnings: limits that are short but do not stop the default workload.
    """
    require_root()
    require_lxc()
    require_controllers(config)
    require_filesystems()
    if config.network == "bridge":
        from .network import bridge_owner, overlapping_routes

        owner = bridge_owner(config.bridge)
        if owner is not None and owner != config.tag:
            raise ConfigError("--ve-bridge", f"an interface named {config.bridge} already exists and is not ours")
        # Our own stale bridge may hold the subnet: takedown removes it before setup.
        clashes = overlapping_routes(config.subnet, ignore=config.bridge if owner else None)
        if clashes:
            raise ConfigError("--ve-subnet", f"{config.subnet} overlaps host addresses: {', '.join(clashes)}")
    short = shortfalls(config)
    if config.tune_host:
        # --ve-tune-host raises the sysctls itself (after the checks, before setup).
        short = [item for item in short if item.sysctl is None]
    hard = [item for item in short if item.hard]
    if hard:
        table = "\n".join(item.line() for item in hard)
        raise PreflightError(f"this host cannot hold {len(config.ves)} VEs:\n{table}")
    warnings = [
        f"host limit short (VEs reaching each other or the host may suffer): {item.line()}"
        for item in short
        if not item.hard
    ]
    if config.network == "bridge":
        from .bridgefilter import bridge_filter_warning

        firewall = bridge_filter_warning(config.bridge)
        if firewall is not None:
            warnings.append(firewall)
    return warnings
