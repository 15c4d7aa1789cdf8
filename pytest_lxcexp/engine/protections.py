"""What a VE may do to the host: the LXC config lines that confine it (issue 12).

Layers, as LXC's own common.conf gives privileged containers, measured in
docs/benchmarks.md:

- caps:    every capability the workload does not need is dropped. With the workload as
           PID 1 (--ve-init=workload) the VE keeps no CAP_SYS_ADMIN, so it cannot remount
           /proc/sys or /sys read-write, mount a fresh proc or devtmpfs, and no CAP_MKNOD
           unless a device allow-list guards it. A system init (systemd) mounts its own
           file systems and keeps CAP_SYS_ADMIN; it loses only LXC's list and more.
- seccomp: LXC's own default policy (kexec_load, open_by_handle_at, init_module,
           finit_module, delete_module refused; umount -f refused), and the kernel
           keyring calls: keyrings are per user namespace, so a privileged VE's root
           would share host root's.
- devices: LXC's device allow-list (the null/zero/full/tty/random/pts nodes; mknod of
           anything, reading or writing nothing else), wherever the VE has a devices
           cgroup of its own: always with a system init, or when --ve-cgroups lists devices.
- mounts:  /proc/sys and /sys read-only (lxc.mount.auto proc:mixed sys:ro; see workload.py),
           and /proc/irq (PROC_MOUNT_LINES): proc:mixed leaves it writable, and a privileged
           VE's root (uid 0 with dac_override) could set the host's IRQ affinities.
"""

from __future__ import annotations

import contextlib
import functools
import os

from . import cgroups
from .config import ExperimentConfig
from .storage import Layout, write_new
from .workload_kinds import PING_WORKLOADS, workload_kind

# LXC 5.0's /usr/share/lxc/config/common.seccomp, then what it leaves open to a VE whose
# root is the host's root. errno 1: EPERM, as LXC's.
SECCOMP_POLICY = """2
denylist
reject_force_umount
[all]
kexec_load errno 1
open_by_handle_at errno 1
init_module errno 1
finit_module errno 1
delete_module errno 1
keyctl errno 1
add_key errno 1
request_key errno 1
"""

# Host-wide knobs in the VE's /proc that proc:mixed leaves writable and no capability guards
# (only the file's mode, root's): bound read-only over themselves, after proc is mounted.
PROC_MOUNT_LINES = ["lxc.mount.entry = /proc/irq proc/irq none bind,ro,nosuid,nodev,noexec 0 0"]

# The layers a VE gets; benchmarks/density.py narrows this to measure each one's cost.
LAYERS = ("caps", "seccomp", "devices")

# A ping or idle workload as PID 1: `ip link set lo up` needs net_admin, ping a raw socket.
PING_CAPS = ("net_admin", "net_raw")
# A command or hook script as PID 1: root's everyday powers over its own files and
# processes (the set Docker's default keeps), not the host's.
COMMAND_CAPS = [
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "net_bind_service",
    "net_raw",
    "net_admin",
    "sys_chroot",
    "audit_write",
    "setfcap",
]
# A system init keeps the rest: systemd mounts, makes nodes, administers its own services.
SYSTEM_DROPPED_CAPS = [
    "mac_admin",
    "mac_override",
    "sys_module",
    "sys_rawio",
    "sys_time",
    "sys_boot",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_control",
    "sys_pacct",
    "lease",
    "linux_immutable",
]

# LXC's common.conf: create any node, read or write only these.
ALLOWED_DEVICES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 5:0 rwm",  # tty
    "c 5:1 rwm",  # console
    "c 5:2 rwm",  # ptmx
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 136:* rwm",  # pts
    "c 10:229 rwm",  # fuse
)


@functools.cache
def _ves_get_devices_cgroup(wanted: tuple[str, ...] | None) -> bool:
    return cgroups.ves_get_cgroup("devices", wanted)


@functools.cache
def _v1_devices_controller() -> bool:
    return any(os.path.basename(path) == "devices" for path in cgroups.hierarchies())


def kept_caps(config: ExperimentConfig, layers: tuple[str, ...]) -> list[str] | None:
    """The capabilities a VE keeps (lxc.cap.keep), or None when a system init keeps all
    but SYSTEM_DROPPED_CAPS."""
    if config.init == "system":
        return None
    pings_only = workload_kind(config.workload) in (*PING_WORKLOADS, "idle")
    kept = list(PING_CAPS if pings_only else COMMAND_CAPS)
    if config.poweroff:
        kept.append("sys_boot")  # `poweroff -f` as PID 1 goes through reboot(2)
    if not pings_only and "devices" in layers and _ves_get_devices_cgroup(config.ve_controllers):
        kept.append("mknod")  # safe only where the allow-list says which nodes may be opened
    return kept


def capability_lines(config: ExperimentConfig, layers: tuple[str, ...] = LAYERS) -> list[str]:
    if "caps" not in layers:
        # Only the list a VE had before issue 12 (the benchmark's baseline).
        return [f"lxc.cap.drop = {' '.join(_dropped_with_poweroff(config))}"]
    kept = kept_caps(config, layers)
    if kept is None:
        return [f"lxc.cap.drop = {' '.join(_dropped_with_poweroff(config))}"]
    return [f"lxc.cap.keep = {' '.join(kept)}"]


def _dropped_with_poweroff(config: ExperimentConfig) -> list[str]:
    # --ve-poweroff: `poweroff` ends a VE through reboot(2), which needs CAP_SYS_BOOT.
    return [cap for cap in SYSTEM_DROPPED_CAPS if not (config.poweroff and cap == "sys_boot")]


def device_lines(config: ExperimentConfig) -> list[str]:
    """LXC's device allow-list, where the VE has a devices cgroup to hold it (on a cgroup v2
    host liblxc enforces it with an eBPF device program instead)."""
    if not _ves_get_devices_cgroup(config.ve_controllers):
        return []
    key = "lxc.cgroup.devices" if _v1_devices_controller() else "lxc.cgroup2.devices"
    return [f"{key}.deny = a", *(f"{key}.allow = {rule}" for rule in ALLOWED_DEVICES)]


def write_seccomp_policy(layout: Layout) -> None:
    """The policy file the VEs' configs name, in the root's state directory (root's only).
    Written only when it differs: xdist workers and CLI calls write clones more than once."""
    with contextlib.suppress(OSError), open(layout.seccomp_policy) as handle:
        if handle.read() == SECCOMP_POLICY:
            return
    write_new(layout.seccomp_policy, SECCOMP_POLICY)


def lxc_lines(config: ExperimentConfig, layout: Layout, layers: tuple[str, ...] | None = None) -> list[str]:
    """Every confining line of a VE's LXC config (mounts aside: workload.mount_auto)."""
    layers = LAYERS if layers is None else layers
    lines = capability_lines(config, layers) + PROC_MOUNT_LINES
    if "seccomp" in layers:
        lines.append(f"lxc.seccomp.profile = {layout.seccomp_policy}")
    if "devices" in layers:
        lines += device_lines(config)
    return lines


def weaker_protection_warning(config: ExperimentConfig) -> str | None:
    """What a privileged VE with a system init can still do, said before the run."""
    if config.init != "system" or config.unprivileged:
        return None
    return (
        "privileged VEs with --ve-init=system keep CAP_SYS_ADMIN (their init mounts file systems): "
        "a VE can remount /proc/sys read-write or mount a fresh proc and change host sysctls; "
        "--ve-unprivileged prevents that"
    )
