"""Clones, start, state and stop of VE ranges: starts by lxc-start from starter processes
(starter.py), state and stop through python3-lxc in helper processes (lxcquery.py)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

from . import apparmor, cgroups, children, faults, protections, userns
from .addressing import AddressPlan, BridgeLayout
from .config import QUERY_DEADLINE, ExperimentConfig
from .network import host_has_ipv6, veth_name
from .safefs import UnsafeVEFile
from .storage import Layout
from .workload import VE_ENV_PATH, init_brings_up_network, init_command, mount_auto, ve_env


@dataclass(frozen=True)
class StartResult:
    index: int
    ok: bool
    latency: float
    started_at: float
    pid: int | None = None
    error: str | None = None
    build: str | None = None  # the --ve-lxc build that started it
    monitor: int | None = None  # its LXC monitor's PID
    running: float | None = None  # seconds from the request until its monitor announced RUNNING
    round: int = 0  # the round it was started in (--ve-repeat; 0-based)
    hung: bool = False  # its start had not returned by the start's deadline, and was ended


def ve_config_text(config: ExperimentConfig, layout: Layout, index: int) -> str:
    name = layout.ve_name(index)
    lines = [
        f"lxc.uts.name = {name}",
        f"lxc.rootfs.path = overlay:{layout.base_rootfs}:{layout.ve_upper(index)}",
        f"lxc.init.cmd = {init_command(config)}",
        # No spare ttys and no console: each would cost a host pty (kernel.pty.max).
        "lxc.tty.max = 0",
        "lxc.pty.max = 1",
        "lxc.console.path = none",
        "lxc.autodev = 1",
        f"lxc.mount.auto = {mount_auto(config)}",
        *protections.lxc_lines(config, layout),
        f"lxc.cgroup.dir.container = {cgroups.container_dir(config.tag)}/{name}",
        f"lxc.cgroup.dir.monitor = {cgroups.monitor_dir(config.tag)}/{name}",
        *([f"lxc.cgroup.dir.container.inner = {cgroups.SYSTEM_INIT_INNER}"] if config.init == "system" else []),
        f"lxc.log.file = {layout.ve_lxc_log(index)}",
        "lxc.log.level = WARN",
    ]
    lines += apparmor.config_lines(config.apparmor)
    if host_has_ipv6():
        # IPv4 only: IPv6 link-local chatter (DAD, router solicitations) from every VE is
        # flooded to every bridge port and slows each start as the bridge fills. Without
        # IPv6 on the host (ipv6.disable=1) the sysctls do not exist and liblxc would refuse the start.
        lines += ["lxc.sysctl.net.ipv6.conf.all.disable_ipv6 = 1", "lxc.sysctl.net.ipv6.conf.default.disable_ipv6 = 1"]
    if config.unprivileged:
        # Root inside, an unprivileged range outside (see userns.py).
        lines += userns.root_id_map().config_lines()
    if config.nice:
        lines.append(cgroups.low_cpu_priority_line())
    if config.ve_pids_max:
        # A fork bomb in this VE stops at its own pids.max, not at the host's pid_max.
        lines.append(cgroups.ve_pids_max_line(config.ve_pids_max))
    if config.ve_memory_max:
        # Past it the kernel reclaims, then OOM-kills in this VE alone: its neighbours keep theirs.
        lines.append(cgroups.ve_memory_max_line(config.ve_memory_max))
    if config.network == "bridge":
        plan = AddressPlan(config.subnet)
        bridge = BridgeLayout(config.bridge, config.tag, config.count).bridge_for(index)
        lines += [
            "lxc.net.0.type = veth",
            f"lxc.net.0.link = {bridge}",
            # Without an MTU liblxc inherits the bridge's by dumping every link on the host
            # (netdev_get_mtu), each veth's entry costing a walk of every network namespace:
            # at 6000 running VEs a sixth of the host's CPU, and growing with the square.
            f"lxc.net.0.mtu = {bridge_mtu(bridge)}",
            f"lxc.net.0.veth.pair = {veth_name(config.tag, index)}",
            "lxc.net.0.name = eth0",
            f"lxc.net.0.ipv4.address = {plan.ve_address(index)}/{plan.prefixlen}",
        ]
        if not init_brings_up_network(config):
            # liblxc adds a gateway only to an interface it brings up itself.
            lines += ["lxc.net.0.flags = up", f"lxc.net.0.ipv4.gateway = {plan.gateway}"]
    else:
        # A network namespace of its own with loopback only.
        lines.append("lxc.net.0.type = empty")
    return "\n".join(lines) + "\n"


DEFAULT_MTU = 1500


def bridge_mtu(bridge: str) -> int:
    """The bridge's MTU, which liblxc would give the VE's veth pair; Ethernet's before the bridge exists."""
    try:
        with open(f"/sys/class/net/{bridge}/mtu") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return DEFAULT_MTU


def create_clones(
    config: ExperimentConfig,
    layout: Layout,
    progress: Callable[[int], None] | None = None,
    indexes: Iterable[int] | None = None,
) -> None:
    """Write ve1..veN (or just `indexes`): an LXC config and an overlay upper directory each."""
    protections.write_seccomp_policy(layout)
    for index in config.ves if indexes is None else indexes:
        os.makedirs(layout.ve_upper(index), mode=0o755)
        if config.unprivileged:
            # The VE writes its log into its upper dir as its own root, a mapped uid on the host;
            # liblxc mounts the overlay inside the user namespace, where it cannot create the
            # overlay's work dir (ve<N>/work) in the root-owned ve<N>: made here, the VE's.
            idmap = userns.root_id_map()
            os.makedirs(os.path.join(layout.ve_dir(index), "work"), mode=0o755)
            for path in (layout.ve_upper(index), os.path.join(layout.ve_dir(index), "work")):
                userns.own_by_mapped_root(path, idmap)
        env = ve_env(config, index)
        if env is not None:
            # Per-VE parameters (a neighbour's address) sit in the upper dir, over the shared base.
            os.makedirs(os.path.join(layout.ve_upper(index), os.path.dirname(VE_ENV_PATH)), mode=0o755)
            with open(os.path.join(layout.ve_upper(index), VE_ENV_PATH), "w") as handle:
                handle.write(env)
        with open(layout.ve_config(index), "w") as handle:
            handle.write(ve_config_text(config, layout, index))
        if progress and index % 100 == 0:
            progress(index)


def destroy_clones(layout: Layout, indexes: Iterable[int]) -> None:
    """Remove stopped VEs' directories (config, overlay upper, logs): LXC's destroy, for our clones."""
    for index in indexes:
        directory = layout.ve_dir(index)
        # Only ve<N> directly inside the root, never through a symlink.
        if os.path.dirname(directory) != layout.root or os.path.islink(directory):
            raise ValueError(f"refusing to remove {directory}")
        if os.path.isdir(directory):
            shutil.rmtree(directory)


# liblxc names a running VE's command socket "@<lxcpath>/<name>/command" when that fits
# in a sockaddr_un (106 bytes), else by a hash of the path.
_SOCKET_NAME_MAX = 106


def live_ves(layout: Layout, indexes: Iterable[int]) -> list[int] | None:
    """The VEs whose LXC monitor still listens, from one read of /proc/net/unix, or None
    when a name is too long to tell (liblxc hashes it): then every VE must be asked."""
    wanted = {os.fsencode(f"@{layout.root}/{layout.ve_name(index)}/command"): index for index in indexes}
    if any(len(name) - 1 >= _SOCKET_NAME_MAX for name in wanted):
        return None
    # Bytes: any socket name on the host may be there. The path is the 8th field, and may hold spaces.
    with open("/proc/net/unix", "rb") as handle:
        next(handle, None)  # the header
        listening = {fields[7] for line in handle if len(fields := line.rstrip(b"\n").split(maxsplit=7)) == 8}
    return sorted(index for name, index in wanted.items() if name in listening)


def defined_ves(layout: Layout) -> list[int]:
    """Indexes of the VEs that exist under the root (a directory veN holding a config)."""
    found = []
    try:
        names = os.listdir(layout.root)
    except FileNotFoundError:
        return []
    for name in names:
        directory = os.path.join(layout.root, name)
        # A symlinked ve<N> (or config) would lead liblxc's stop to a container outside the root.
        if not (name.startswith("ve") and name[2:].isdigit()) or os.path.islink(directory):
            continue
        config = os.path.join(directory, "config")
        if os.path.isfile(config) and not os.path.islink(config):
            found.append(int(name[2:]))
    return sorted(found)


def _failure_reason(layout: Layout, index: int) -> str:
    try:
        errors = faults.lxc_errors(layout.ve_lxc_log(index))
    except UnsafeVEFile as refusal:
        return f"liblxc refused to start it; its lxc.log is {refusal.found}"
    if not errors:
        if faults.tmpfs_full(layout.root):
            # liblxc could not even write its log: say why rather than "no reason".
            return f"liblxc refused to start it and could not log why; {faults.tmpfs_full_words(layout.root)}"
        return "liblxc refused to start it (no reason logged)"
    # "lxc ve1 <time> ERROR overlay - <source:line> - <reason>": the first error is the cause,
    # the later ones are its consequences.
    parts = errors[0].split(" - ")
    reason = "liblxc: " + " - ".join(parts[2:] if len(parts) > 2 else parts[-1:])
    limit = faults.host_limit(errors[0], layout.root)
    return f"{reason}; {limit}" if limit else reason


def record_start(layout: Layout, result: StartResult) -> None:
    # State: root's only (0600), and never written through a symlink.
    fd = os.open(layout.starts_log, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "a") as handle:
        # A line left half written (a writer killed, or cut short by a full tmpfs) must not
        # swallow this one: start on a line of its own. Whole lines are single appends.
        size = os.fstat(fd).st_size
        lead = "\n" if size and os.pread(fd, 1, size - 1) != b"\n" else ""
        handle.write(lead + json.dumps(asdict(result)) + "\n")


def load_starts(layout: Layout) -> dict[int, StartResult]:
    """The latest start result of each VE, as recorded in the root (survives across CLI calls)."""
    results: dict[int, StartResult] = {}
    try:
        fd = os.open(layout.starts_log, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return results
    with os.fdopen(fd, errors="replace") as handle:
        for line in handle:
            if not line.endswith("\n"):
                break  # another process's record, half written: it is complete at the next read
            try:
                data = json.loads(line)
                results[data["index"]] = StartResult(**data)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash mid-write: that start is unknown, the rest still count
    return results


STARTER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "starter.py")


def start_range(
    layout: Layout,
    indexes: Iterable[int],
    delay: float = 0.0,
    on_started: Callable[[StartResult], None] | None = None,
    workers: int = 1,
    starter_args: Iterable[str] = (),
    build_names: Sequence[str] = (),
    build_of: Callable[[int], int] | None = None,
    veth_of: Callable[[int], str] | None = None,
) -> list[StartResult]:
    """Start VEs from `workers` starter processes (starter.py), `delay` seconds apart within each,
    in the order given; `starter_args` are its options (cgroups.starter_cgroup_args and the
    builds, builds.starter_build_args), `build_of(index)` the number of the build that starts
    veN, named by `build_names`; `veth_of(index)` its host-side veth (the starter turns its IPv6 off)."""
    wanted = list(indexes)
    results: list[StartResult] = []

    def number(index: int) -> int:
        return build_of(index) if build_of else 0

    def build_name(index: int, data: dict) -> str | None:
        numbered = data.get("build", number(index))
        return build_names[numbered] if numbered < len(build_names) else None

    def collect(data: dict) -> None:
        index = int(data["name"].removeprefix("ve"))
        if data.get("error"):
            error = data["error"]
        elif not data["ok"]:
            error = _failure_reason(layout, index)
        else:
            error = None
        started_at = data.get("started_at", time.time())
        result = StartResult(
            index,
            data["ok"],
            data.get("latency", 0.0),
            started_at,
            data.get("pid"),
            error,
            build=build_name(index, data),
            monitor=data.get("monitor"),
            hung=bool(data.get("hung")),
        )
        record_start(layout, result)
        results.append(result)
        if on_started:
            on_started(result)

    # -I: the starter imports only the standard library; nothing from the environment or cwd.
    argv = [sys.executable, "-I", STARTER, layout.root, str(delay), *starter_args]
    lines = [f"{layout.ve_name(index)}\t{number(index)}\t{veth_of(index) if veth_of else ''}" for index in wanted]
    children.map_in_processes(argv, lines, workers, on_result=collect)
    seen = {result.index for result in results}
    for index in wanted:
        if index not in seen:
            # A starter that died mid-start may have left its VE up: takedown finds it by cgroup.
            died = "the starter process died before reporting its start (the VE may be up)"
            collect({"name": layout.ve_name(index), "ok": False, "error": died})
    return sorted(results, key=lambda result: result.index)


@dataclass(frozen=True)
class VEState:
    state: str
    pid: int | None


LXCQUERY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lxcquery.py")


def _query(layout: Layout, mode: str, indexes: Iterable[int], workers: int) -> dict[int, dict]:
    """lxcquery.py's answer for each VE, by index, from `workers` processes of its own."""
    # -I: the helper imports only the standard library and python3-lxc.
    argv = [sys.executable, "-I", LXCQUERY, mode, layout.root]

    def stuck(name: str) -> dict:
        # Its helper was killed and the next VE goes on in a new one: one stuck monitor costs
        # one deadline, not the run.
        return {"name": name, "exception": f"its LXC monitor did not answer liblxc's {mode} in {QUERY_DEADLINE:g} s"}

    names = [layout.ve_name(index) for index in indexes]
    results = children.map_in_processes(argv, names, workers, silence=QUERY_DEADLINE, on_silent=stuck)
    return {int(data["name"].removeprefix("ve")): data for data in results}


def ve_states(layout: Layout, indexes: Iterable[int], workers: int = 1) -> dict[int, VEState]:
    """State and init PID of each VE, as liblxc reports them (VEs its helper never reported are left out)."""
    found: dict[int, VEState] = {}
    for index, data in _query(layout, "state", indexes, workers).items():
        if "exception" in data:
            found[index] = VEState(f"UNKNOWN ({data['exception']})", None)
        else:
            found[index] = VEState(data["state"], data["pid"])
    return found


def stop_all(layout: Layout, indexes: Iterable[int], workers: int = 1) -> set[str]:
    """Stop VEs; returns the names of those that were running. Leftover processes are takedown's job."""
    answers = _query(layout, "stop", indexes, workers)
    return {layout.ve_name(index) for index, data in answers.items() if data.get("was_running")}
