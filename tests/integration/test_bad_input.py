"""Every bad input is a one-line usage error naming the option and the reason, printed before
anything is created: run as root, on a suite that would set up an experiment if let through,
and checked on the host (no mount, no link, no root directory, no lock, no cgroup)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
from integration_helpers import PING_SUITE, run_pytest
from pyroute2 import IPRoute

from pytest_lxcexp.engine import cgroups
from pytest_lxcexp.engine.config import MAX_VE_COUNT
from pytest_lxcexp.engine.storage import lock_path, mounts

# (arguments, option named, reason); "{root}" is the test's own root, "{file}" a file, "{link}" a symlink.
BAD_INPUTS = [
    (["--ve-count=0"], "--ve-count", "is not a positive whole number"),
    (["--ve-count=-5"], "--ve-count", "is not a positive whole number"),
    (["--ve-count=ten"], "--ve-count", "is not a positive whole number"),
    (["--ve-count=1.5"], "--ve-count", "is not a positive whole number"),
    ([f"--ve-count={MAX_VE_COUNT + 1}", "--ve-network=none"], "--ve-count", "supported maximum"),
    (["--ve-batch=0"], "--ve-batch", "is not a positive whole number"),
    (["--ve-tmpfs-size=lots"], "--ve-tmpfs-size", "is not a size"),
    (["--ve-tmpfs-size=2X"], "--ve-tmpfs-size", "is not a size"),
    (["--ve-tmpfs-size=100K"], "--ve-tmpfs-size", "smaller than the minimum of 1M"),
    (["--ve-root=/"], "--ve-root", "is a system directory"),
    (["--ve-root=/etc"], "--ve-root", "is a system directory"),
    (["--ve-root=/usr/lib/lxcexp"], "--ve-root", "inside the system directory /usr"),
    (["--ve-root=relative/exp"], "--ve-root", "is not an absolute path"),
    (["--ve-root={file}"], "--ve-root", "exists and is not a directory"),
    (["--ve-root={link}"], "--ve-root", "is a symlink"),
    (["--ve-root={foreign}"], "--ve-root", "is not empty and carries no pytest-lxcexp marker"),
    (["--ve-root={root}/no/such/parent"], "--ve-root", "parent directory"),
    (["--ve-root={root}:x"], "--ve-root", "contains ':': it separates the parts of LXC's overlay rootfs spec"),
    (["--ve-root={root},x"], "--ve-root", "contains ',': it separates overlayfs mount options"),
    (["--ve-root={open}/exp"], "--ve-root", "is writable by everyone and not sticky"),
    (["--ve-bridge=vebridgenametoolong"], "--ve-bridge", "an interface name holds at most 15"),
    (["--ve-bridge=ve br"], "--ve-bridge", "characters an interface name cannot"),
    (["--ve-bridge=ve/br"], "--ve-bridge", "characters an interface name cannot"),
    (["--ve-bridge=br0"], "--ve-bridge", "must begin with 've'"),
    (["--ve-subnet=10.0.0.1/16"], "--ve-subnet", "is not an IPv4 subnet"),
    (["--ve-subnet=banana"], "--ve-subnet", "is not an IPv4 subnet"),
    (["--ve-subnet=10.99.0.0/31"], "--ve-subnet", "too small"),
    (["--ve-subnet=10.99.0.0/29", "--ve-count=10"], "--ve-subnet", "too few for a bridge and 10 VEs"),
    (["--ve-base=nosuchbase"], "--ve-base", "nosuchbase"),
    (["--ve-timeout=0"], "--ve-timeout", "must be more than zero"),
    (["--ve-timeout=-3"], "--ve-timeout", "must be more than zero"),
    (["--ve-timeout=soon"], "--ve-timeout", "is not a number of seconds"),
    (["--ve-ping-interval=0"], "--ve-ping-interval", "must be more than zero"),
    (["--ve-pings=0"], "--ve-pings", "is not a positive whole number"),
    (["--ve-start-delay=-1"], "--ve-start-delay", "must be zero or more"),
    (["--ve-network=wifi"], "--ve-network", "is not one of"),
    (["--ve-parallel=0"], "--ve-parallel", "is not a positive whole number"),
    (["--ve-repeat=0"], "--ve-repeat", "is not a positive whole number"),
    (["--ve-repeat=-2"], "--ve-repeat", "is not a positive whole number"),
    (["--ve-repeat=1.5"], "--ve-repeat", "is not a positive whole number"),
    (["--ve-repeat=twice"], "--ve-repeat", "is not a positive whole number"),
    (["--ve-repeat=2", "-n", "2"], "--ve-repeat", "rounds run in one process, not under pytest-xdist"),
    (["--ve-repeat=2", "--ve-keep"], "--ve-repeat", "each round takes its VEs down before the next"),
    (["--ve-repeat=2", "--ve-count=max"], "--ve-repeat", "a ramp runs once"),
    (["--ve-root={root} x"], "--ve-root", "contains ' '"),
    (["--ve-pids-max=lots"], "--ve-pids-max", "is not a positive whole number"),
    (["--ve-pids-max=each:5"], "--ve-pids-max", "is not N, max, ve:N or total:N"),
    (["--ve-pids-max=1"], "--ve-pids-max", "1 per VE is below the 2 processes one busybox/workload VE runs"),
    (["--ve-memory-max=each:2G"], "--ve-memory-max", "is not SIZE, max, total:SIZE, total:auto or total:max"),
    (["--ve-memory-max=total:lots"], "--ve-memory-max", "is not a size"),
]


def _host_view(names) -> dict:
    """What of this test's names exists on the host."""
    links = os.listdir("/sys/class/net")  # no netlink dump: a busy host interrupts those
    return {
        "mounts": [m["target"] for m in mounts() if m["target"].startswith(names.root)],
        "links": [name for name in links if name == names.bridge or name.startswith(f"ve{names.tag}")],
        "root": os.path.lexists(names.root),
        "lock": os.path.lexists(lock_path(names.root)),
        "cgroups": [
            h for h in cgroups.hierarchies() if os.path.isdir(os.path.join(h, cgroups.container_dir(names.tag)))
        ],
    }


UNTOUCHED = {"mounts": [], "links": [], "root": False, "lock": False, "cgroups": []}


@pytest.mark.parametrize(("args", "option", "reason"), BAD_INPUTS, ids=[" ".join(a) for a, _, _ in BAD_INPUTS])
def test_bad_input_is_a_usage_error_before_anything_is_made(pytester, clean_host, leftovers, args, option, reason):
    names = clean_host
    scratch = pytester.path / "scratch"
    scratch.mkdir()
    (scratch / "file").write_text("x")
    (scratch / "link").symlink_to(scratch)
    (scratch / "foreign").mkdir()
    (scratch / "foreign" / "precious.txt").write_text("not lxcexp's")
    (scratch / "open").mkdir()
    (scratch / "open").chmod(0o777)  # world-writable, not sticky: anyone could swap the root
    places = {
        "root": names.root,
        "file": scratch / "file",
        "link": scratch / "link",
        "foreign": scratch / "foreign",
        "open": scratch / "open",
    }
    args = [arg.format(**places) for arg in args]
    pytester.makepyfile(test_ping=PING_SUITE)
    # Our own root/bridge/subnet come first: a bad value given later on the command line wins.
    result = run_pytest(pytester, names, *args, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines + result.errlines
    naming = [line for line in result.errlines if line.startswith("ERROR: ")]
    assert len(naming) == 1, result.errlines
    assert naming[0].startswith(f"ERROR: {option}: ") and reason in naming[0], naming[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert _host_view(names) == UNTOUCHED
    assert (scratch / "foreign" / "precious.txt").read_text() == "not lxcexp's"
    assert leftovers(names) == []


def test_a_foreign_interface_with_the_bridge_name_is_refused_and_kept(pytester, clean_host, leftovers):
    names = clean_host
    with IPRoute() as ip:
        ip.link("add", ifname=names.bridge, kind="bridge")  # someone else's bridge: no alias of ours
    try:
        pytester.makepyfile(test_ping=PING_SUITE)
        result = run_pytest(pytester, names, "--ve-count=2", timeout=120)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(
            [f"ERROR: --ve-bridge: an interface named {names.bridge} already exists and is not ours"]
        )
        with IPRoute() as ip:
            assert ip.link_lookup(ifname=names.bridge), "the foreign interface was deleted"
        assert not os.path.lexists(names.root) and not os.path.lexists(lock_path(names.root))
    finally:
        with IPRoute() as ip:
            for index in ip.link_lookup(ifname=names.bridge):
                ip.link("del", index=index)
    assert leftovers(names) == []


def test_a_foreign_link_named_like_our_veths_is_refused_and_kept(pytester, clean_host, leftovers):
    names = clean_host
    stray = f"ve{names.tag}-1"
    with IPRoute() as ip:
        ip.link("add", ifname=stray, kind="bridge")
    try:
        pytester.makepyfile(test_ping=PING_SUITE)
        result = run_pytest(pytester, names, "--ve-count=2", timeout=120)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"ERROR: --ve-root: links named like this root's VEs exist ({stray})*"])
        with IPRoute() as ip:
            assert ip.link_lookup(ifname=stray), "the foreign link was deleted"
        assert not os.path.lexists(names.root)
    finally:
        with IPRoute() as ip:
            for index in ip.link_lookup(ifname=stray):
                ip.link("del", index=index)
    assert leftovers(names) == []


def test_without_root_a_clear_message_and_no_traceback(clean_host, leftovers):
    names = clean_host
    # A directory nobody can read (pytester's own is root's, 0700), removed afterwards.
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="lxcexp-nobody-", dir="/tmp"))
    try:
        os.chmod(workdir, 0o755)
        (workdir / "test_ping.py").write_text(PING_SUITE)
        os.chmod(workdir / "test_ping.py", 0o644)
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "pytest",
                "test_ping.py",
                *names.options(),
                "-p",
                "no:cacheprovider",
            ],
            cwd=workdir,
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(workdir)},
            timeout=120,
        )
    finally:
        shutil.rmtree(workdir)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert errors == [
        "ERROR: lxcexp: lxcexp must run as root: it mounts a tmpfs, creates bridges and starts containers"
    ], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert _host_view(names) == UNTOUCHED
    assert leftovers(names) == []


def test_cli_bad_input_is_one_line_and_touches_nothing(clean_host, leftovers, cli):
    names = clean_host
    for args, needle in [
        (["setup", "0", "--root", names.root], "lxcexp setup: N: 0 is not a positive whole number"),
        (["setup", "3", "--root", "/etc"], "lxcexp setup: --ve-root: /etc is a system directory"),
        (["setup", "3", "--root", names.root, "--bridge", "x" * 16], "lxcexp setup: --ve-bridge: "),
        (["setup", "3", "--root", names.root, "--tmpfs-size", "big"], "--ve-tmpfs-size: 'big' is not a size"),
        (["start", "1", "2", "--root", names.root], f"lxcexp start: --ve-root: {names.root} holds no experiment"),
        (["setup", "3", "--root", names.root, "--repeat", "2"], "lxcexp setup: --ve-repeat: setup sets one"),
        (["setup", "3", "--root", names.root, "--repeat", "0"], "--ve-repeat: 0 is not a positive whole number"),
    ]:
        done = cli(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().splitlines() == [done.stderr.strip()] and needle in done.stderr, done.stderr
        assert _host_view(names) == UNTOUCHED
    assert leftovers(names) == []


def test_cli_ranges_outside_the_count_are_refused(clean_host, leftovers, cli):
    names = clean_host
    setup = cli("setup", "3", "--root", names.root, "--network", "none", "--pings", "1", "--tmpfs-size", "32M")
    assert setup.returncode == 0, setup.stderr
    for args, needle in [
        (["start", "0"], "is not a positive whole number"),
        (["start", "4"], "lies outside the experiment's 3 VEs"),
        (["start", "2", "5"], "lies outside the experiment's 3 VEs"),
        (["start", "3", "2"], "range start 3 is after its end 2"),
        (["info", "1", "9"], "lies outside the experiment's 3 VEs"),
    ]:
        done = cli(*args, "--root", names.root)
        assert done.returncode == 2 and needle in done.stderr, (args, done.stderr)
    info = cli("info", "--root", names.root)
    states = [line.split()[1] for line in info.stdout.splitlines()[1:]]
    assert states == ["STOPPED"] * 3, info.stdout  # nothing was started by a refused range
    assert all(line.endswith(" never started") for line in info.stdout.splitlines()[1:]), info.stdout
    assert cli("takedown", "--root", names.root).returncode == 0
    assert leftovers(names) == []
