"""A run over two hosts, simulated on this machine: two xdist gateways whose roots, bridges
and subnets differ, with real VEs on each; one combined report with per-host figures."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

from integration_helpers import PING_SUITE, XDIST_RUN, reported_run, results_path


def _spec(host: str, names) -> str:
    settings = {"LXCEXP_HOST": host, "LXCEXP_VE_ROOT": names.root, "LXCEXP_VE_BRIDGE": names.bridge}
    settings["LXCEXP_VE_SUBNET"] = names.subnet
    return "popen" + "".join(f"//env:{name}={value}" for name, value in settings.items())


def test_two_hosts_each_run_their_own_ves_and_report_as_one(pytester, names, leftovers):
    # Each host its own root, bridge and half of the test's /24: nothing shared but the machine.
    low, high = ipaddress.ip_network(names.subnet).subnets(prefixlen_diff=1)
    host_a = dataclasses.replace(names, subnet=str(low))
    host_b = dataclasses.replace(names, root=names.root + "-b", bridge=names.bridge + "b", subnet=str(high))
    pytester.makepyfile(test_ping=PING_SUITE)
    try:
        result, results = reported_run(
            pytester,
            host_a,  # the controller's own options; each worker's spec overrides them
            *("-d", "--tx", _spec("hosta", host_a), "--tx", _spec("hostb", host_b)),
            *XDIST_RUN,
            "--ve-workload=ping-gateway",  # each VE reaches its own host's bridge
        )
        result.assert_outcomes(passed=8)
        # Each range's tests ran on the worker of the host that owns it: ve1-ve20 on the first.
        ran_on = re.findall(
            r"\[(gw\d)\] \[ *\d+%\] PASSED test_ping.py::test_\w+\[ve(\d+)-ve\d+\]", result.stdout.str()
        )
        assert len(ran_on) == 8
        assert {(gateway, int(first) <= 20) for gateway, first in ran_on} == {("gw0", True), ("gw1", False)}
        result.stdout.fnmatch_lines(
            [
                "Total VEs        : 40",
                "3-ping VEs       : 40",
                "Hosts (2)",
                f"  hosta: ve1-ve20 in {host_a.root} on {host_a.bridge} ({host_a.subnet}): 20 VEs, 20 started, "
                "20 completed, start all *",
                f"  hostb: ve21-ve40 in {host_b.root} on {host_b.bridge} ({host_b.subnet}): 20 VEs, 20 started, "
                "20 completed, start all *",
                "Takedown: nothing left behind",
            ]
        )
        hosts = results["hosts"]
        assert [(h["name"], h["root"], h["bridge"], h["first"], h["last"]) for h in hosts] == [
            ("hosta", host_a.root, host_a.bridge, 1, 20),
            ("hostb", host_b.root, host_b.bridge, 21, 40),
        ]
        # VE numbers are unique across the hosts, and each VE lived on its own host's subnet
        # and pinged its own host's bridge.
        ves = results["ves"]
        assert [ve["index"] for ve in ves] == list(range(1, 41))
        for ve in ves:
            host = host_a if ve["index"] <= 20 else host_b
            subnet = ipaddress.ip_network(host.subnet)
            assert ipaddress.ip_address(ve["address"]) in subnet, ve
            assert ve["target"] == str(next(subnet.hosts())), ve
        # The combined numbers are the sums of the hosts'.
        summary = results["summary"]
        assert summary["completed"] == 40 == sum(h["completed"] for h in hosts)
        assert len(ves) == sum(h["ves"] for h in hosts) and all(h["started"] == 20 for h in hosts)
        assert summary["disk_used"] == sum(h["disk_used"] for h in hosts) > 0
        assert results["session"]["workers"] == 2
        # The combined HTML report has a line per host.
        html = (results_path(pytester.path / "reports").parent / "report.html").read_text()
        assert 'id="lxcexp-hosts"' in html and host_a.root in html and host_b.root in html
        assert leftovers(host_a) == [] and leftovers(host_b) == []
    finally:
        from pytest_lxcexp.engine import takedown

        for host in (host_a, host_b):
            takedown.takedown(host.root, host.tag, host.bridge)
