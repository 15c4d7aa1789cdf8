"""LXC builds side by side in one run: what each build is, its proof, and per-phase medians.

    .venv/bin/python benchmarks/builds_side_by_side.py --count 200 \\
        --lxc system --lxc v6=/var/cache/lxcexp/lxc-builds/<commit> [--root /tmp/lxcexp-bench --bridge vebench1]

One experiment (the tool's engine, as a pytest session runs it), its VEs assigned to
the builds interleaved; for each build: version, liblxc, global config directory, the
proof taken from its first VE (the liblxc its monitor mapped, the hierarchies its init
got cgroups of its own in), then the median of each start phase over its VEs and its
ratio to the first build's. Medians only: the verdicts with their uncertainty are the
report's job.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402
from pytest_lxcexp.engine.phases import PHASES  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--lxc", action="append", required=True, help="a --ve-lxc build (repeat)")
    parser.add_argument("--root", default="/tmp/lxcexp-bench-builds")
    parser.add_argument("--bridge", default="vebenchb1")
    parser.add_argument("--subnet", default="10.101.7.0/24")
    args = parser.parse_args()
    config = build_config(
        count=args.count,
        batch=args.count,
        root=args.root,
        bridge=args.bridge,
        subnet=args.subnet,
        pings=2,
        ping_interval=0.2,
        tmpfs_size="1G",
        lxc=args.lxc,
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        experiment.start(1, args.count)
        records = experiment.wait(1, args.count)
    finally:
        experiment.takedown()
        experiment.unlock()
    left = experiment.leftovers()
    print(f"{args.count} VEs, builds interleaved; completed {sum(r.completed for r in records)}; left behind: {left}")
    first_medians: dict[str, float] = {}
    for build in experiment.builds_metadata():
        proof = build["proof"] or {}
        print(f"\n[{build['name']}] version {build['version']}  describe {build['git_describe']}")
        print(f"  lxc-start   {build['lxc_start']}")
        print(f"  liblxc      {build['library']}  sha256 {build['sha256'][:16]}  rpath {build['rpath']}")
        print(f"  config dir  {build['config_dir']}")
        print(f"  proof       ok={proof.get('ok')} on {proof.get('ve')}: monitor maps {proof.get('liblxc')}")
        print(f"              own cgroups in {proof.get('cgroups')}; preload mapped {proof.get('preload_mapped')}")
        mine = [r for r in records if r.build == build["name"] and r.phases]
        cells = []
        for phase in PHASES:
            values = [r.phases[phase] for r in mine if r.phases.get(phase) is not None]
            if not values:
                cells.append(f"{phase} -")
                continue
            median = statistics.median(values) * 1000
            first_medians.setdefault(phase, median)
            cells.append(f"{phase} {median:.1f} ms (x{median / first_medians[phase]:.2f}, n={len(values)})")
        print("  medians     " + "\n              ".join(cells))
    return 0 if not left else 1


if __name__ == "__main__":
    sys.exit(main())
