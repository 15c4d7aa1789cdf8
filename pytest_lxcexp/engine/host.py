"""Preflight: can this host run the requested experiment? Reads only; changes nothing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from dataclasses import dataclass

from . import apparmor, cgroups, protections
from .config import MEMORY_MAX_AUTO, ConfigError, ExperimentConfig

MiB = 1024 * 1024
KiB = 1024


@dataclass(frozen=True)
class VEBudget:
    """What one running VE costs the host: processes (its own and its LXC monitor), memory,
    and room on the experiment's tmpfs (overlay upper and logs, before the pings' lines)."""

    processes: int
    memory: int
    tmpfs: int


# One table for the preflight (issue 12's budget) and a ramp's bound (issue 14), per base and
# init. Processes and memory measured by benchmarks/per_ve_budget.py (20 VEs whose workload
# keeps a process running, as ping does; docs/benchmarks.md): processes in the experiment's
# cgroups per VE, and memory charged to them per VE (1.00 / 0.83 / 1.34 / 13.51 MiB) plus a
# margin for the kernel objects charged elsewhere (busybox/workload: 1.17 MiB of host memory
# at 1000 VEs against 1.00 charged). Tmpfs: its growth per VE from the first start, measured
# by the same script (4-5 KiB for busybox and a debian workload init, 8.0 MiB for a debian VE
# booting systemd: its journal), taken as 24 KiB and 8.5 MiB.
PER_VE_BUDGET = {
    ("busybox", "workload"): VEBudget(processes=3, memory=3 * MiB // 2, tmpfs=24 * KiB),
    ("busybox", "system"): VEBudget(processes=4, memory=3 * MiB // 2, tmpfs=24 * KiB),
    ("debian", "workload"): VEBudget(processes=4, memory=2 * MiB, tmpfs=24 * KiB),
    ("debian", "system"): VEBudget(processes=6, memory=15 * MiB, tmpfs=17 * MiB // 2),
}
# 0.83 MiB more when each VE and its monitor get memory cgroups of their own (--ve-cgroups).
MEMORY_CGROUPS_PER_VE = 1 * MiB


def ve_budget(config: ExperimentConfig) -> VEBudget:
    """The budget of the run's base and init; another base (a rootfs, lxc:NAME) is taken for
    a full distribution, as debian."""
    base = config.base if config.base in ("busybox", "debian") else "debian"
    return PER_VE_BUDGET[(base, config.init)]


# Per ping, its log line on the tmpfs; the tmpfs also holds the base (8 MiB covers busybox's).
TMPFS_PER_PING = 64
TMPFS_BASE = 8 * 1024 * 1024
# Open files per running VE across its monitor and processes (generous).
FILES_PER_VE = 32
# What the host keeps for itself: processes beyond the ones running now, and memory a ramp
# never hands to VEs (the host must stay usable while the ramp finds its limit).
PROCESS_RESERVE = 1000
MEMORY_RESERVE = 1024 * MiB
PIDS_BUDGET = "processes (--ve-pids-max)"
MEMORY_AVAILABLE = "memory available"
MEMORY_BUDGET = "memory (--ve-memory-max)"
# Charged to the experiment's memory cgroup besides the VEs on cgroup v1, where the
# starters join it (each a Python interpreter and a fork server per build): generous.
MEMORY_PER_STARTER = 32 * MiB
# Limits a ramp meets step by step rather than being bounded by (ramp_bound).
RAMP_MEASURES = (PIDS_BUDGET, MEMORY_AVAILABLE, MEMORY_BUDGET)


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
        return f"{value / MiB:.0f} MiB" if abs(value) >= MiB else f"{value / KiB:.0f} KiB"

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
    """--ve-pids-max writes pids.max in the pids hierarchy (each VE's, by default): the host must have one."""
    if (config.pids_max or config.ve_pids_max) and "pids" not in cgroups.host_controllers():
        raise ConfigError(
            "--ve-pids-max", "this host has no pids cgroup controller to limit processes in (--ve-pids-max=max: none)"
        )
    # What one VE runs (its monitor is outside its cgroup): a lower limit could never work.
    runs = ve_budget(config).processes - 1
    if config.ve_pids_max and config.ve_pids_max < runs:
        raise ConfigError(
            "--ve-pids-max",
            f"{config.ve_pids_max} per VE is below the {runs} processes one {config.base}/{config.init} VE runs",
        )


def starters_memory(config: ExperimentConfig) -> int:
    """What the starters take of the experiment's memory limit: on cgroup v1 without memory
    cgroups per VE they join its cgroup (so that the VEs they start are in it)."""
    return 0 if cgroups.ves_get_memory_cgroups(config.ve_controllers) else config.parallel * MEMORY_PER_STARTER


def require_memory_budget(config: ExperimentConfig) -> None:
    """--ve-memory-max sizes are written in the memory hierarchy: the host must have one (the
    default, total:auto, does without: no limit where there is no controller), and a limit
    per VE needs each VE in a memory cgroup of its own, above what one VE uses."""
    if (config.memory_max > 0 or config.ve_memory_max) and "memory" not in cgroups.host_controllers():
        raise ConfigError(
            "--ve-memory-max", "this host has no memory cgroup controller to limit VEs in (max,total:max: none)"
        )
    if config.memory_max > 0 and not cgroups.memory_limit_possible():
        raise ConfigError(
            "--ve-memory-max",
            "the root of this host's cgroup v2 tree does not hand the memory controller down "
            "(cgroup.subtree_control): no total can be set (total:max: none)",
        )
    one_ve = starters_memory(config) + ve_budget(config).memory
    if config.ramp and 0 < config.memory_max < one_ve:
        # A ramp is held to no count by the preflight (it measures its way to the limit), but it
        # would set everything up and then stop before its first VE.
        raise ConfigError(
            "--ve-memory-max",
            f"total:{config.memory_max / MiB:g}M holds not one VE beside the {config.parallel} starters' "
            f"{starters_memory(config) // MiB} MiB (a ramp needs at least {one_ve / MiB:g} MiB)",
        )
    if not config.ve_memory_max:
        return
    if not cgroups.ves_get_memory_cgroups(config.ve_controllers):
        raise ConfigError(
            "--ve-memory-max",
            "a limit per VE needs a memory cgroup per VE: add memory to --ve-cgroups (about 0.8 MiB more "
            "host memory per VE), or give total:SIZE, one limit for all VEs",
        )
    uses = ve_budget(config).memory
    if config.ve_memory_max < uses:
        raise ConfigError(
            "--ve-memory-max",
            f"{config.ve_memory_max / MiB:g} MiB per VE is below the {uses / MiB:g} MiB "
            f"one {config.base}/{config.init} VE may use",
        )


def require_unified_choice(config: ExperimentConfig) -> None:
    """A list of controllers cannot be kept on a cgroup v2-only host: liblxc enables every
    controller the unified tree offers in each VE's cgroup (it writes them all into the
    experiment's cgroup.subtree_control; lxc.cgroup.use applies to v1 hierarchies only)."""
    if config.cgroups in ("auto", "all") or not cgroups.unified_only():
        return
    raise ConfigError(
        "--ve-cgroups",
        "this host has cgroup v2 only, where liblxc gives each VE's cgroup every controller of the "
        f"unified tree ({' '.join(cgroups.unified_controllers()) or 'none'}): use auto or all",
    )


def _loadable_module(name: str) -> bool:
    """Whether the kernel can load module `name` on demand (a first mount of a filesystem
    type loads its module, fs-<type>): a stock Debian kernel has overlay as a module,
    unloaded until something mounts one."""
    if shutil.which("modprobe") is None:
        return False
    return subprocess.run(["modprobe", "--dry-run", "--quiet", name], capture_output=True).returncode == 0


def require_filesystems() -> None:
    with open("/proc/filesystems") as handle:
        known = {line.split()[-1] for line in handle if line.strip()}
    missing = [fs for fs in ("tmpfs", "overlay") if fs not in known and not _loadable_module(f"fs-{fs}")]
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


def memory_budget(config: ExperimentConfig) -> int | None:
    """The limit --ve-memory-max will set (engine/experiment.py), or None for none. auto's is
    what the host has less its reserve, read now: a count past it passes the memory requirement
    (what is available) and would meet the experiment's own OOM killer mid-run. Not positive:
    the host has less than its reserve (the preflight refuses that too)."""
    if config.memory_max == MEMORY_MAX_AUTO:
        if not cgroups.memory_limit_possible():
            return None  # auto sets nothing where no memory limit can be set
        return memory_available() - MEMORY_RESERVE
    return config.memory_max or None


def requirements(config: ExperimentConfig) -> list[Requirement]:
    """What this host's VEs need from it, limit by limit, from the per-VE figures of the
    config's base and init (PER_VE_BUDGET)."""
    count = len(config.ves)
    figures = ve_budget(config)
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
    found.append(_requirement(MEMORY_AVAILABLE, count, memory, 0, memory_available(), fix="fewer VEs or more memory"))
    if config.pids_max:
        found.append(
            _requirement(PIDS_BUDGET, count, figures.processes - 1, 0, config.pids_max, fix="raise --ve-pids-max")
        )
    budget = memory_budget(config)
    if budget is not None:
        fix = "raise --ve-memory-max" if config.memory_max > 0 else "fewer VEs, more memory, or --ve-memory-max=max"
        found.append(_requirement(MEMORY_BUDGET, count, memory, starters_memory(config), budget, fix=fix))

    return found


def ramp_bound(config: ExperimentConfig) -> tuple[int, Requirement | None]:
    """The most VEs a ramp may start, and the limit that sets it (None: the subnet or the
    supported maximum, config.count). Sysctls --ve-tune-host raises do not bound it;
    --ve-pids-max is left for the ramp to run into; memory is not a bound but measured step
    by step, each step cut to what leaves MEMORY_RESERVE (engine/ramp.py): the budget per VE
    is an estimate with a margin, and the ramp is there to find the host's real figure."""
    bound, limit = config.count, None
    for item in requirements(config):
        if not item.hard or (config.tune_host and item.sysctl) or item.what in RAMP_MEASURES:
            continue
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
    require_memory_budget(config)
    require_unified_choice(config)
    apparmor.check(config.apparmor)
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
        # A ramp's count is its bound, which the limits set; the pids budget is what it runs
        # into, and memory what it measures as it goes.
        short = [item for item in short if item.what not in RAMP_MEASURES]
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
    weaker = protections.weaker_protection_warning(config)
    return [*warnings, weaker] if weaker else warnings
