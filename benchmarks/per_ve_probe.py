"""Processes and memory of one running VE of each base and init: the figures behind host.PER_VE.

    .venv/bin/python benchmarks/per_ve_probe.py [--count 10] [--kinds busybox/workload debian/system]

For each kind it sets up COUNT VEs (idle workload, so nothing ends), starts them, waits
until every one has logged its begin line (plus a settle time for a system init to finish
booting), then reads:

- processes per VE: pids.current of each VE's own pids cgroup (its payload) plus the
  experiment's monitor subtree, over COUNT (the monitor is one process per VE);
- memory per VE: what the experiment's memory cgroups were charged (payload and monitor
  subtrees), over COUNT, and the growth of host memory in use (MemTotal - MemAvailable)
  over COUNT (noisy on a shared host: both are printed);
- tmpfs per VE: the growth of the experiment's tmpfs from just before the first start.

Everything is taken down again. Runs as root on its own root, bridge and subnet.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine import cgroups, storage  # noqa: E402
from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402
from pytest_lxcexp.engine.workload import read_log  # noqa: E402
from pytest_lxcexp.report.sampler import host_memory_used  # noqa: E402

ROOT = "/tmp/lxcexp-probe"
BRIDGE = "veprobe"
SUBNET = "10.241.0.0/24"
SETTLE = {"workload": 2.0, "system": 20.0}


def _read_int(path: str) -> int:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def charged(tag: str, file: str, controller: str) -> int:
    """What the payload and monitor subtrees of one controller hold (hierarchical counters)."""
    top = os.path.join(cgroups.CGROUP_ROOT, controller)
    return sum(
        _read_int(os.path.join(top, name, file)) for name in (cgroups.container_dir(tag), cgroups.monitor_dir(tag))
    )


def probe(base: str, init: str, count: int) -> dict[str, float]:
    config = build_config(
        count=count,
        root=ROOT,
        bridge=BRIDGE,
        subnet=SUBNET,
        base=base,
        init=init,
        workload="idle",
        tmpfs_size="2G" if base == "debian" else "256M",
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        before = host_memory_used()
        disk_before = storage.tmpfs_used_bytes(ROOT)
        results = experiment.start(1, count)
        failed = [r for r in results if not r.ok]
        if failed:
            raise SystemExit(f"{base}/{init}: {len(failed)} VEs failed to start: {failed[0].error}")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(read_log(experiment.layout.ve_workload_log(i)).began is not None for i in range(1, count + 1)):
                break
            time.sleep(0.5)
        time.sleep(SETTLE[init])
        processes = charged(config.tag, "pids.current", "pids")
        memory = charged(config.tag, "memory.usage_in_bytes", "memory")
        host = host_memory_used() - before
        disk = storage.tmpfs_used_bytes(ROOT) - disk_before
        return {
            "processes_per_ve": processes / count,
            "cgroup_mib_per_ve": memory / count / 1024**2,
            "host_mib_per_ve": host / count / 1024**2,
            "tmpfs_kib_per_ve": disk / count / 1024,
        }
    finally:
        experiment.takedown()
        experiment.unlock()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--kinds", nargs="+", default=["busybox/workload", "busybox/system", "debian/system"])
    args = parser.parse_args()
    columns = f"{'processes/VE':>12} {'cgroup MiB/VE':>14} {'host MiB/VE':>12} {'tmpfs KiB/VE':>13}"
    print(f"{'base/init':<18} {columns}  ({args.count} VEs each)")
    for kind in args.kinds:
        base, init = kind.split("/")
        found = probe(base, init, args.count)
        print(
            f"{kind:<18} {found['processes_per_ve']:>12.1f} {found['cgroup_mib_per_ve']:>14.2f} "
            f"{found['host_mib_per_ve']:>12.2f} {found['tmpfs_kib_per_ve']:>13.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
