"""Side by side, in one run: this tool vs the original's shell loop vs a bare-namespace floor.

    .venv/bin/python benchmarks/density.py --counts 200 1000 --repeat 3

For each count and repetition, up to four ways to run N VEs of the same busybox base
and the same workload (the tool's init script, a few pings of localhost):

- tool:  the engine (tmpfs, overlay clones, bridge, liblxc starts from --parallel children,
         through the fork server, engine/forkstart.c);
- exec:  the same engine with an executed lxc-start per VE (LXCEXP_START_WITH=lxc-start);
- shell: the original's way, with the LXC command line: `lxc-copy -s -B overlay` per VE,
         then `lxc-start -d` per VE, in a shell loop;
- floor: no LXC at all: per VE `unshare` (mount, pid, uts, ipc, net namespaces) + an
         overlay mount + a tmpfs /dev with null + chroot into the same workload.

"start" is measured the same way for all three: from the first start until every VE's
log holds its `lxcexp-begin` line; "MiB/VE" is the growth of host memory in use
(MemTotal - MemAvailable) from just before the first start to a second after the last
VE began, over N. The table prints medians and ratios to the tool.
Everything runs as root on this host's own tmpfs and bridges, and is taken down by
name and recorded PID.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine import base, forkstart, storage  # noqa: E402
from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402
from pytest_lxcexp.engine.takedown import lxc_lock_dir, remove_lxc_locks  # noqa: E402
from pytest_lxcexp.report.sampler import host_memory_used  # noqa: E402

PINGS, INTERVAL = 5, 0.5
BENCH_ROOT = "/tmp/lxcexp-bench"
BRIDGE = "vebench"
SUBNET = "10.240.0.0/16"


def wait_all_began(logs: list[str], timeout: float = 180) -> float:
    """Block until every log has its begin line; returns when that happened (monotonic)."""
    deadline = time.monotonic() + timeout
    pending = list(logs)
    while pending and time.monotonic() < deadline:
        still = []
        for path in pending:
            try:
                with open(path) as handle:
                    if "lxcexp-begin" not in handle.read(256):
                        still.append(path)
            except FileNotFoundError:
                still.append(path)
        pending = still
        if pending:
            time.sleep(0.02)
    if pending:
        raise RuntimeError(f"{len(pending)} VEs never began, e.g. {pending[0]}")
    return time.monotonic()


def settle() -> None:
    """Let the kernel finish offlining and freeing the last run's cgroups before the next:
    memory it frees during a run would hide that run's own. Done when the load is low and
    memory in use has stopped moving (under 4 MiB in 3 s)."""
    for _ in range(60):
        if os.getloadavg()[0] < 2.5:
            break
        time.sleep(1)
    last = host_memory_used()
    for _ in range(40):
        time.sleep(3)
        now = host_memory_used()
        if abs(now - last) < 4 * 1024**2:
            return
        last = now


def running_memory(before: int, count: int) -> float:
    """MiB of host memory per VE, a second after all began (their workloads settled)."""
    time.sleep(1)
    return (host_memory_used() - before) / count / 1024**2


TUNE_HOST = False  # --tune-host: the tool raises the host limits 10,000 VEs need, and restores them


def run_tool(count: int) -> dict[str, float]:
    config = build_config(
        count=count,
        root=BENCH_ROOT,
        bridge=BRIDGE,
        subnet=SUBNET,
        pings=PINGS,
        ping_interval=INTERVAL,
        tmpfs_size=f"{max(4, count // 1500)}G",
        tune_host=TUNE_HOST,
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        began = time.monotonic()
        experiment.setup()
        setup = time.monotonic() - began
        before = host_memory_used()
        started = time.monotonic()
        experiment.start(1, count)
        running = wait_all_began([experiment.layout.ve_workload_log(i) for i in range(1, count + 1)]) - started
        memory = running_memory(before, count)
        down = time.monotonic()
        report = experiment.takedown()
        took = time.monotonic() - down
        # The takedown's own steps, printed per run: where a slow one went.
        print(
            f"    takedown: {report.steps_text()}; {len(report.links_deleted)} links deleted, "
            f"{report.killed} processes killed"
        )
        return {"setup": setup, "start": running, "takedown": took, "memory": memory}
    finally:
        experiment.unlock()


def _install_base(rootfs: str) -> None:
    """The tool's busybox base with the tool's workload (init script and its parameters)."""
    shutil.copytree(base.cached_busybox_base("/var/cache/lxcexp"), rootfs, symlinks=True)
    base.configure_base(rootfs, build_config(count=1, pings=PINGS, ping_interval=INTERVAL, root=BENCH_ROOT))


def _shell(script: str) -> None:
    subprocess.run(["bash", "-ec", script], check=True, stdout=subprocess.DEVNULL)


def _base_container(root: str) -> None:
    """A plain LXC container `vebase` (dir rootfs) with the tool's low-pty settings and a veth on the bridge."""
    rootfs = os.path.join(root, "vebase", "rootfs")
    _install_base(rootfs)
    with open(os.path.join(root, "vebase", "config"), "w") as handle:
        handle.write(
            f"lxc.rootfs.path = dir:{rootfs}\nlxc.uts.name = vebase\nlxc.init.cmd = /sbin/lxcexp-workload\n"
            "lxc.tty.max = 0\nlxc.pty.max = 1\nlxc.console.path = none\nlxc.autodev = 1\n"
            "lxc.mount.auto = proc:mixed sys:ro\n"
            "lxc.sysctl.net.ipv6.conf.all.disable_ipv6 = 1\n"
            f"lxc.net.0.type = veth\nlxc.net.0.link = {BRIDGE}\nlxc.net.0.flags = up\n"
            "lxc.cgroup.dir.container = lxcexp-bench/vebase\nlxc.cgroup.dir.monitor = lxcexp-bench.monitor/vebase\n"
        )


def run_shell(count: int) -> dict[str, float]:
    root = BENCH_ROOT
    os.makedirs(root, exist_ok=True)
    _shell(f"mount -t tmpfs -o size=4G lxcexp {root}")
    _shell(f"ip link add {BRIDGE} type bridge && ip link set {BRIDGE} up")
    try:
        _base_container(root)
        began = time.monotonic()
        # The original's clone step: one lxc-copy per VE (lxc-copy names cgroups after the config).
        _shell(
            f"for i in $(seq 1 {count}); do lxc-copy -P {root} -n vebase -N ve$i -s -B overlay; "
            f'sed -i "s#/vebase\\$#/ve$i#" {root}/ve$i/config; done'
        )
        setup = time.monotonic() - began
        before = host_memory_used()
        started = time.monotonic()
        _shell(f"for i in $(seq 1 {count}); do lxc-start -d -P {root} -n ve$i; done")
        logs = [
            os.path.join(root, f"ve{i}", "overlay", "delta", "var/log/lxcexp/workload.log") for i in range(1, count + 1)
        ]
        running = wait_all_began(logs) - started
        memory = running_memory(before, count)
        down = time.monotonic()
        _shell(f"for i in $(seq 1 {count}); do lxc-stop -k -P {root} -n ve$i; done")
        takedown = time.monotonic() - down
        return {"setup": setup, "start": running, "takedown": takedown, "memory": memory}
    finally:
        subprocess.run(
            f"for i in $(seq 1 {count}); do lxc-stop -k -P {root} -n ve$i 2>/dev/null; done", shell=True, check=False
        )
        storage.umount(root)
        # The LXC command line's lock files (/run/lxc/lock/<root>/.veN, .vebase): ours, by the root's name.
        shutil.rmtree(lxc_lock_dir(root), ignore_errors=True)
        remove_lxc_locks(root)
        subprocess.run(["ip", "link", "del", BRIDGE], check=False, stderr=subprocess.DEVNULL)
        with suppress(OSError):
            os.rmdir(root)
        for hierarchy in _cgroup_hierarchies():
            for top in ("lxcexp-bench", "lxcexp-bench.monitor"):
                for path, _, _ in sorted(os.walk(os.path.join(hierarchy, top), topdown=False)):
                    with suppress(OSError):
                        os.rmdir(path)


def _cgroup_hierarchies() -> list[str]:
    with open("/proc/self/mounts") as handle:
        return [line.split()[1] for line in handle if line.split()[2] in ("cgroup", "cgroup2")]


def run_floor(count: int) -> dict[str, float]:
    root = BENCH_ROOT
    os.makedirs(root, exist_ok=True)
    _shell(f"mount -t tmpfs -o size=4G lxcexp {root}")
    children: list[subprocess.Popen] = []
    try:
        lower = os.path.join(root, "base")
        _install_base(lower)
        began = time.monotonic()
        for i in range(1, count + 1):
            for part in ("upper", "work", "merged"):
                os.makedirs(os.path.join(root, f"ve{i}", part))
        setup = time.monotonic() - began
        before = host_memory_used()
        started = time.monotonic()
        for i in range(1, count + 1):
            ve = os.path.join(root, f"ve{i}")
            inner = (
                f"mount -t overlay overlay -o lowerdir={lower},upperdir={ve}/upper,workdir={ve}/work "
                f"{ve}/merged && mount -t tmpfs -o size=64k,mode=755 dev {ve}/merged/dev && "
                # A /dev with null, as LXC's autodev gives each VE (the init script needs it).
                f"mknod -m 666 {ve}/merged/dev/null c 1 3 && hostname ve{i} && "
                f"exec chroot {ve}/merged /sbin/lxcexp-workload"
            )
            children.append(
                subprocess.Popen(
                    [
                        "unshare",
                        "--mount",
                        "--pid",
                        "--uts",
                        "--ipc",
                        "--net",
                        "--fork",
                        "--kill-child",
                        "sh",
                        "-c",
                        inner,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        logs = [os.path.join(root, f"ve{i}", "upper", "var/log/lxcexp/workload.log") for i in range(1, count + 1)]
        running = wait_all_began(logs) - started
        memory = running_memory(before, count)
        down = time.monotonic()
        for child in children:  # our own unshare processes, by PID; --kill-child takes each namespace down
            child.send_signal(signal.SIGKILL)
        for child in children:
            child.wait()
        return {"setup": setup, "start": running, "takedown": time.monotonic() - down, "memory": memory}
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        storage.umount(root)
        with suppress(OSError):
            os.rmdir(root)


def run_tool_exec(count: int) -> dict[str, float]:
    """The tool as it was before the fork server: an executed lxc-start per VE."""
    os.environ[forkstart.CHOICE_VARIABLE] = forkstart.LXC_START
    try:
        return run_tool(count)
    finally:
        del os.environ[forkstart.CHOICE_VARIABLE]


WAYS: dict[str, Callable[[int], dict[str, float]]] = {
    "tool": run_tool,
    "exec": run_tool_exec,
    "shell": run_shell,
    "floor": run_floor,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ways", nargs="+", default=list(WAYS), choices=list(WAYS))
    parser.add_argument("--tune-host", action="store_true", help="the tool's --ve-tune-host (10,000 VEs need it)")
    args = parser.parse_args()
    global TUNE_HOST
    TUNE_HOST = args.tune_host
    if os.geteuid() != 0:
        print("benchmarks/density.py must run as root", file=sys.stderr)
        return 2
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"workload: {PINGS} pings every {INTERVAL} s; medians of {args.repeat} runs"
    )
    results: dict[tuple[int, str], list[dict[str, float]]] = {}
    for count in args.counts:
        for _ in range(args.repeat):
            for way in args.ways:  # interleaved, so slow drift of the host hits all three alike
                settle()
                measured = WAYS[way](count)
                results.setdefault((count, way), []).append(measured)
                print(
                    f"  {way:<5} n={count:<5} "
                    + "  ".join(f"{k} {v:7.2f} {'MiB/VE' if k == 'memory' else 's'}" for k, v in measured.items()),
                    flush=True,
                )
    print()
    header = (
        f"{'VEs':>5} {'way':<6} {'setup s':>8} {'start s':>8} {'ms/VE':>6} {'takedown s':>10} {'MiB/VE':>7}"
        "  start vs tool"
    )
    print(header)
    print("-" * len(header))
    for count in args.counts:
        medians = {
            way: {key: statistics.median(r[key] for r in results[(count, way)]) for key in results[(count, way)][0]}
            for way in args.ways
        }
        tool_start = medians["tool"]["start"] if "tool" in medians else None
        for way, med in medians.items():
            ratio = f"{med['start'] / tool_start:5.2f}x" if tool_start else "-"
            print(
                f"{count:>5} {way:<6} {med['setup']:>8.2f} {med['start']:>8.2f} {1000 * med['start'] / count:>6.1f} "
                f"{med['takedown']:>10.2f} {med['memory']:>7.2f}  {ratio}"
            )
        if tool_start and "floor" in medians:
            print(f"{'':>5} tool start / floor start: {tool_start / medians['floor']['start']:.2f}x")
        if tool_start and "exec" in medians:
            exec_start, tool_memory = medians["exec"]["start"], medians["tool"]["memory"]
            print(
                f"{'':>5} tool / exec (fork server / lxc-start per VE): start {tool_start / exec_start:.2f}x, "
                f"memory {tool_memory / medians['exec']['memory']:.2f}x"
            )
        if tool_start and "shell" in medians:
            print(f"{'':>5} shell start / tool start: {medians['shell']['start'] / tool_start:.2f}x")
    if "tool" in args.ways and len(args.counts) > 1:
        # Near-linear starts: the ms per VE at each count against the smallest count's.
        def per_ve(count: int) -> float:
            return statistics.median(r["start"] for r in results[(count, "tool")]) / count

        smallest = min(args.counts)
        for count in sorted(args.counts):
            if count != smallest:
                print(f"tool ms/VE at {count} / at {smallest}: {per_ve(count) / per_ve(smallest):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
