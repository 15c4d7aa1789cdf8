"""What each of a VE's protections costs, side by side in one run (issue 12).

    .venv/bin/python benchmarks/protections.py --count 300 --rounds 3
    .venv/bin/python benchmarks/protections.py --count 1000 --rounds 3 --variants protected unprivileged

Variants, all the tool's engine on the same busybox base and workload (density.py's):

- baseline:     the VE config before issue 12 (a list of capabilities dropped; no seccomp,
                no device allow-list, no per-VE pids limit);
- caps:         baseline + every capability the workload does not need dropped (lxc.cap.keep);
- seccomp:      baseline + LXC's seccomp policy;
- devices:      baseline + a devices cgroup per VE with LXC's allow-list (--ve-cgroups=cpu,pids,devices);
- protected:    what a privileged VE gets by default now (protections.LAYERS, and its own
                pids.max of config.DEFAULT_VE_PIDS_MAX);
- no-pids-max:  protected without the per-VE pids.max (--ve-pids-max=max): what the default limit costs;
- unprivileged: protected, in a user namespace (--ve-unprivileged).

    .venv/bin/python benchmarks/protections.py --count 300 --rounds 4 --variants protected no-pids-max

Each round runs every variant once, in a new random order, so that drift of a shared,
noisy host hits them alike. Per run: "start" (first start until every VE's log has its
begin line), "p50" (the median of the VEs' own start latencies, one `lxc-start -d` each,
as the report's start latency), "host MiB/VE" (growth of MemTotal - MemAvailable over N: the whole host, so
other users' memory shows in it) and "cgroup MiB/VE" (growth of the experiment's own
memory cgroup, which every VE and LXC monitor is charged to: only ours). Ratios are per
round (variant / reference of the same round), then their median and range.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from density import INTERVAL, PINGS, wait_all_began  # noqa: E402

from pytest_lxcexp.engine import protections  # noqa: E402
from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402
from pytest_lxcexp.report.sampler import CgroupProbe, host_memory_used  # noqa: E402

# name: (build_config options, protection layers)
# Before issue 12 no VE had a pids limit of its own.
UNLIMITED = {"pids_max": "max"}
VARIANTS: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "baseline": (UNLIMITED, ()),
    "caps": (UNLIMITED, ("caps",)),
    "seccomp": (UNLIMITED, ("seccomp",)),
    "devices": ({**UNLIMITED, "cgroups": "cpu,pids,devices"}, ("devices",)),
    "protected": ({}, protections.LAYERS),
    "no-pids-max": (UNLIMITED, protections.LAYERS),
    "unprivileged": ({"unprivileged": True}, protections.LAYERS),
}
METRICS = ("start", "p50_ms", "host_mib", "cgroup_mib")


def settle(limit: float) -> None:
    """Wait (at most `limit` s each) for a low load and for host memory to stop moving: the
    kernel frees the last run's cgroups in the background. Shorter than density.py's: on a
    shared host neither ever gets quiet, and the cgroup figure does not depend on it."""
    deadline = time.monotonic() + limit
    while os.getloadavg()[0] > 3 and time.monotonic() < deadline:
        time.sleep(1)
    deadline, last = time.monotonic() + limit, host_memory_used()
    while time.monotonic() < deadline:
        time.sleep(2)
        now = host_memory_used()
        if abs(now - last) < 8 * 1024**2:
            return
        last = now


def run_variant(name: str, count: int, where: argparse.Namespace) -> dict[str, float]:
    options, layers = VARIANTS[name]
    protections.LAYERS = layers  # read by fleet.ve_config_text as the clones are written
    try:
        config = build_config(
            count=count,
            root=where.root,
            bridge=where.bridge,
            subnet=where.subnet,
            pings=PINGS,
            ping_interval=INTERVAL,
            tmpfs_size="4G",
            **options,
        )
        experiment = Experiment(config)
        experiment.check()
        experiment.lock()
        try:
            experiment.setup()
            probe = CgroupProbe(config.tag)
            host_before, cgroup_before = host_memory_used(), probe.memory() or 0
            started = time.monotonic()
            latencies = [result.latency for result in experiment.start(1, count) if result.ok]
            start = wait_all_began([experiment.layout.ve_workload_log(i) for i in range(1, count + 1)]) - started
            time.sleep(1)  # the workloads settle, as density.py measures
            host_mib = (host_memory_used() - host_before) / count / 1024**2
            cgroup_mib = ((probe.memory() or 0) - cgroup_before) / count / 1024**2
            experiment.takedown()
            p50 = 1000 * statistics.median(latencies) if latencies else 0.0
            return {"start": start, "p50_ms": p50, "host_mib": host_mib, "cgroup_mib": cgroup_mib}
        finally:
            experiment.unlock()
    finally:
        protections.LAYERS = VARIANTS["protected"][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--reference", default=None, help="variant the ratios are to (default: the first)")
    parser.add_argument("--root", default="/tmp/lxcexp-bench-protections")
    parser.add_argument("--bridge", default="vebenchprot")
    parser.add_argument("--subnet", default="10.241.0.0/16")
    parser.add_argument("--settle", type=float, default=30, help="seconds to wait at most for load, then memory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/protections.py must run as root", file=sys.stderr)
        return 2
    reference = args.reference or args.variants[0]
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; {args.count} VEs per run; "
        f"{args.rounds} rounds of {', '.join(args.variants)} (each round in a random order)",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.variants}
    for round_number in range(1, args.rounds + 1):
        order = random.sample(args.variants, len(args.variants))
        for name in order:
            settle(args.settle)
            measured = run_variant(name, args.count, args)
            runs[name].append(measured)
            print(
                f"  round {round_number} {name:<12} start {measured['start']:6.2f} s  "
                f"p50 {measured['p50_ms']:6.1f} ms  "
                f"host {measured['host_mib']:5.2f} MiB/VE  cgroup {measured['cgroup_mib']:5.2f} MiB/VE  "
                f"load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    print()
    header = (
        f"{'variant':<12} {'start s':>8} {'ms/VE':>6} {'p50 ms':>7} {'host MiB/VE':>11} {'cgroup MiB/VE':>13}   "
        f"per-round ratio to {reference}: start [min-max], p50 [min-max], cgroup memory [min-max]"
    )
    print(header)
    print("-" * len(header))
    for name in args.variants:
        med = {key: statistics.median(run[key] for run in runs[name]) for key in METRICS}
        ratios = {
            key: [mine[key] / ref[key] for mine, ref in zip(runs[name], runs[reference], strict=True) if ref[key] > 0]
            for key in ("start", "p50_ms", "cgroup_mib")
        }
        shown = "  ".join(
            f"{statistics.median(values):5.3f} [{min(values):5.3f}-{max(values):5.3f}]" if values else "-"
            for values in ratios.values()
        )
        print(
            f"{name:<12} {med['start']:>8.2f} {1000 * med['start'] / args.count:>6.1f} {med['p50_ms']:>7.1f} "
            f"{med['host_mib']:>11.2f} "
            f"{med['cgroup_mib']:>13.2f}   {shown}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
