"""What one running VE costs the host, per base and init: the preflight's per-VE budget.

    .venv/bin/python benchmarks/per_ve_budget.py --count 20 --repeat 2

For each (base, init) it sets up COUNT VEs on a bridge (the tool's own engine) whose
workload keeps one process running (as ping does), starts them, waits until every VE's
workload has begun (with --ve-init=system: after the distribution's init booted and
started it as a service) and a few seconds more, then
counts the processes in the experiment's cgroups (VEs and their LXC monitors) and the
memory charged to the experiment's memory cgroups (VEs and monitors; unaffected by other
work on the host, but blind to kernel objects charged elsewhere),
the growth of host memory in use, and the growth of the experiment's tmpfs from just before
the first start, each over COUNT. Medians over the repeats; the table is what
pytest_lxcexp/engine/host.py's PER_VE_BUDGET holds.

    .venv/bin/python benchmarks/per_ve_budget.py --combos busybox/workload --count 300 \
        --repeat 3 --workloads idle cmd:true

compares what a VE's init costs after the tool's own workload (it sleeps in the shell's
place) with after a user's command (the shell stays, to reap what the command left).
Workloads are interleaved within each repeat, so the host's drift hits them alike.

"peak/VE" is the most processes any one VE had at once from its start until the end of the
settle time (each VE's own pids.current, read every 10 ms, so a shorter-lived burst can be
missed: a lower bound), the maximum over the repeats; the default per-VE pids.max
(config.DEFAULT_VE_PIDS_MAX, --ve-pids-max) must stay far above it. The runs set no per-VE
limit of their own.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine import cgroups, storage  # noqa: E402
from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402
from pytest_lxcexp.report.sampler import host_memory_used  # noqa: E402

ROOT = "/tmp/lxcexp-budget"
BRIDGE = "vebudget"
SUBNET = "10.103.192.0/20"
COMBOS = [("busybox", "workload"), ("busybox", "system"), ("debian", "workload"), ("debian", "system")]
SETTLE_S = 5.0
MEMORY_HIERARCHY = "/sys/fs/cgroup/memory"  # cgroup v1 (this host); hierarchical accounting


def charged_memory(tag: str) -> int:
    """Bytes charged to the experiment's memory cgroups: the VEs' tree and their monitors'
    (with every hierarchy, as --ve-init=system gets, the monitors sit in a tree of their own)."""
    total = 0
    for name in (cgroups.container_dir(tag), cgroups.monitor_dir(tag)):
        path = os.path.join(MEMORY_HIERARCHY, name, "memory.usage_in_bytes")
        with contextlib.suppress(FileNotFoundError), open(path) as handle:
            total += int(handle.read())
    return total


class PeakProcesses(threading.Thread):
    """The most processes each VE had at once, polled from its own pids.current until stopped."""

    def __init__(self, tag: str, count: int) -> None:
        super().__init__(daemon=True)
        self.paths = [cgroups.ve_pids_cgroup(tag, f"ve{index}") for index in range(1, count + 1)]
        self.peak = [0] * count
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            for number, path in enumerate(self.paths):
                with contextlib.suppress(OSError, ValueError, TypeError), open(f"{path}/pids.current") as handle:
                    self.peak[number] = max(self.peak[number], int(handle.read()))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return max(self.peak)


def measure(
    base: str, init: str, count: int, workload: str, where: argparse.Namespace
) -> tuple[float, float, float, float, int]:
    config = build_config(
        root=where.root,
        bridge=where.bridge,
        subnet=where.subnet,
        count=count,
        base=base,
        init=init,
        workload=workload,
        tmpfs_size="2G",
        timeout=300,
        pids_max="max",  # no per-VE limit: measure what a VE takes, not what it is allowed
    )
    experiment = Experiment(config)
    stale = experiment.check()
    experiment.lock()
    try:
        if stale:
            experiment.clean_stale(stale)
        experiment.setup()
        host_before = host_memory_used()
        tmpfs_before = storage.tmpfs_used_bytes(where.root)
        peak = PeakProcesses(config.tag, count)
        peak.start()
        results = experiment.start(1, count)
        assert all(result.ok for result in results), [r.error for r in results if not r.ok]
        deadline = time.monotonic() + 300
        while not all(experiment.workload_log(index).began for index in range(1, count + 1)):
            assert time.monotonic() < deadline, "not every VE's workload began"
            time.sleep(0.5)
        time.sleep(SETTLE_S)
        most = peak.stop()
        pids = len(cgroups.experiment_pids(config.tag)) / count
        charged = charged_memory(config.tag) / count / 2**20
        host = (host_memory_used() - host_before) / count / 2**20
        tmpfs = (storage.tmpfs_used_bytes(where.root) - tmpfs_before) / count / 2**10
        return pids, charged, host, tmpfs, most
    finally:
        experiment.takedown()
        experiment.unlock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    # A workload process that stays while measured, as ping does for its pings.
    parser.add_argument("--workloads", nargs="+", default=["cmd:sleep 600"])
    parser.add_argument("--combos", nargs="+", default=[f"{b}/{i}" for b, i in COMBOS], metavar="BASE/INIT")
    parser.add_argument("--root", default=ROOT)
    parser.add_argument("--bridge", default=BRIDGE)
    parser.add_argument("--subnet", default=SUBNET)
    args = parser.parse_args()
    combos = [tuple(combo.split("/", 1)) for combo in args.combos]
    print(f"{args.count} VEs per run, {args.repeat} runs each, medians (peak/VE: the highest)")
    print(
        f"{'base/init':<18} {'workload':<14} {'processes/VE':>13} {'peak/VE':>8} {'cgroup KiB/VE':>14} "
        f"{'host MiB/VE':>12} {'tmpfs KiB/VE':>13}"
    )
    for base, init in combos:
        runs: dict[str, list] = {workload: [] for workload in args.workloads}
        for _ in range(args.repeat):
            for workload in args.workloads:
                runs[workload].append(measure(base, init, args.count, workload, args))
        for workload, measured in runs.items():
            pids, charged, host, tmpfs = (statistics.median(values) for values in list(zip(*measured, strict=True))[:4])
            most = max(run[4] for run in measured)
            print(
                f"{base + '/' + init:<18} {workload:<14} {pids:>13.2f} {most:>8} {charged * 1024:>14.0f} "
                f"{host:>12.2f} {tmpfs:>13.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
