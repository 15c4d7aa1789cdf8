"""What each VE's own pids limit (the default --ve-pids-max) costs per start, side by side.

    .venv/bin/python benchmarks/ve_pids_cost.py --count 200 --rounds 3

In each round one experiment of COUNT busybox VEs is set up with the default config; then
every other VE's config loses its `pids.max` line, so VEs with and without the limit are
started interleaved (ve1, ve2, ... in one start call), at the same moments, on the same
host load: a shared host's drift hits both alike. Which parity keeps the limit alternates
by round. Each VE's cgroup is read after its start (`pids.max` 1024 or `max`) to prove the
split. Per round: the median start latency (the starter's `lxc-start -d`, as the report's
start latency) of each half and their ratio; at the end the median ratio over the rounds,
its range, and a Mann-Whitney U test over every start (scipy) for a difference at all.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scipy.stats import mannwhitneyu  # noqa: E402

from pytest_lxcexp.engine import cgroups  # noqa: E402
from pytest_lxcexp.engine.config import DEFAULT_VE_PIDS_MAX, build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402


def drop_limit(path: str) -> None:
    """This VE's config without its pids.max line: it starts with no limit of its own."""
    with open(path) as handle:
        lines = [line for line in handle if ".pids.max = " not in line]
    with open(path, "w") as handle:
        handle.writelines(lines)


def one_round(number: int, where: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Start latencies (s) of the VEs with the limit and of those without, from one experiment."""
    config = build_config(
        count=where.count,
        root=where.root,
        bridge=where.bridge,
        subnet=where.subnet,
        workload="idle",
        tmpfs_size="1G",
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        limited = {index for index in config.ves if index % 2 == number % 2}
        for index in set(config.ves) - limited:
            drop_limit(experiment.layout.ve_config(index))
        results = experiment.start(1, config.count)
        assert all(result.ok for result in results), [result.error for result in results if not result.ok]
        for index in config.ves:
            path = cgroups.ve_pids_cgroup(config.tag, f"ve{index}")
            with open(os.path.join(str(path), "pids.max")) as handle:
                seen = handle.read().strip()
            expected = str(DEFAULT_VE_PIDS_MAX) if index in limited else "max"
            assert seen == expected, f"ve{index}: pids.max {seen}, not {expected}"
        with_limit = [result.latency for result in results if result.index in limited]
        without = [result.latency for result in results if result.index not in limited]
        return with_limit, without
    finally:
        experiment.takedown()
        experiment.unlock()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default="/tmp/lxcexp-bench-pids")
    parser.add_argument("--bridge", default="vebenchpids")
    parser.add_argument("--subnet", default="10.242.0.0/22")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/ve_pids_cost.py must run as root", file=sys.stderr)
        return 2
    print(
        f"host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; {args.count} busybox VEs "
        f"per round, half with pids.max {DEFAULT_VE_PIDS_MAX}, half without, interleaved; {args.rounds} rounds",
        flush=True,
    )
    every_with: list[float] = []
    every_without: list[float] = []
    ratios = []
    for number in range(1, args.rounds + 1):
        with_limit, without = one_round(number, args)
        every_with += with_limit
        every_without += without
        ratio = statistics.median(with_limit) / statistics.median(without)
        ratios.append(ratio)
        print(
            f"  round {number}: with {statistics.median(with_limit) * 1000:7.1f} ms (n={len(with_limit)})  "
            f"without {statistics.median(without) * 1000:7.1f} ms (n={len(without)})  ratio {ratio:5.3f}  "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
    test = mannwhitneyu(every_with, every_without, alternative="two-sided")
    print()
    print(f"{'':<16} {'p50 ms':>8} {'p90 ms':>8} {'starts':>7}")
    for name, values in (("with pids.max", every_with), ("without", every_without)):
        ordered = sorted(values)
        p90 = ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]
        print(f"{name:<16} {statistics.median(values) * 1000:>8.1f} {p90 * 1000:>8.1f} {len(values):>7}")
    print(
        f"ratio with/without of the round medians: {statistics.median(ratios):.3f} "
        f"[{min(ratios):.3f}-{max(ratios):.3f}] over {len(ratios)} rounds; "
        f"Mann-Whitney U over all starts: p = {test.pvalue:.3g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
