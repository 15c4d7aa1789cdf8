"""Preflight: can this host run the requested experiment? Reads only; changes nothing."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .config import ConfigError, ExperimentConfig

# Processes per running VE: its monitor, its init (the workload shell) and ping or sleep.
PROCESSES_PER_VE = 3


class PreflightError(RuntimeError):
    """The host cannot run the experiment as asked; the message says what is short."""


@dataclass(frozen=True)
class Shortfall:
    what: str
    need: int
    have: int

    def line(self) -> str:
        return f"{self.what:<28} need {self.need:>8}  have {self.have:>8}  short by {self.need - self.have}"


def read_int(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().split()[0])


def require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError("lxcexp must run as root: it mounts a tmpfs, creates bridges and starts containers")


def require_lxc() -> None:
    try:
        import lxc  # noqa: F401
    except ImportError:
        raise PreflightError(
            "python3-lxc is not importable: apt-get install python3-lxc, and use a venv made "
            "with --system-site-packages from /usr/bin/python3"
        ) from None


def require_filesystems() -> None:
    with open("/proc/filesystems") as handle:
        known = {line.split()[-1] for line in handle if line.strip()}
    missing = [fs for fs in ("tmpfs", "overlay") if fs not in known]
    if missing:
        raise PreflightError(f"the kernel lacks filesystems: {', '.join(missing)} (try: modprobe overlay)")


def shortfalls(config: ExperimentConfig) -> list[Shortfall]:
    found = []
    pid_max = read_int("/proc/sys/kernel/pid_max")
    running = sum(1 for name in os.listdir("/proc") if name.isdigit())
    need = config.count * PROCESSES_PER_VE + running
    if need > pid_max:
        found.append(Shortfall("kernel.pid_max", need, pid_max))
    threads_max = read_int("/proc/sys/kernel/threads-max")
    if need > threads_max:
        found.append(Shortfall("kernel.threads-max", need, threads_max))
    return found


def preflight(config: ExperimentConfig) -> None:
    """Everything checked before anything is created; raises with the full list of what is short."""
    require_root()
    require_lxc()
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
    if short:
        table = "\n".join(item.line() for item in short)
        raise PreflightError(f"this host cannot hold {config.count} VEs:\n{table}")
