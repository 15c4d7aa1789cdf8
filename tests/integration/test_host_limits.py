"""Preflight refuses what the host cannot hold; --ve-tune-host raises limits and restores them."""

from __future__ import annotations

import contextlib
import pathlib

import pytest
from integration_helpers import PING_SUITE, run_pytest

from pytest_lxcexp.engine import network

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
