"""Every workload on real VEs: what each VE logged, its verdict, and nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import time

from integration_helpers import PING_SUITE, run_pytest, run_to_completion, running_experiment
from pyroute2 import IPRoute

from pytest_lxcexp.engine import addressing, cgroups, network
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import results_block
from pytest_lxcexp.engine.workload import read_log


def _mac(bridge: str) -> str:
    with IPRoute() as ip:
        return ip.link("get", index=ip.link_lookup(ifname=bridge)[0])[0].get_attr("IFLA_ADDRESS")


def _logs(experiment: Experiment):  # noqa: ANN202
    return {i: read_log(experiment.layout.ve_workload_log(i)) for i in range(1, experiment.config.count + 1)}


def test_ping_gateway_is_answered_by_the_bridge(clean_host, leftovers):
    names = clean_host
    with running_experiment(names, count=3, workload="ping-gateway") as experiment:
        gateway = str(addressing.AddressPlan(experiment.config.subnet).gateway)
        mac = _mac(names.bridge)
        assert all(result.ok for result in experiment.start(1, 3))
        # The bridge keeps its MAC as ports join: a VE's resolved gateway stays valid.
        assert _mac(names.bridge) == mac == network.bridge_mac(names.bridge)
        # The starter turned the host-side veths' IPv6 off: no link-local address or route
        # of theirs in the host's tables.
        veths = [network.veth_name(experiment.config.tag, index) for index in (1, 2, 3)]
        for veth in veths:
            with open(f"/proc/sys/net/ipv6/conf/{veth}/disable_ipv6") as handle:
                assert handle.read().strip() == "1"
        with open("/proc/net/if_inet6") as handle:
            assert not [line for line in handle if line.split()[-1] in veths]
        records = experiment.wait(1, 3, timeout=60)
        assert [r.failure for r in records] == [None, None, None]
        assert {r.target for r in records} == {gateway}
        for log in _logs(experiment).values():
            assert (log.workload, log.pings, log.exit_status) == ("ping-gateway", 3, 0)
            assert log.repliers == (gateway,)  # every answer from the project's bridge
    assert leftovers(names) == []


def test_ping_neighbour_each_answered_by_the_next(clean_host, leftovers):
    names = clean_host
    with running_experiment(names, count=4, workload="ping-neighbour") as experiment:
        plan = addressing.AddressPlan(experiment.config.subnet)
        records = run_to_completion(experiment, timeout=90)
        logs = _logs(experiment)
        for index, neighbour in ((1, 2), (2, 3), (3, 4), (4, 1)):
            assert logs[index].repliers == (str(plan.ve_address(neighbour)),)
            assert records[index - 1].target == str(plan.ve_address(neighbour))
    assert leftovers(names) == []


def test_idle_ves_stay_up_after_their_begin_line(clean_host, leftovers):
    names = clean_host
    with running_experiment(names, count=3, workload="idle", network="none") as experiment:
        records = run_to_completion(experiment, timeout=30)
        assert {r.state for r in records} == {"RUNNING"}
        for log in _logs(experiment).values():
            assert log.began is not None and not log.finished
        summary = experiment.summary(records)
        assert "Completed VEs (idle): 3" in results_block(summary, "1M")
    assert leftovers(names) == []


def test_command_exit_status_and_output_are_recorded(clean_host, leftovers):
    names = clean_host
    command = "cmd:echo hi from $(hostname); exit 3"
    with running_experiment(names, count=2, workload=command, network="none") as experiment:
        assert all(result.ok for result in experiment.start(1, 2))
        records = experiment.wait(1, 2, timeout=30)
        for record in records:
            assert record.exit_status == 3
            assert record.output == f"hi from {record.name}"
            # (the engine may add what it knows of the cause after a ';')
            assert record.failure.startswith("command exited with status 3 (expected 0)")
            assert record.state == "RUNNING"  # no --ve-poweroff: the VE stays up
    assert leftovers(names) == []


def test_poweroff_after_success_is_told_from_a_crash(clean_host, leftovers):
    names = clean_host
    # ve3 sleeps long enough to be killed mid-command: a crash, not a poweroff.
    command = 'cmd:[ "$(hostname)" = ve3 ] && sleep 120; echo done'
    with running_experiment(names, count=3, workload=command, network="none", poweroff=True) as experiment:
        starts = experiment.start(1, 3)
        assert all(result.ok for result in starts)
        assert experiment.wait(1, 2, timeout=30)
        os.kill(experiment.starts[3].pid, signal.SIGKILL)
        records = experiment.wait(1, 3, timeout=30)
        by_name = {r.name: r for r in records}
        for name in ("ve1", "ve2"):
            record = by_name[name]
            assert (record.state, record.exit_status, record.powered_off) == ("STOPPED", 0, True)
            assert record.completed and record.output == "done"
            assert not os.path.exists(f"/proc/{experiment.starts[record.index].pid}")
        assert by_name["ve3"].crashed
        assert by_name["ve3"].failure.startswith("crashed: not running (state STOPPED) before its command ended")
        lines = results_block(experiment.summary(records), "1M")
        assert "Powered off VEs  : 2 (after their workload succeeded)" in lines
        assert "Crashed VEs      : 1 (stopped before their workload ended)" in lines
    assert leftovers(names) == []


def test_busybox_init_runs_the_workload_as_a_service(clean_host, leftovers):
    names = clean_host
    with running_experiment(names, count=2, init="system", network="none") as experiment:
        records = run_to_completion(experiment, timeout=30)
        for record in records:
            with open(f"/proc/{record.pid}/comm") as handle:
                assert handle.read().strip() == "init"  # busybox init is PID 1, not lxcexp-workload
    assert leftovers(names) == []


HOOK_CONFTEST = r'''
from pytest_lxcexp.engine.workload import read_log

SCRIPT = """#!/bin/sh
mkdir -p /var/log/lxcexp
exec >>/var/log/lxcexp/workload.log 2>&1
echo "lxcexp-begin $(date +%s) $(hostname)"
echo "colour=$(hostname | tr 0-9 a-j)"
rc=0; [ "$(hostname)" = ve2 ] && rc=1
echo "lxcexp-end $(date +%s) rc=$rc"
while :; do sleep 86400; done
"""

def pytest_lxcexp_workload(config, experiment):
    return SCRIPT

def pytest_lxcexp_ve_fields(record, experiment):
    log = read_log(experiment.layout.ve_workload_log(record.index))
    return {"colour": log.output[0].split("=")[1] if log.output else None}
'''


def test_hooks_give_the_workload_and_fields(pytester, clean_host, leftovers, tmp_path):
    names = clean_host
    pytester.makeconftest(HOOK_CONFTEST)
    pytester.makepyfile(test_ping=PING_SUITE)
    reports = tmp_path / "reports"
    result = run_pytest(
        pytester, names, "--ve-count=3", "--ve-tmpfs-size=64M", "--ve-network=none", f"--ve-report-dir={reports}"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*1 of 3 VEs did not complete:*"])
    # The reason, then the hook's fields at the end of the line.
    assert re.search(r"ve2: workload exited with status 1 \(expected 0\).* \[colour=vec\]$", result.stdout.str(), re.M)
    (results_json,) = reports.glob("*/results.json")
    ves = {ve["name"]: ve for ve in json.loads(results_json.read_text())["ves"]}
    assert {name: ve["fields"] for name, ve in ves.items()} == {
        "ve1": {"colour": "veb"},
        "ve2": {"colour": "vec"},
        "ve3": {"colour": "ved"},
    }
    assert ves["ve2"]["workload"] == "hook" and ves["ve2"]["exit_status"] == 1
    # The HTML report's table of failed VEs shows them after the reason too.
    (report_html,) = reports.glob("*/report.html")
    row = r"ve2</td><td[^>]*>workload exited with status 1 \(expected 0\)[^<]*\[colour=vec\]"
    assert re.search(row, report_html.read_text())
    assert leftovers(names) == []


def _ve_processes(experiment: Experiment, index: int) -> dict[int, tuple[str, str]]:
    """Each process in the VE's own cgroup: its name and its state letter (Z: a zombie)."""
    found = {}
    for pid in cgroups.ve_pids(experiment.config.tag, experiment.layout.ve_name(index)):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)
        except OSError:
            continue
        found[pid] = (fields[0].split("(", 1)[1], fields[1].split()[0])
    return found


def test_init_after_the_tools_workload_is_one_sleep_and_a_command_keeps_its_reaper(clean_host, leftovers):
    # ve1 pings; ve2 runs a command that leaves an orphan, which exits a second later.
    names = clean_host
    with running_experiment(names, count=1, workload="ping-localhost") as experiment:
        records = run_to_completion(experiment, timeout=60)
        processes = _ve_processes(experiment, 1)
        # Only PID 1 is left, and it is sleep: the shell made way for it.
        assert list(processes.values()) == [("sleep", "S")], processes
        assert records[0].pid in processes
    with running_experiment(names, count=1, workload="cmd:(sleep 1; true) & echo left") as experiment:
        run_to_completion(experiment, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            processes = _ve_processes(experiment, 1)
            if len(processes) == 2:
                break  # the orphan ended
            time.sleep(0.2)
        names_and_states = sorted(processes.values())
        # The shell init reaped the orphan: no zombie, the shell and its sleep.
        assert names_and_states == [("lxcexp-workload", "S"), ("sleep", "S")], processes
    assert leftovers(names) == []
