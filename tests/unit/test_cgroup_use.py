"""engine.cgroups: which hierarchies liblxc gives each VE a cgroup in, and the preflight of --ve-cgroups."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine import cgroups, host
from pytest_lxcexp.engine.cgroups import cgroup_use_for
from pytest_lxcexp.engine.config import ConfigError, build_config

# This machine's layout: one v1 hierarchy per controller, no controllers on the unified tree.
SEPARATE = [["cpu"], ["cpuacct"], ["cpuset"], ["memory"], ["pids"], ["devices"]]
# A common other one: cpu and cpuacct mounted together (liblxc needs both named to use it).
COMOUNTED = [["cpu", "cpuacct"], ["memory"], ["net_cls", "net_prio"], ["pids"]]


@pytest.mark.parametrize(
    ("wanted", "v1", "unified", "use"),
    [
        (("cpu", "pids"), SEPARATE, [], "cpu,pids"),
        (("cpu", "pids"), COMOUNTED, [], "cpu,cpuacct,pids"),
        (("memory", "cpu", "pids"), SEPARATE, [], "cpu,memory,pids"),
        # cgroup v2 only: liblxc uses the one hierarchy with all its controllers, nothing to choose.
        (("cpu", "pids"), [], ["cpuset", "cpu", "io", "memory", "pids"], None),
        (("cpu", "pids"), SEPARATE, ["misc"], "cpu,pids,misc"),
    ],
)
def test_use_names_every_controller_of_each_wanted_hierarchy(wanted, v1, unified, use) -> None:
    assert cgroup_use_for(wanted, v1, unified) == use


def test_nothing_to_name_leaves_liblxc_its_default() -> None:
    # An empty lxc.cgroup.use would be ignored by liblxc; None says: write no config at all.
    assert cgroup_use_for(("cpu", "pids"), [["memory"]], []) is None


def test_preflight_refuses_a_controller_the_host_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "host_controllers", lambda: {"cpu", "pids", "memory"})
    host.require_controllers(build_config(cgroups="cpu,pids,memory"))  # all there: no error
    with pytest.raises(ConfigError) as caught:
        host.require_controllers(build_config(cgroups="cpu,pids,rdma"))
    assert str(caught.value) == "--ve-cgroups: this host has no rdma cgroup controller"


def test_preflight_requires_lxc_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.shutil, "which", lambda name: None)
    with pytest.raises(host.PreflightError, match="lxc-start is not on PATH"):
        host.require_lxc()


def test_host_controllers_reads_this_kernels_enabled_ones() -> None:
    assert {"cpu", "pids"} <= cgroups.host_controllers()


def test_a_list_is_refused_on_a_cgroup_v2_only_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "unified_only", lambda: True)
    monkeypatch.setattr(cgroups, "unified_controllers", lambda: ["cpu", "memory", "pids"])
    for accepted in ("auto", "all"):
        host.require_unified_choice(build_config(cgroups=accepted))
    with pytest.raises(ConfigError) as caught:
        host.require_unified_choice(build_config(cgroups="cpu,pids"))
    assert caught.value.option == "--ve-cgroups"
    assert "cgroup v2 only" in caught.value.reason and "cpu memory pids" in caught.value.reason


def test_a_list_is_kept_where_v1_hierarchies_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroups, "unified_only", lambda: False)
    host.require_unified_choice(build_config(cgroups="cpu,pids"))
