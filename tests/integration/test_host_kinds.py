"""What differs between the hosts users run: cgroup v1 or v2, AppArmor or none.

Each test checks the kind of host it runs on and asserts what must hold there; `make
test-hosts` runs them in Debian 12 and 13 VMs (cgroup v2, systemd, AppArmor), `make test`
on this project's machine (cgroup v1 hybrid, no AppArmor).
"""

from __future__ import annotations

import os

import pytest
from integration_helpers import alive, running_experiment

from pytest_lxcexp.engine import apparmor, cgroups
from pytest_lxcexp.engine.config import ConfigError, build_config
from pytest_lxcexp.engine.experiment import Experiment


def _read(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def _hierarchy_with(controller: str) -> str:
    """The mount point of the hierarchy holding `controller` (the unified tree on a v2 host)."""
    for hierarchy in cgroups.hierarchies():
        if os.path.isfile(os.path.join(hierarchy, "cgroup.controllers")):
            if cgroups.unified_only():
                return hierarchy
        elif controller in os.path.basename(hierarchy).split(","):
            return hierarchy
    raise AssertionError(f"no cgroup hierarchy holds {controller}")


def _cgroup_path(pid: int, hierarchy: str) -> str:
    """The pid's cgroup in `hierarchy`, as a path under its mount point."""
    with open(f"/proc/{pid}/cgroup") as handle:
        lines = [line.rstrip("\n").split(":", 2) for line in handle]
    if os.path.isfile(os.path.join(hierarchy, "cgroup.controllers")):
        return next(path for number, _, path in lines if number == "0")
    name = os.path.basename(hierarchy)
    return next(path for _, controllers, path in lines if set(name.split(",")) <= set(controllers.split(",")))


def test_ves_are_placed_counted_limited_charged_and_killed_through_cgroups(clean_host, leftovers):
    names = clean_host
    count = 3
    with running_experiment(names, count=count, workload="idle", nice=True) as experiment:
        results = experiment.start(1, count)
        assert all(r.ok for r in results), [r.error for r in results]
        inits = {r.index: r.pid for r in results}
        cpu, memory = _hierarchy_with("cpu"), _hierarchy_with("memory")
        for index, pid in inits.items():
            own = f"/lxcexp-{names.tag}/ve{index}"
            # Placed: each VE's init sits in its own cgroup of the experiment's subtree...
            assert _cgroup_path(pid, cpu) == own
            # ...counted there by the takedown's walk...
            assert pid in cgroups.ve_pids(names.tag, f"ve{index}")
            # ...and limited (--ve-nice: a tenth of the default CPU weight).
            if cgroups.unified_only():
                assert _read(f"{cpu}{own}/cpu.weight") == "10"
            else:
                assert _read(f"{cpu}{own}/cpu.shares") == "102"
        # Charged: memory cgroup of its own on v2 (liblxc's only way there), the experiment's one on v1.
        if cgroups.unified_only():
            assert all(int(_read(f"{memory}/lxcexp-{names.tag}/ve{i}/memory.current")) > 0 for i in inits)
            enabled = set(_read(f"{memory}/lxcexp-{names.tag}/cgroup.subtree_control").split())
            assert enabled == set(cgroups.unified_controllers()), "liblxc enables every unified controller"
        else:
            assert _cgroup_path(inits[1], memory) == f"/lxcexp-{names.tag}"
            assert int(_read(f"{memory}/lxcexp-{names.tag}/memory.usage_in_bytes")) > 0
    # Killed: the takedown (cgroup.kill on v2) left no process and no cgroup.
    assert not any(alive(pid) for pid in inits.values())
    assert leftovers(names) == []


def _profile_of(pid: int) -> str:
    try:
        return _read(f"/proc/{pid}/attr/current")
    except OSError:
        return "(no LSM label)"


def test_ves_start_under_the_chosen_apparmor_profile(clean_host, leftovers):
    names = clean_host
    small = {"root": names.root, "bridge": names.bridge, "subnet": names.subnet, "count": 2}
    if not apparmor.host_has_apparmor():
        # No AppArmor: auto means nothing (no profile line), a profile is refused up front.
        for choice in ("generated", "lxc-container-default-cgns"):
            with pytest.raises(ConfigError, match="no AppArmor"):
                Experiment(build_config(**small, apparmor=choice)).check()
        assert leftovers(names) == []
        with running_experiment(names, count=2, workload="idle") as experiment:
            assert all(r.ok for r in experiment.start(1, 2))
            assert "lxc.apparmor" not in _read(os.path.join(names.root, "ve1", "config"))
        assert leftovers(names) == []
        return
    # A profile that is not loaded is named before anything is made.
    with pytest.raises(ConfigError, match="lxcexp-no-such-profile is not loaded"):
        Experiment(build_config(**small, apparmor="lxcexp-no-such-profile")).check()
    assert leftovers(names) == []
    for choice, label in (("auto", f"{apparmor.DEFAULT_PROFILE} (enforce)"), ("unconfined", "unconfined")):
        with running_experiment(names, count=2, workload="idle", apparmor=choice) as experiment:
            results = experiment.start(1, 2)
            assert all(r.ok for r in results), [r.error for r in results]
            assert [_profile_of(r.pid) for r in results] == [label, label]
        assert leftovers(names) == []
