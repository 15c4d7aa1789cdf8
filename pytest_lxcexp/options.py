"""The experiment's options, in one table that the pytest plugin and the `lxcexp` CLI both
read: names, defaults and help are written once. Values stay strings here; engine.config
parses and validates them (so both skins give the same errors)."""

from __future__ import annotations

from collections.abc import Callable

# (option, ini name, default, help); all strings are parsed by engine.config.
OPTIONS: list[tuple[str, str, str, str]] = [
    (
        "--ve-count",
        "ve_count",
        "100",
        "number of VEs, ve1..veN (default 100), or max: a ramp, VEs started in growing steps until the host "
        "or a latency objective stops it",
    ),
    ("--ve-ramp-step", "ve_ramp_step", "50", "ramp (count max): VEs in its first step (default 50)"),
    (
        "--ve-ramp-growth",
        "ve_ramp_growth",
        "1.5",
        "ramp (count max): each step this many times the one before (default 1.5; 1: steps of one size)",
    ),
    (
        "--ve-slo",
        "ve_slo",
        "",
        "ramp (count max): start-latency objectives a step must meet, e.g. start_p99:500ms (start_p50, start_p90, "
        "start_p99, start_max; comma-separated)",
    ),
    (
        "--ve-pids-max",
        "ve_pids_max",
        "",
        "processes a VE may have: N or max (no limit) for each VE's own pids.max (default 1024), "
        "total:N for all VEs together (the experiment's cgroup subtree; default none); e.g. 512,total:20000",
    ),
    (
        "--ve-memory-max",
        "ve_memory_max",
        "total:auto",
        "memory VEs may use: SIZE or max for each VE's own limit (default none; needs memory cgroups per VE: "
        "memory in --ve-cgroups, or cgroup v2), total:SIZE, total:auto or total:max for all VEs together (the "
        "experiment's memory cgroup; default auto: the host's available memory at setup less 1 GiB kept for the "
        "host); e.g. 256M,total:8G. A VE past a limit meets the kernel's OOM killer, not the host",
    ),
    ("--ve-batch", "ve_batch", "100", "VEs per test range (default 100)"),
    (
        "--ve-repeat",
        "ve_repeat",
        "1",
        "rounds in one pytest session (default 1): each sets up, starts, completes and takes down all VEs; "
        "with several --ve-lxc builds the first build alternates (not with pytest-xdist, a ramp, --ve-keep "
        "or `lxcexp setup`, which sets up once)",
    ),
    ("--ve-root", "ve_root", "/exp", "experiment root; a tmpfs is mounted there (default /exp)"),
    ("--ve-tmpfs-size", "ve_tmpfs_size", "2G", "size of the tmpfs at the root (default 2G)"),
    (
        "--ve-base",
        "ve_base",
        "busybox",
        "base: busybox (default, offline), debian (debootstrap, cached), lxc:NAME[@LXCPATH] (an existing "
        "container's rootfs), or a path to a rootfs directory or tarball",
    ),
    (
        "--ve-busybox",
        "ve_busybox",
        "",
        "busybox base: the static busybox binary to build it from (default: the host's busybox-static)",
    ),
    ("--ve-base-release", "ve_base_release", "", "debian base: release codename (default: the host's)"),
    ("--ve-mirror", "ve_mirror", "", "debian base: mirror URL (default: the one the host's apt sources use)"),
    ("--ve-apt-proxy", "ve_apt_proxy", "", "apt proxy URL written into the base's apt configuration"),
    ("--ve-ssh-key", "ve_ssh_key", "", "public key file put into the base's /root/.ssh/authorized_keys"),
    (
        "--ve-init",
        "ve_init",
        "workload",
        "workload (the workload is the VE's init, default) or system (the base's own init runs it as a service)",
    ),
    (
        "--ve-workload",
        "ve_workload",
        "ping-localhost",
        "ping-localhost (default), ping-gateway, ping-neighbour, idle, or cmd:COMMAND (a shell command)",
    ),
    ("--ve-network", "ve_network", "bridge", "bridge (a veth per VE on --ve-bridge) or none (loopback only)"),
    ("--ve-bridge", "ve_bridge", "vebr", "bridge name, at most 15 characters, beginning with 've' (default vebr)"),
    ("--ve-subnet", "ve_subnet", "10.213.0.0/16", "IPv4 subnet: bridge takes the first address, veN the N+1st"),
    ("--ve-pings", "ve_pings", "180", "pings of 127.0.0.1 each VE's workload sends (default 180)"),
    ("--ve-ping-interval", "ve_ping_interval", "1", "seconds between pings (default 1)"),
    ("--ve-start-delay", "ve_start_delay", "0", "seconds to sleep between two starts (default 0)"),
    (
        "--ve-timeout",
        "ve_timeout",
        "auto",
        "seconds a range may take to complete (default: pings x interval + 60)",
    ),
    ("--ve-parallel", "ve_parallel", "auto", "starter processes for starts and stops (default: one per CPU)"),
    (
        "--ve-cgroups",
        "ve_cgroups",
        "auto",
        "controllers each VE gets cgroups of its own in: auto (cpu,pids; all with --ve-init=system), all, "
        "or a list such as cpu,pids,memory (a cgroup v2 host takes auto or all only)",
    ),
    (
        "--ve-apparmor",
        "ve_apparmor",
        "auto",
        "AppArmor profile VEs start under: auto (lxc-container-default-cgns where AppArmor is on), "
        "a loaded profile's name, unconfined, or generated (LXC's per-VE profile, compiled at every start)",
    ),
]
# Repeatable options (ini: one value a line).
LISTS: list[tuple[str, str, str]] = [
    (
        "--ve-lxc",
        "ve_lxc",
        "[NAME=]PREFIX[+preload:LIB]: an LXC build that starts VEs (repeatable; system = the distribution's); "
        "with several, VEs are assigned to them interleaved",
    ),
]
FLAGS: list[tuple[str, str, str]] = [
    ("--ve-base-refresh", "ve_base_refresh", "rebuild the cached base image"),
    ("--ve-poweroff", "ve_poweroff", "power each VE off when its workload ends (its exit status is logged first)"),
    ("--ve-keep", "ve_keep", "leave the experiment up after the session (take it down with `lxcexp takedown`)"),
    ("--ve-nice", "ve_nice", "run VEs with a low CPU weight so the host stays responsive"),
    ("--ve-tune-host", "ve_tune_host", "raise host limits that are short for the run; restored at takedown"),
    (
        "--ve-unprivileged",
        "ve_unprivileged",
        "run VEs unprivileged, in user namespaces mapped to root's range in /etc/subuid and /etc/subgid",
    ),
]


def build_config_values(value: Callable[[str], str | bool | list[str] | None]) -> dict[str, str | bool | list[str]]:
    """Every option's value, by build_config's keyword: the option's name without "ve_"
    (a unit test holds that every keyword has its option). `value(name)` reads one option."""
    values: dict[str, str | bool | list[str]] = {}
    for _, name, default, _ in OPTIONS:
        given = value(name)
        values[name.removeprefix("ve_")] = default if given is None else given
    for _, name, _ in FLAGS:
        values[name.removeprefix("ve_")] = bool(value(name))
    for _, name, _ in LISTS:
        given = value(name)
        values[name.removeprefix("ve_")] = list(given) if isinstance(given, list) else []
    return values
