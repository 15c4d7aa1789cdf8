"""A real experiment driven through the engine: every claim checked on the host itself."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from integration_helpers import alive, running_experiment
from pyroute2 import IPRoute

from pytest_lxcexp.engine import addressing, cgroups, network, storage
from pytest_lxcexp.engine.config import ConfigError, build_config
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import results_block

COUNT = 24
PINGS = 5


def _bridge_address(name: str) -> list[str]:
    with IPRoute() as ip:
        index = ip.link_lookup(ifname=name)[0]
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ip.get_addr(index=index, family=2)]


def test_bridge_experiment_end_to_end(clean_host, leftovers):
    names = clean_host
    config = build_config(
        count=COUNT,
        root=names.root,
        bridge=names.bridge,
        subnet=names.subnet,
        pings=PINGS,
        ping_interval=0.2,
        tmpfs_size="256M",
    )
    experiment = Experiment(config)
    assert experiment.check() is None
    experiment.lock()
    try:
        experiment.setup()

        # The root is our tmpfs, marked ours.
        root_mount = [m for m in storage.mounts() if m["target"] == names.root]
        assert root_mount and root_mount[0]["fstype"] == "tmpfs" and root_mount[0]["source"] == "lxcexp"
        assert storage.read_marker(names.root)["tag"] == names.tag

        # Every clone is an LXC container that lxc-ls and lxc-info can see.
        listed = subprocess.run(["lxc-ls", "-P", names.root], capture_output=True, text=True, check=True).stdout.split()
        assert sorted(listed) == sorted(f"ve{i}" for i in range(1, COUNT + 1))
        info = subprocess.run(["lxc-info", "-P", names.root, "-n", "ve7"], capture_output=True, text=True, check=True)
        assert "STOPPED" in info.stdout

        # The bridge exists, with the subnet's first address.
        plan = addressing.AddressPlan(config.subnet)
        assert _bridge_address(names.bridge) == [f"{plan.gateway}/{plan.prefixlen}"]

        results = experiment.start(1, COUNT)
        assert [r.index for r in results if r.ok] == list(range(1, COUNT + 1))

        # Real processes, each in the experiment's own cgroup subtree.
        for result in results:
            assert alive(result.pid)
            with open(f"/proc/{result.pid}/cgroup") as handle:
                assert f"lxcexp-{names.tag}/ve{result.index}" in handle.read()
        assert os.getpid() not in cgroups.experiment_pids(names.tag)

        # One veth per VE on the bridge, named with the root's tag.
        ports = network.bridge_ports(names.bridge)
        assert sorted(ports) == sorted(network.veth_name(names.tag, i) for i in range(1, COUNT + 1))

        # A VE answers a ping from the host through the bridge.
        address = str(plan.ve_address(7))
        ping = subprocess.run(["busybox", "ping", "-c", "2", "-W", "2", address], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert f"bytes from {address}" in ping.stdout

        records = experiment.wait(1, COUNT, timeout=60)
        assert [r.name for r in records if not r.completed] == []
        assert all(r.pings == PINGS and r.state == "RUNNING" and r.pid for r in records)

        # The log is read through the overlay's upper directory, without entering the VE.
        with open(experiment.layout.ve_workload_log(3)) as handle:
            log = handle.read()
        assert log.startswith("lxcexp-begin ") and " ve3" in log.splitlines()[0]
        assert log.count("bytes from 127.0.0.1") == PINGS and "rc=0" in log

        summary = experiment.summary(records)
        assert (summary.total, summary.completed, summary.incomplete, summary.no_log, summary.with_pid) == (
            COUNT,
            COUNT,
            0,
            0,
            COUNT,
        )
        block = results_block(summary, storage.human_size(summary.disk_used))
        assert block[1] == f"Total VEs        : {COUNT}"
        assert block[2] == f"{PINGS}-ping VEs       : {COUNT}"
        assert block[5] == f"{COUNT} VEs have a PID"
        assert summary.disk_used > 0

        pids = [r.pid for r in records]
        report = experiment.takedown()
    finally:
        experiment.unlock()
    assert report.stopped == COUNT and report.bridge_deleted and names.root in report.unmounted
    assert not any(alive(pid) for pid in pids)
    assert leftovers(names) == []


def test_network_none_gives_loopback_only(clean_host, leftovers):
    names = clean_host
    with running_experiment(names, count=3, network="none", pings=2, tmpfs_size="64M") as experiment:
        assert network.bridge_owner(names.bridge) is None  # no bridge made
        results = experiment.start(1, 3)
        # The VE's own network namespace holds only lo.
        with open(f"/proc/{results[0].pid}/net/dev") as handle:
            interfaces = [line.split(":")[0].strip() for line in handle.readlines()[2:]]
        assert interfaces == ["lo"]
        records = experiment.wait(1, 3, timeout=30)
        assert all(r.completed for r in records)
    assert leftovers(names) == []


def test_takedown_is_idempotent_and_kills_stray_processes(clean_host, leftovers):
    names = clean_host
    config = build_config(
        count=2,
        root=names.root,
        bridge=names.bridge,
        subnet=names.subnet,
        pings=1000,
        ping_interval=0.2,
        tmpfs_size="64M",
    )
    experiment = Experiment(config)
    experiment.check()
    experiment.lock()
    try:
        experiment.setup()
        results = experiment.start(1, 2)
        # A process that escaped liblxc's view: still in the VE's cgroup, so provably ours.
        stray = subprocess.Popen(["sleep", "600"])
        for hierarchy in cgroups.hierarchies():
            procs = os.path.join(hierarchy, f"lxcexp-{names.tag}", "ve1", "cgroup.procs")
            if os.path.exists(procs):
                with open(procs, "w") as handle:
                    handle.write(str(stray.pid))
        assert stray.pid in cgroups.experiment_pids(names.tag)
        first = experiment.takedown()
        assert stray.wait(timeout=10) == -9
        second = experiment.takedown()
    finally:
        experiment.unlock()
    assert first.stopped == 2 and first.killed >= 1
    assert (second.stopped, second.killed, second.unmounted, second.bridge_deleted) == (0, 0, [], False)
    assert not any(alive(r.pid) for r in results)
    assert leftovers(names) == []


def test_takedown_kills_a_process_only_a_v1_hierarchy_holds(clean_host, leftovers):
    """The v2 tree's `populated` cannot see a process that sits in one of our v1 cgroups only
    (it stays in the tool's own v2 cgroup): the cgroup's removal must find and kill it."""
    names = clean_host
    with running_experiment(names, count=1, pings=1, tmpfs_size="64M", workload="idle") as experiment:
        results = experiment.start(1, 1)
        assert all(r.ok for r in results), [r.error for r in results]
        stray = subprocess.Popen(["sleep", "600"])
        try:
            v1 = [h for h in cgroups.hierarchies() if h != cgroups.unified_hierarchy()]
            placed = [
                procs
                for hierarchy in v1 or cgroups.hierarchies()  # a v2-only host: its one tree
                if os.path.exists(procs := os.path.join(hierarchy, f"lxcexp-{names.tag}", "ve1", "cgroup.procs"))
            ][:1]
            assert placed, "no cgroup of ve1 to put the stray in"
            with open(placed[0], "w") as handle:
                handle.write(str(stray.pid))
            report = experiment.takedown()
            assert stray.wait(timeout=10) == -9
        finally:
            if stray.poll() is None:
                stray.kill()
    assert report.killed >= 2 and report.leftovers == []
    assert not any(alive(r.pid) for r in results)
    assert leftovers(names) == []


def _wait_until_inits_are(results, command: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        names = []
        for result in results:
            with open(f"/proc/{result.pid}/comm") as handle:
                names.append(handle.read().strip())
        if all(name == command for name in names):
            return
        assert time.monotonic() < deadline, f"VE inits still {names} after {timeout} s"
        time.sleep(0.05)


def _still_pids(tag: str, timeout: float = 10.0) -> set[int]:
    """The experiment's PIDs once two listings 0.1 s apart agree (a monitor or init may
    still have a short-lived child just after the start)."""
    deadline = time.monotonic() + timeout
    before = cgroups.experiment_pids(tag)
    while True:
        time.sleep(0.1)
        now = cgroups.experiment_pids(tag)
        if now == before or time.monotonic() > deadline:
            return now
        before = now


def test_takedown_finds_cgroups_a_ve_made_below_its_own(clean_host, leftovers):
    """A VE may make cgroups below its own (cgroup namespaces allow it): the takedown's
    one-listing shortcut must notice them, kill what runs there and remove them."""
    names = clean_host
    with running_experiment(names, count=2, pings=1, tmpfs_size="64M", workload="idle") as experiment:
        results = experiment.start(1, 2)
        assert all(r.ok for r in results), [r.error for r in results]
        # Counted once each VE's script has forked its last helper (ip, date) and its init is
        # the idle sleep: counted earlier, a helper that exits before the kill is one too many.
        _wait_until_inits_are(results, "sleep")
        stray = subprocess.Popen(["sleep", "600"])
        nested = []
        try:
            for hierarchy in cgroups.hierarchies():
                ve1 = os.path.join(hierarchy, f"lxcexp-{names.tag}", "ve1")
                if os.path.isdir(ve1):
                    inner = os.path.join(ve1, "inner", "deeper")
                    os.makedirs(inner)
                    with open(os.path.join(inner, "cgroup.procs"), "w") as handle:
                        handle.write(str(stray.pid))
                    nested.append(inner)
            assert nested
            running = _still_pids(names.tag)
            assert stray.pid in running
            report = experiment.takedown()
            assert stray.wait(timeout=10) == -9
        finally:
            if stray.poll() is None:
                stray.kill()
    assert (report.stopped, report.killed, report.leftovers) == (2, len(running), [])
    assert not any(os.path.exists(path) for path in nested)
    assert not any(alive(r.pid) for r in results)
    assert leftovers(names) == []


def _cgroup_of(pid: int, controller: str) -> str:
    """The pid's cgroup path in the v1 hierarchy of `controller`; on a cgroup v2-only host,
    its one cgroup in the unified tree, which holds every controller."""
    with open(f"/proc/{pid}/cgroup") as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    for _, controllers, path in lines:
        if controller in controllers.split(","):
            return path
    if cgroups.unified_only():
        return next(path for hierarchy, _, path in lines if hierarchy == "0")
    raise AssertionError(f"this host has no cgroup v1 {controller} hierarchy (the test needs a hybrid host)")


def _tree(directory: str) -> dict[str, bytes]:
    """Every file below `directory` with its content."""
    found = {}
    for path, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(path, name), "rb") as handle:
                found[os.path.join(path, name)] = handle.read()
    return found


def _run_two_ves(names, cgroups_option: str) -> tuple[dict[str, str], dict[str, str]]:
    """Start two VEs; the VE's and its monitor's cgroups, by controller, then take them down."""
    options = {"count": 2, "pings": 1, "tmpfs_size": "64M", "workload": "idle", "cgroups": cgroups_option}
    with running_experiment(names, **options) as experiment:
        etc_before = _tree("/etc/lxc")
        results = experiment.start(1, 2)
        assert all(r.ok for r in results), [r.error for r in results]
        init = results[0].pid
        with open(f"/proc/{init}/status") as handle:
            monitor = int(next(line for line in handle if line.startswith("PPid:")).split()[1])
        ve = {c: _cgroup_of(init, c) for c in ("pids", "cpu", "memory", "devices")}
        mon = {c: _cgroup_of(monitor, c) for c in ("pids", "memory")}
        # The host's /etc/lxc is untouched: liblxc saw the tool's own only in the starters.
        assert _tree("/etc/lxc") == etc_before
    return ve, mon


def test_ves_get_cgroups_of_their_own_only_in_cpu_and_pids(clean_host, leftovers):
    names = clean_host
    if cgroups.unified_only():
        # cgroup v2: liblxc enables every unified controller for each VE, so a list is refused
        # before anything is made; auto gives each VE and monitor its one cgroup with them all.
        with pytest.raises(ConfigError, match="cgroup v2 only"):
            Experiment(build_config(count=2, root=names.root, bridge=names.bridge, subnet=names.subnet,
                                    cgroups="cpu,pids")).check()  # fmt: skip
        assert leftovers(names) == []
        ve, monitor = _run_two_ves(names, "auto")
        assert set(ve.values()) == {f"/lxcexp-{names.tag}/ve1"}
        assert set(monitor.values()) == {f"/lxcexp-{names.tag}.monitor/ve1"}
        assert leftovers(names) == []
        return
    ve, monitor = _run_two_ves(names, "auto")
    own, shared = f"/lxcexp-{names.tag}/ve1", f"/lxcexp-{names.tag}"
    assert ve["pids"] == own and ve["cpu"] == own and monitor["pids"] == f"/lxcexp-{names.tag}.monitor/ve1"
    # No memory cgroup per VE or monitor: both are charged to the experiment's one.
    assert ve["memory"] == shared and monitor["memory"] == shared
    # A hierarchy not asked for: the VE stays in the cgroup the tool (and its starter) is in.
    assert ve["devices"] == _cgroup_of(os.getpid(), "devices")
    assert leftovers(names) == []
    assert not os.path.exists(f"/sys/fs/cgroup/memory{shared}")


def test_cgroups_all_gives_each_ve_every_hierarchy(clean_host, leftovers):
    names = clean_host
    ve, monitor = _run_two_ves(names, "all")
    own = f"/lxcexp-{names.tag}/ve1"
    assert ve == {"pids": own, "cpu": own, "memory": own, "devices": own}
    assert monitor["memory"] == f"/lxcexp-{names.tag}.monitor/ve1"
    assert leftovers(names) == []
