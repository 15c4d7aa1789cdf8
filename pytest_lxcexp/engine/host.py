"""Preflight: can this host run the requested experiment? Reads only; changes nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

from . import cgroups
from .config import ConfigError, ExperimentConfig


@dataclass(frozen=True)
class PerVE:
    """What one running VE of a kind (base, init) takes from the host."""

    processes: int  # its monitor, its init and what the init runs (while the workload pings)
    memory: int  # bytes of host memory, without memory cgroups of its own (MEMORY_CGROUPS_PER_VE)
    tmpfs: int  # bytes of its overlay upper and logs on the experiment's tmpfs, before the pings' lines


MIB, KIB = 1024 * 1024, 1024
# One table for the preflight (issue 14) and the per-base budget (issue 12). Measured on this
# project's machine (Debian 12, kernel 6.18, liblxc 5.0.2, cgroup v1) by
# benchmarks/per_ve_probe.py: 10 idle VEs of each kind, pids.current of the experiment's
# payload and monitor subtrees, memory.usage_in_bytes of the same (host memory, the probe's
# other column, is too noisy on a shared machine to read at 10 VEs), and the growth of the
# tmpfs. A ping workload adds its ping to the idle figure where the init does not replace it.
PER_VE: dict[tuple[str, str], PerVE] = {
    # 3 processes (monitor, workload sh, ping or sleep); 1.01 MiB charged to cgroups, 1.2 MiB
    # of host memory at 1000 VEs (docs/benchmarks.md): 1.5 with a margin; 5 KiB of tmpfs idle.
    ("busybox", "workload"): PerVE(processes=3, memory=3 * MIB // 2, tmpfs=24 * KIB),
    # 2 idle (monitor, busybox init; the workload service exits when idle), 4 while pinging
    # (sh, ping); 0.57 MiB charged; 4 KiB of tmpfs.
    ("busybox", "system"): PerVE(processes=4, memory=MIB, tmpfs=24 * KIB),
    # 3 (monitor, workload sh, ping or sleep); 1.15 MiB charged; 5 KiB of tmpfs idle.
    ("debian", "workload"): PerVE(processes=3, memory=2 * MIB, tmpfs=24 * KIB),
    # 3 idle (monitor, systemd, journald), 5 while pinging; 12.9 MiB charged, 15.7 MiB of host
    # memory at 10 VEs: 16; 8.0 MiB of tmpfs per VE (systemd's journal and state): 8.5.
    ("debian", "system"): PerVE(processes=5, memory=16 * MIB, tmpfs=17 * MIB // 2),
}
# Measured: 0.83 MiB more per VE when each VE and its monitor get memory cgroups of their own
# (--ve-cgroups; a system init always does): the shrinker maps of docs/design.md.
MEMORY_CGROUPS_PER_VE = 1024 * 1024
# Per ping, its log line on the tmpfs; the tmpfs also holds the base (the base's own size
# is added for a debian or path base by check_base; 8 MiB covers busybox's).
TMPFS_PER_PING = 64
TMPFS_BASE = 8 * 1024 * 1024
# Open files per running VE across its monitor and processes (generous).
FILES_PER_VE = 32
# What the host keeps for itself: processes beyond the ones running now, and memory a ramp
# never hands to VEs (the host must stay usable while the ramp finds its limit).
PROCESS_RESERVE = 1000
MEMORY_RESERVE = 1024 * MIB
PIDS_BUDGET = "processes (--ve-pids-max)"


def per_ve(config: ExperimentConfig) -> PerVE:
    """The table's figures for the config's base and init; a base of the user's own counts
    as debian (the larger) under a system init and as busybox under the workload init."""
    base = config.base if config.base in ("busybox", "debian") else ("debian" if config.init == "system" else "busybox")
    return PER_VE[(base, config.init)]


class PreflightError(RuntimeError):
    """The host cannot run the experiment as asked; the message says what is short."""


@dataclass(frozen=True)
class Requirement:
    """One host limit the experiment needs, what it needs, and what the host has.

    need = fixed + per_ve x VEs: `allows` is the most VEs the limit leaves room for.
    """

    what: str  # "memory ..." and "tmpfs ..." are sizes in bytes, shown in MiB
    need: int
    have: int
    sysctl: str | None = None  # a /proc/sys path that --ve-tune-host may raise
    fix: str = ""
    hard: bool = True  # False: the run can go on, but something may suffer (a warning)
    per_ve: int = 0
    fixed: int = 0

    @property
    def short(self) -> bool:
        return self.need > self.have

    @property
    def allows(self) -> int | None:
        """VEs this limit has room for, or None when it does not grow with the count."""
        if self.per_ve <= 0:
            return None
        return max(0, (self.have - self.fixed) // self.per_ve)

    @property
    def setting(self) -> str:
        return self.fix or (f"raise {self.what} (or use --ve-tune-host)" if self.sysctl else "")

    @property
    def in_bytes(self) -> bool:
        return self.what.startswith(("memory", "tmpfs"))

    def _shown(self, value: int) -> str:
        if not self.in_bytes:
            return str(value)
        return f"{value / MIB:.0f} MiB" if abs(value) >= MIB else f"{value / KIB:.0f} KiB"

    def line(self) -> str:
        short = self._shown(self.need - self.have)
        per = f"  ({self._shown(self.per_ve)} per VE)" if self.per_ve else ""
        return (
            f"{self.what:<34} need {self._shown(self.need):>12}  have {self._shown(self.have):>12}  "
            f"short by {short:>10}  {self.setting}{per}"
        )


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


def require_pids_budget(config: ExperimentConfig) -> None:
    """--ve-pids-max writes pids.max in the pids hierarchy: the host must have one."""
    if config.pids_max and "pids" not in cgroups.host_controllers():
        raise ConfigError("--ve-pids-max", "this host has no pids cgroup controller")


def require_filesystems() -> None:
    with open("/proc/filesystems") as handle:
        known = {line.split()[-1] for line in handle if line.strip()}
    missing = [fs for fs in ("tmpfs", "overlay") if fs not in known]
    if missing:
        raise PreflightError(f"the kernel lacks filesystems: {', '.join(missing)} (try: modprobe overlay)")


def _sysctl(name: str) -> tuple[str, int]:
    path = "/proc/sys/" + name.replace(".", "/")
    return path, read_int(path)


def _requirement(what: str, count: int, per: int, fixed: int, have: int, **kwargs: object) -> Requirement:
    return Requirement(what, fixed + count * per, have, per_ve=per, fixed=fixed, **kwargs)  # type: ignore[arg-type]


def processes_in_use() -> int:
    """Threads on the host now (each takes a PID): the 4th field of /proc/loadavg, 'running/total'."""
    with open("/proc/loadavg") as handle:
        return int(handle.read().split()[3].split("/")[1])


def memory_available() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemAvailable")


def requirements(config: ExperimentConfig) -> list[Requirement]:
    """What this host's VEs need from it, limit by limit, from the per-VE figures of the
    config's base and init (PER_VE)."""
    count = len(config.ves)
    figures = per_ve(config)
    processes = processes_in_use() + PROCESS_RESERVE
    found = []
    for name, per, fixed in (
        ("kernel.pid_max", figures.processes, processes),
        ("kernel.threads-max", figures.processes, processes),
        ("fs.file-max", FILES_PER_VE, read_int("/proc/sys/fs/file-nr")),
        # Each VE gets a session keyring of its own (lxc.keyring.session).
        ("kernel.keys.root_maxkeys", 1, 200),
    ):
        path, have = _sysctl(name)
        found.append(_requirement(name, count, per, fixed, have, sysctl=path))
    if config.network == "bridge":
        # A broadcast (ARP) is queued once per port in the per-CPU backlog: a shorter
        # backlog silently drops it for the VEs past the limit. The ARP table and its
        # gc_thresh limits are shared by every network namespace: host <-> every VE
        # takes two entries per VE (seen: 1030 VEs, 65 unreachable at gc_thresh3 1230,
        # none at 2300). Traffic across the bridge to every VE needs both; the default
        # workload (ping localhost) does not, so these only warn.
        for name, per, fixed in (
            ("net.core.netdev_max_backlog", 1, 100),
            ("net.ipv4.neigh.default.gc_thresh2", 2, 100),
            ("net.ipv4.neigh.default.gc_thresh3", 2, 200),
        ):
            path, have = _sysctl(name)
            found.append(_requirement(name, count, per, fixed, have, sysctl=path, hard=False))
    tmpfs_per_ve = figures.tmpfs + config.pings * TMPFS_PER_PING
    found.append(
        _requirement(
            "tmpfs size (--ve-tmpfs-size)",
            count,
            tmpfs_per_ve,
            TMPFS_BASE,
            config.tmpfs_size,
            fix="raise --ve-tmpfs-size",
        )
    )
    memory = figures.memory + (MEMORY_CGROUPS_PER_VE if cgroups.ves_get_memory_cgroups(config.ve_controllers) else 0)
    found.append(_requirement("memory available", count, memory, 0, memory_available(), fix="fewer VEs or more memory"))
    if config.pids_max:
        found.append(
            _requirement(PIDS_BUDGET, count, figures.processes - 1, 0, config.pids_max, fix="raise --ve-pids-max")
        )
    return found


def ramp_bound(config: ExperimentConfig) -> tuple[int, Requirement | None]:
    """The most VEs a ramp may start, and the limit that sets it (None: the subnet or the
    supported maximum, config.count). Sysctls --ve-tune-host raises do not bound it; memory
    keeps MEMORY_RESERVE for the host, and --ve-pids-max is left for the ramp to run into."""
    bound, limit = config.count, None
    for item in requirements(config):
        if not item.hard or (config.tune_host and item.sysctl) or item.what == PIDS_BUDGET:
            continue
        if item.what.startswith("memory"):
            item = Requirement(item.what, item.need, item.have - MEMORY_RESERVE, fix=item.fix, per_ve=item.per_ve)
        allows = item.allows
        if allows is not None and allows < bound:
            bound, limit = allows, item
    return max(bound, 1), limit


def shortfalls(config: ExperimentConfig) -> list[Requirement]:
    return [item for item in requirements(config) if item.short]


def preflight(config: ExperimentConfig) -> list[str]:
    """Everything checked before anything is created; raises with the full list of what is short.

    Returns warnings: limits that are short but do not stop the default workload.
    """
    require_root()
    require_lxc()
    require_controllers(config)
    require_pids_budget(config)
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
    if config.ramp:
        # A ramp's count is its bound, which the limits set; the budget is what it runs into.
        short = [item for item in short if item.what != PIDS_BUDGET]
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
