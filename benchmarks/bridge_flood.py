"""How many frames the bridge delivers to VEs while N idle VEs start: flooding that grows
with the count makes every start cost more as the bridge fills.

    .venv/bin/python benchmarks/bridge_flood.py --counts 100 1000

Idle VEs send nothing of their own, so whatever the ports' counters show is the kernel's
chatter (IPv6 link-local, multicast) and its flooding to every port. The counters are
the host-side veths' own: rx is what the VEs sent, tx what the bridge delivered to them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pytest_lxcexp.engine import network  # noqa: E402
from pytest_lxcexp.engine.config import build_config  # noqa: E402
from pytest_lxcexp.engine.experiment import Experiment  # noqa: E402

ROOT = "/tmp/lxcexp-flood"
BRIDGE = "veflood"
SUBNET = "10.242.0.0/16"


def counter(link: str, name: str) -> int:
    try:
        with open(f"/sys/class/net/{link}/statistics/{name}") as handle:
            return int(handle.read())
    except OSError:
        return 0


def measure(count: int) -> str:
    config = build_config(count=count, root=ROOT, bridge=BRIDGE, subnet=SUBNET, workload="idle", tmpfs_size="2G")
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        experiment.start(1, count)
        time.sleep(5)  # IPv6's delayed work (DAD, MLD) comes within seconds
        ports = [network.veth_name(config.tag, index) for index in range(1, count + 1)]
        sent = sum(counter(port, "rx_packets") for port in ports)
        delivered = sum(counter(port, "tx_packets") for port in ports)
        with open("/proc/net/if_inet6") as handle:
            with_ipv6 = sum(1 for line in handle if line.split()[-1].startswith(network.veth_prefix(config.tag)))
        return (
            f"{count:>6} VEs: the VEs sent {sent} frames ({sent / count:.1f} per VE), the bridge delivered "
            f"{delivered} to VEs ({delivered / count:.1f} per VE); {with_ipv6} host-side veths with IPv6 addresses"
        )
    finally:
        experiment.takedown()
        experiment.unlock()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    for count in args.counts:
        print(measure(count), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
