"""Several LXC builds in one real run (--ve-lxc): interleaved, recorded per VE, and proven.

The second build is the system's LXC with an LD_PRELOAD shim (benchmarks/slow_mount_shim.c,
compiled here with gcc): a real build of its own as far as the tool goes, with its own
preload to prove in its monitors. A build from source is exercised by test_build_lxc.py.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
from integration_helpers import PING_SUITE, Names, reported_run, run_pytest, running_experiment

from pytest_lxcexp.engine import builds, cgroups, forkstart
from pytest_lxcexp.engine.config import DEFAULT_VE_CGROUPS

BENCHMARKS = pathlib.Path(__file__).parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("shim") / "slow_mount_shim.so"
    subprocess.run([str(BENCHMARKS / "build_shim.sh"), str(out)], check=True, capture_output=True)
    return str(out)


def expected_own_hierarchies() -> list[str]:
    use = cgroups.cgroup_use(DEFAULT_VE_CGROUPS)
    with open("/proc/self/cgroup") as handle:
        expected = builds.expected_hierarchies(use, handle.read().splitlines())
    assert expected is not None and "pids" in expected
    return sorted(expected)


def test_two_builds_run_interleaved_each_proven_and_recorded(
    pytester: pytest.Pytester, clean_host: Names, shim: str
) -> None:
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(
        pytester,
        clean_host,
        "--ve-count=6",
        "--ve-batch=3",
        "--ve-pings=2",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=128M",
        "--ve-parallel=1",  # one starter: the start order is the assignment order
        "--ve-lxc=system",
        f"--ve-lxc=slow=system+preload:{shim}",
    )
    result.assert_outcomes(passed=4)

    ves = results["ves"]
    assert [ve["build"] for ve in ves] == ["system", "slow", "slow", "system", "system", "slow"]
    assert all(ve["completed"] for ve in ves)
    # Started in index order: ve1 (system), ve2 (slow), ve3 (slow), ve4 (system), ...
    by_start = sorted(ves, key=lambda ve: ve["started_at"])
    assert [ve["index"] for ve in by_start] == [1, 2, 3, 4, 5, 6]

    described = {build["name"]: build for build in results["metadata"]["builds"]}
    assert list(described) == ["system", "slow"]
    system, slow = described["system"], described["slow"]
    assert system["lxc_start"] == slow["lxc_start"] == shutil.which("lxc-start", path="/usr/sbin:/usr/bin:/sbin:/bin")
    assert system["preload"] is None and slow["preload"] == shim and len(slow["preload_sha256"]) == 64
    assert system["config_dir"] == "/etc/lxc" and len(system["sha256"]) == 64
    # The proof, from each build's first VE while it ran: its monitor's liblxc (and the
    # shim only in the slow build's), and its own cgroups exactly those asked for, alike.
    for build, first in ((system, "ve1"), (slow, "ve2")):
        proof = build["proof"]
        assert proof["ok"] and proof["differs"] is None
        assert proof["ve"] == first
        assert proof["liblxc"] == [build["library"]]
        assert proof["cgroups"] == expected_own_hierarchies()
    assert system["proof"]["preload_mapped"] is None and slow["proof"]["preload_mapped"] is True
    # Memory per VE: each monitor's PSS, read while it ran (a monitor is a forked lxc-start:
    # hundreds of KiB); no memory cgroup of its own per VE by default, so nothing per VE there.
    assert all(64 * 1024 < ve["monitor_pss"] < 64 * 1024**2 for ve in ves), [ve["monitor_pss"] for ve in ves]
    assert all(ve["cgroup_memory"] is None for ve in ves)
    [comparison] = results["comparisons"]
    verdicts = {verdict["metric"]: verdict for verdict in comparison["verdicts"]}
    assert verdicts["monitor_pss"]["method"] == verdicts["start_latency"]["method"] == "Wilcoxon signed-rank (paired)"
    assert verdicts["monitor_pss"]["n_baseline"] == 3 and "cgroup_memory" not in verdicts


@pytest.mark.parametrize("start_path", [forkstart.FORK_SERVER, forkstart.LXC_START])
def test_a_build_whose_start_hangs_fails_its_ves_and_the_run_ends(
    pytester: pytest.Pytester, clean_host: Names, shim: str, monkeypatch: pytest.MonkeyPatch, start_path: str
) -> None:
    # The shim's mount() sleeps 15 minutes: the "hung" build's starts never return, the way
    # a build that deadlocks in its start would not. The system build's VEs are unaffected.
    monkeypatch.setenv("LXCEXP_SHIM_DELAY_US", str(900 * 10**6))
    monkeypatch.setenv(forkstart.CHOICE_VARIABLE, start_path)
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(
        pytester,
        clean_host,
        "--ve-count=4",
        "--ve-batch=4",
        "--ve-pings=2",
        "--ve-ping-interval=0.2",
        "--ve-timeout=15",
        "--ve-tmpfs-size=128M",
        "--ve-parallel=1",
        "--ve-lxc=system",
        f"--ve-lxc=hung=system+preload:{shim}",
        timeout=240,  # the run must end: two hung starts of 15 s each, and the takedown
    )
    ves = {ve["index"]: ve for ve in results["ves"]}
    assert [ves[i]["build"] for i in (1, 2, 3, 4)] == ["system", "hung", "hung", "system"]
    assert ves[1]["completed"] and ves[4]["completed"]
    for index in (2, 3):
        assert not ves[index]["completed"]
        assert "had not returned after 15 s" in (ves[index]["start_error"] or ""), ves[index]
    # ve4 was started 30 s late, behind the two hung starts: its range's wait got them back.
    [wait] = results["timings"]["waits"]
    held = ves[2]["start_latency"] + ves[3]["start_latency"]
    assert wait["deadline"] - wait["first_start"] == pytest.approx(15 + held, abs=0.01)
    assert wait["pending"] == 0
    assert result.ret != 0  # two VEs did not complete: the range test fails, and says which
    assert "ve2" in result.stdout.str()


def test_memory_per_ve_with_memory_cgroups_of_their_own_is_compared_pair_by_pair(
    pytester: pytest.Pytester, clean_host: Names
) -> None:
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(
        pytester,
        clean_host,
        "--ve-count=20",
        "--ve-batch=20",
        "--ve-pings=1",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=128M",
        "--ve-cgroups=cpu,pids,memory",
        "--ve-lxc=base=system",
        "--ve-lxc=same=system",
    )
    result.assert_outcomes(passed=2)
    ves = results["ves"]
    assert all(ve["completed"] for ve in ves)
    # Each VE's own memory cgroup was charged for its processes and pages: more than nothing,
    # less than the whole tmpfs.
    assert all(64 * 1024 < ve["cgroup_memory"] < 128 * 1024**2 for ve in ves), [ve["cgroup_memory"] for ve in ves]
    assert all(64 * 1024 < ve["monitor_pss"] < 64 * 1024**2 for ve in ves)
    [comparison] = results["comparisons"]
    verdicts = {verdict["metric"]: verdict for verdict in comparison["verdicts"]}
    for metric in ("monitor_pss", "cgroup_memory"):
        assert verdicts[metric]["method"] == "Wilcoxon signed-rank (paired)"
        assert verdicts[metric]["n_baseline"] == 10 and verdicts[metric]["p_value"] is not None


def test_a_library_swapped_under_the_run_stops_it_before_any_figure(
    pytester: pytest.Pytester, clean_host: Names, tmp_path: pathlib.Path
) -> None:
    # A prefix build made of the system's own lxc-start and a copy of its liblxc. A test of
    # the suite swaps the copy for a link to the system's library before the starts: the
    # monitors then map another liblxc than the one the preflight resolved.
    system = builds.resolve_build(builds.parse_build_spec("system"))
    prefix = tmp_path / "copy"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib").mkdir()
    shutil.copy2(system.lxc_start, prefix / "bin" / "lxc-start")
    shutil.copy2(system.library, prefix / "lib" / "liblxc.so.1")
    pytester.makepyfile(
        test_swap=f"""
import os

def test_swap_the_library(ve_experiment):
    path = "{prefix}/lib/liblxc.so.1"
    os.unlink(path)
    os.symlink("{system.library}", path)
"""
        + PING_SUITE
    )
    result = run_pytest(
        pytester,
        clean_host,
        "--ve-count=2",
        "--ve-pings=2",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=128M",
        "--ve-lxc=system",
        f"--ve-lxc=copy={prefix}",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(
        [f"*--ve-lxc: build copy (ve2): its monitor maps {system.library}, not {prefix}/lib/liblxc.so.1;*stopped*"]
    )
    assert "test_completed" not in result.stdout.str()  # nothing ran after the failed proof


def test_a_ve_with_other_cgroups_than_asked_is_named_with_both(clean_host: Names) -> None:
    # The check itself, on a real running VE's /proc: right when asked what it got, and
    # saying what differs when asked for something else.
    with running_experiment(clean_host, count=1, pings=50) as experiment:
        (start,) = experiment.start(1, 1)
        assert start.ok and start.monitor and start.pid
        build = experiment.builds[0]
        own = f"/{cgroups.container_dir(experiment.config.tag)}/ve1"
        right = builds.check_first_ve(
            build, "ve1", start.monitor, start.pid, own, frozenset(expected_own_hierarchies())
        )
        assert right.ok, right.differs
        wrong = builds.check_first_ve(build, "ve1", start.monitor, start.pid, own, frozenset({"cpu"}))
        assert not wrong.ok
        assert wrong.differs == (
            f"build system (ve1): its init got cgroups of its own in "
            f"{builds._hierarchies_text(expected_own_hierarchies())}, not {{cpu}}"
        )
