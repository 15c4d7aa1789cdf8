"""Preflight refuses what the host cannot hold; --ve-tune-host raises limits and restores them,
also when two runs on different roots tune the host at once."""

from __future__ import annotations

import contextlib
import json
import pathlib
import time

import pytest
from integration_helpers import PING_SUITE, Names, run_pytest, started_pytest, wait_for

from pytest_lxcexp.engine import host, network, tuning
from pytest_lxcexp.engine.config import build_config

MAXKEYS = pathlib.Path("/proc/sys/kernel/keys/root_maxkeys")


@contextlib.contextmanager
def lowered_maxkeys(value: int):
    """Lower a limit for the test itself, and put the host's value back whatever happens."""
    original = MAXKEYS.read_text()
    MAXKEYS.write_text(str(value))
    try:
        yield int(original)
    finally:
        MAXKEYS.write_text(original)


def test_preflight_refuses_with_a_table_before_anything_is_made(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    with lowered_maxkeys(230):  # 50 VEs need 250 keys
        result = run_pytest(pytester, names, "--ve-count=50", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*this host cannot hold 50 VEs:*",
            "kernel.keys.root_maxkeys * need          250  have          230  short by         20 *--ve-tune-host*",
        ]
    )
    assert network.bridge_owner(names.bridge) is None
    assert leftovers(names) == []


TUNED_SUITE = (
    PING_SUITE
    + """

def test_limit_is_raised_during_the_run(ve_experiment):
    assert int(open("/proc/sys/kernel/keys/root_maxkeys").read()) >= 250
"""
)


def test_tune_host_raises_what_is_short_and_restores_it(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=TUNED_SUITE)
    with lowered_maxkeys(230) as original:
        result = run_pytest(
            pytester,
            names,
            "--ve-count=50",
            "--ve-batch=25",
            "--ve-pings=2",
            "--ve-ping-interval=0.2",
            "--ve-tmpfs-size=128M",
            "--ve-tune-host",
        )
        result.assert_outcomes(passed=5)
        result.stdout.fnmatch_lines(
            [
                "--ve-tune-host raised (restored at takedown):",
                "  /proc/sys/kernel/keys/root_maxkeys: 230 -> 250",
            ]
        )
        assert MAXKEYS.read_text().strip() == "230"  # restored to what it was before the run
    assert MAXKEYS.read_text().strip() == str(original)
    assert leftovers(names) == []


def test_preflight_at_scale_counts_the_per_ve_figures_of_the_base_and_init(pytester, clean_host, leftovers):
    # 10,000 debian VEs booting systemd: 16 MiB of memory and 8.5 MiB of tmpfs each (host.PER_VE_BUDGET),
    # far beyond this machine; refused with the numbers before anything exists, even with
    # --ve-tune-host, which can raise sysctls but not memory.
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(
        pytester,
        names,
        "--ve-count=10000",
        "--ve-base=debian",
        "--ve-init=system",
        "--ve-tune-host",
        "--ve-network=none",
        timeout=120,
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*this host cannot hold 10000 VEs:*",
            "tmpfs size (--ve-tmpfs-size) * need    85118 MiB  have     2048 MiB * --ve-tmpfs-size  (9 MiB per VE)",
            "memory available * need   160000 MiB  have * fewer VEs or more memory  (16 MiB per VE)",
        ]
    )
    assert "kernel.pid_max" not in result.stderr.str()  # --ve-tune-host raises it
    assert network.bridge_owner(names.bridge) is None
    assert leftovers(names) == []


# A run that holds its experiment (one VE started) until the outer test lets it go:
# it says it is up in <flags>/<name>-up, and ends once <flags>/<name>-go exists.
HOLDING_SUITE = """
import os, pathlib, time


def test_hold_until_released(ve_experiment):
    flags, me = pathlib.Path(os.environ["LXCEXP_IT_FLAGS"]), os.environ["LXCEXP_IT_RUN"]
    assert all(result.ok for result in ve_experiment.start(1, 1))
    (flags / f"{me}-up").write_text("")
    deadline = time.monotonic() + 600
    while not (flags / f"{me}-go").exists():
        assert time.monotonic() < deadline, "never released"
        time.sleep(0.1)
"""
GC_THRESH2 = "/proc/sys/net/ipv4/neigh/default/gc_thresh2"


def _tunable_sysctls(names: Names) -> list[str]:
    """Every sysctl --ve-tune-host may raise for a bridged run (the preflight's table)."""
    config = build_config(root=names.root, bridge=names.bridge, subnet=names.subnet)
    return sorted(item.sysctl for item in host.requirements(config) if item.sysctl)


def _values(paths: list[str]) -> dict[str, int]:
    return {path: int(pathlib.Path(path).read_text().split()[0]) for path in paths}


def _holders(sysctl: str) -> dict[str, int]:
    """Which roots hold `sysctl` raised, host-wide, and their needs (the registry is replaced whole on
    each write, so a plain read sees one whole version)."""
    try:
        registry = json.loads(pathlib.Path(tuning.HOST_STATE_DIR, "tuning.json").read_text())
    except FileNotFoundError:
        return {}
    return registry.get(sysctl, {}).get("holders", {})


def _settle(expected: dict[str, int], timeout: float = 120) -> dict[str, int]:
    """The sysctls once they read as expected; other test runs on this shared host lower some for
    a while (test_preflight_refuses_... lowers root_maxkeys), and put them back: wait that out,
    but a value our runs left changed stays changed, and fails."""
    deadline = time.monotonic() + timeout
    while (now := _values(list(expected))) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return now


def _put_back(before: dict[str, int], roots: list[str]) -> None:
    """Whatever happened: our roots give back what they hold, and a sysctl nobody holds any more
    is the host's own value again (another run's holding is left alone)."""
    for root in roots:
        tuning.restore(root)
    for path, value in before.items():
        if not _holders(path) and _values([path])[path] != value:
            pathlib.Path(path).write_text(str(value))


def test_tune_host_from_two_overlapping_runs_restores_after_the_last(
    pytester, clean_host, second_host, leftovers, monkeypatch
):
    # Two runs on their own roots and bridges, both --ve-tune-host; B starts while A runs and ends
    # after it. Each is sized just past the host's gc_thresh2 (2 ARP entries per VE + 100), so the
    # run really raises it: A to its need, B to its higher one. A's end must leave B's value,
    # B's end the host's own; no other sysctl moves.
    a, b = clean_host, second_host
    sysctls = _tunable_sysctls(a)
    before = _values(sysctls)
    assert not _holders(GC_THRESH2), f"another run on this host holds {GC_THRESH2} raised: {_holders(GC_THRESH2)}"
    count_a = (before[GC_THRESH2] - 100) // 2 + 1
    count_b = count_a + 2
    need_a, need_b = 100 + 2 * count_a, 100 + 2 * count_b
    assert count_b <= 250, f"{GC_THRESH2} is {before[GC_THRESH2]} here: runs past it need more than a /24"
    flags = pytester.path / "flags"
    flags.mkdir()
    pytester.makepyfile(test_hold=HOLDING_SUITE)
    monkeypatch.setenv("LXCEXP_IT_FLAGS", str(flags))
    common = ["-q", "--ve-tune-host", "--ve-pings=2", "--ve-ping-interval=0.2", "--ve-tmpfs-size=256M"]
    try:
        monkeypatch.setenv("LXCEXP_IT_RUN", "a")
        with started_pytest(pytester, a, *common, f"--ve-count={count_a}") as run_a:
            wait_for((flags / "a-up").exists, run_a, timeout=300, what="run A up")
            assert _values([GC_THRESH2])[GC_THRESH2] == need_a
            assert _holders(GC_THRESH2) == {a.root: need_a}
            monkeypatch.setenv("LXCEXP_IT_RUN", "b")
            with started_pytest(pytester, b, *common, f"--ve-count={count_b}") as run_b:
                wait_for((flags / "b-up").exists, run_b, timeout=300, what="run B up")
                assert _values([GC_THRESH2])[GC_THRESH2] == need_b
                assert _holders(GC_THRESH2) == {a.root: need_a, b.root: need_b}
                (flags / "a-go").write_text("")
                out_a, _ = run_a.communicate(timeout=300)
                assert run_a.returncode == 0, out_a
                assert f"  {GC_THRESH2}: {before[GC_THRESH2]} -> {need_a}" in out_a, out_a
                assert "Takedown: nothing left behind" in out_a, out_a
                assert leftovers(a) == []
                # A is gone, B still runs: still raised, now held by B alone.
                assert run_b.poll() is None
                assert _settle(before | {GC_THRESH2: need_b}) == before | {GC_THRESH2: need_b}
                assert _holders(GC_THRESH2) == {b.root: need_b}
                (flags / "b-go").write_text("")
                out_b, _ = run_b.communicate(timeout=300)
                assert run_b.returncode == 0, out_b
                assert f"  {GC_THRESH2}: {need_a} -> {need_b}" in out_b, out_b
        # Both ended: every sysctl is the host's own again, and nobody holds any.
        assert _settle(before) == before
        assert not _holders(GC_THRESH2)
    finally:
        _put_back(before, [a.root, b.root])
