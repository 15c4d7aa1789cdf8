"""More VEs than one bridge takes (1023 ports): spread over sub-bridges, every VE reachable."""

from __future__ import annotations

import subprocess

from pytest_lxcexp.engine import addressing, network
from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.engine.experiment import Experiment

COUNT = 1030  # past a bridge's limit (1023): five sub-bridges (4 x 250 + 30)


def _unreachable_from_host(addresses: list[str], batch: int = 8) -> list[str]:
    """Addresses that do not answer. Few pings at a time: each first ping's ARP broadcast is
    flooded to every bridge port, and a burst of them overflows the per-CPU backlog."""
    failed = []
    for first in range(0, len(addresses), batch):
        chunk = addresses[first : first + batch]
        pings = {
            a: subprocess.Popen(["busybox", "ping", "-c", "1", "-W", "3", a], stdout=subprocess.DEVNULL) for a in chunk
        }
        failed += [a for a, process in pings.items() if process.wait() != 0]
    return failed


def test_more_than_1023_ves_on_sub_bridges_all_reachable(clean_host, leftovers):
    names = clean_host
    config = build_config(
        count=COUNT,
        root=names.root,
        bridge=names.bridge,
        subnet="10.230.0.0/20",
        pings=1,
        ping_interval=0.2,
        tmpfs_size="512M",
        tune_host=True,  # neighbour table and backlog
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        layout = experiment.bridge_layout
        sub1, sub2 = layout.sub_bridge(1), layout.sub_bridge(5)
        assert network.bridge_owner(sub1) == names.tag and network.bridge_owner(sub2) == names.tag
        assert sorted(network.bridge_ports(names.bridge)) == sorted(layout.uplink(k)[0] for k in range(1, 6))

        results = experiment.start(1, COUNT)
        assert [r.index for r in results if not r.ok] == []
        assert len(network.bridge_ports(sub1)) == 250 + 1 and len(network.bridge_ports(sub2)) == 30 + 1
        # No IGMP snooping on any of our bridges (each port would cost its timers).
        for bridge in layout.all_bridges():
            with open(f"/sys/class/net/{bridge}/bridge/multicast_snooping") as handle:
                assert handle.read().strip() == "0", bridge

        plan = addressing.AddressPlan(config.subnet)
        assert _unreachable_from_host([str(plan.ve_address(i)) for i in range(1, COUNT + 1)]) == []
        # VEs on different sub-bridges reach each other.
        for source, target in ((1, COUNT), (COUNT, 2)):
            attach = subprocess.run(
                [
                    "lxc-attach",
                    "-P",
                    names.root,
                    "-n",
                    f"ve{source}",
                    "--",
                    "ping",
                    "-c",
                    "1",
                    "-W",
                    "3",
                    str(plan.ve_address(target)),
                ],
                capture_output=True,
                text=True,
            )
            assert attach.returncode == 0, attach.stdout + attach.stderr

        records = experiment.wait(1, COUNT, timeout=120)
        assert sum(r.completed for r in records) == COUNT
        report = experiment.takedown()
    finally:
        experiment.unlock()
    assert report.stopped == COUNT and report.bridge_deleted
    assert leftovers(names) == []
    assert network.bridge_owner(sub1) is None and network.bridge_owner(sub2) is None
