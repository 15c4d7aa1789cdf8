"""Splitting a run's ranges over several hosts."""

from __future__ import annotations

import pathlib

import pytest

from pytest_lxcexp.engine.config import ve_ranges
from pytest_lxcexp.engine.hosts import HostPlan, HostPlanError, range_of_test, split_ranges


def test_blocks_are_consecutive_cover_every_range_once_and_are_even():
    ranges = ve_ranges(1000, 100)
    blocks = split_ranges(ranges, 3)
    assert [len(block) for block in blocks] == [3, 3, 4]
    assert [bounds for block in blocks for bounds in block] == ranges


def test_more_hosts_than_ranges_is_refused_with_the_way_out():
    with pytest.raises(HostPlanError, match="3 hosts but only 2 ranges of VEs: lower --ve-batch"):
        split_ranges(ve_ranges(20, 10), 3)


@pytest.mark.parametrize(
    ("nodeid", "bounds"),
    [
        ("test_ping.py::test_start[ve1-ve10]", (1, 10)),
        ("suite/test_x.py::Test::test_y[ve101-ve200]", (101, 200)),
        ("test_x.py::test_y[ve11-ve20-fast]", (11, 20)),
        ("test_x.py::test_y[slow-ve11-ve20]", (11, 20)),
        ("test_x.py::test_summary", None),
        ("test_x.py::test_y[ve11]", None),
    ],
)
def test_a_tests_range_is_read_from_its_id(nodeid, bounds):
    assert range_of_test(nodeid) == bounds


def test_each_host_owns_its_block_and_tests_without_a_range_go_anywhere():
    plan = HostPlan(["a", "b", "a"], ve_ranges(40, 10))
    assert plan.hosts == ["a", "b"]
    assert plan.ves_of("a") == (1, 20) and plan.ves_of("b") == (21, 40)
    assert plan.owner_of_test("t.py::test_start[ve11-ve20]") == "a"
    assert plan.owner_of_test("t.py::test_completed[ve31-ve40]") == "b"
    assert plan.owner_of_test("t.py::test_report") is None


def test_a_run_over_several_hosts_refuses_a_dist_mode_that_splits_ranges(pytester):
    pytester.makepyfile(test_x="def test_x(ve_range):\n    pass\n")
    specs = ["--tx", "popen//env:LXCEXP_HOST=a", "--tx", "popen//env:LXCEXP_HOST=b"]
    result = pytester.runpytest_subprocess("--dist", "loadscope", *specs, "--ve-count=20", "--ve-batch=10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dist: a run over 2 hosts needs --dist load (-d), which keeps each range on*"])


def test_a_run_over_more_hosts_than_ranges_is_refused_before_any_worker_starts(pytester):
    pytester.makepyfile(test_x="def test_x(ve_range):\n    pass\n")
    specs = ["--tx", "popen//env:LXCEXP_HOST=a", "--tx", "popen//env:LXCEXP_HOST=b"]
    result = pytester.runpytest_subprocess("-d", *specs, "--ve-count=10", "--ve-batch=10")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--tx: 2 hosts but only 1 ranges of VEs: lower --ve-batch or use fewer hosts"])


def test_hosts_simulated_on_one_machine_must_not_share_a_root(pytester):
    pytester.makepyfile(test_x="def test_x(ve_range):\n    pass\n")
    specs = ["--tx", "popen//env:LXCEXP_HOST=a//env:LXCEXP_VE_BRIDGE=vea", "--tx", "popen//env:LXCEXP_HOST=b"]
    result = pytester.runpytest_subprocess("-d", *specs, "--ve-count=20", "--ve-batch=10", "--ve-root=/tmp/never-made")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--tx: hosts a and b both run on this machine with root /tmp/never-made; give each its own LXCEXP_VE_ROOT*"]
    )
    assert not pathlib.Path("/tmp/never-made").exists()


def _refused(pytester, *specs: str) -> pytest.RunResult:
    pytester.makepyfile(test_x="def test_x(ve_range):\n    pass\n")
    tx = [arg for spec in specs for arg in ("--tx", spec)]
    result = pytester.runpytest_subprocess("-d", *tx, "--ve-count=20", "--ve-batch=10", "--ve-root=/tmp/never-made")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    return result


def test_a_bad_per_host_setting_names_the_variable_and_the_host(pytester):
    spec_b = "popen//env:LXCEXP_HOST=b//env:LXCEXP_VE_SUBNET=nonsense"
    result = _refused(pytester, "popen//env:LXCEXP_HOST=a", spec_b)
    result.stderr.fnmatch_lines([f"*--tx {spec_b}: LXCEXP_VE_SUBNET (--tx env): *"])


def test_simulated_hosts_must_not_nest_roots_or_overlap_subnets(pytester):
    b = "popen//env:LXCEXP_HOST=b//env:LXCEXP_VE_BRIDGE=veb//env:LXCEXP_VE_SUBNET=10.9.0.0/24"
    nested = _refused(pytester, "popen//env:LXCEXP_HOST=a", b + "//env:LXCEXP_VE_ROOT=/tmp/never-made/b")
    nested.stderr.fnmatch_lines(["*hosts a and b both run on this machine with root /tmp/never-made and *(one inside*"])
    overlap = _refused(
        pytester,
        "popen//env:LXCEXP_HOST=a//env:LXCEXP_VE_SUBNET=10.9.0.0/16",
        b + "//env:LXCEXP_VE_ROOT=/tmp/never-made-b",
    )
    overlap.stderr.fnmatch_lines(["*with overlapping subnets 10.9.0.0/16 and 10.9.0.0/24*"])
