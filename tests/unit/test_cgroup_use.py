"""engine.cgroups.cgroup_use_for: which hierarchies liblxc gives each VE a cgroup in."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine.cgroups import cgroup_use_for

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
        # cgroup v2 only: its controllers cannot be split per hierarchy, all are named.
        (("cpu", "pids"), [], ["cpuset", "cpu", "io", "memory", "pids"], "cpuset,cpu,io,memory,pids"),
        (("cpu", "pids"), SEPARATE, ["misc"], "cpu,pids,misc"),
    ],
)
def test_use_names_every_controller_of_each_wanted_hierarchy(wanted, v1, unified, use) -> None:
    assert cgroup_use_for(wanted, v1, unified) == use


def test_nothing_to_name_leaves_liblxc_its_default() -> None:
    # An empty lxc.cgroup.use would be ignored by liblxc; None says: write no config at all.
    assert cgroup_use_for(("cpu", "pids"), [["memory"]], []) is None
