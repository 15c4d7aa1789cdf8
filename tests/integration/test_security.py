"""What a VE may do and see, and what the tool may touch: capabilities dropped, the network
namespace holding only lo and eth0, --ve-unprivileged in user namespaces, state files
root's only, and symlinks in the root never followed out of it."""

from __future__ import annotations

import pathlib

from integration_helpers import PING_SUITE, run_pytest

INSPECT_SUITE = (
    PING_SUITE
    + '''

import os, stat, subprocess

from pytest_lxcexp.engine.storage import lock_path

CAP_BITS = {"net_admin": 12, "net_raw": 13, "sys_module": 16, "sys_rawio": 17, "sys_ptrace": 19,
            "sys_boot": 22, "sys_time": 25, "mknod": 27, "audit_control": 30, "mac_override": 32,
            "mac_admin": 33, "syslog": 34, "wake_alarm": 35, "block_suspend": 36}


def inside(experiment, *command):
    """Run a command inside ve1 (lxc-attach), as a user would look."""
    done = subprocess.run(["lxc-attach", "-P", experiment.config.root, "-n", "ve1", "--", *command],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_inside_a_ve(ve_experiment):
    status = inside(ve_experiment, "cat", "/proc/1/status")
    capeff = int(next(line for line in status.splitlines() if line.startswith("CapEff:")).split()[1], 16)
    held = {name for name, bit in CAP_BITS.items() if capeff & (1 << bit)}
    # What the workload needs stays; what would let a privileged VE touch the host goes.
    assert {"net_admin", "net_raw"} <= held, held
    gone = {"sys_module", "sys_rawio", "sys_time", "sys_boot", "mac_admin", "mac_override", "syslog",
            "wake_alarm", "block_suspend", "audit_control"}
    assert not held & gone, held & gone
    # Its network namespace: loopback and its own veth, nothing of the host's.
    dev = inside(ve_experiment, "cat", "/proc/net/dev")
    interfaces = {line.split(":")[0].strip() for line in dev.splitlines()[2:]}
    assert interfaces == {"lo", "eth0"}, interfaces


def test_state_files_are_roots_only(ve_experiment):
    state_dir = os.path.join(ve_experiment.config.root, ".lxcexp")
    assert stat.S_IMODE(os.lstat(state_dir).st_mode) == 0o700
    files = os.listdir(state_dir)
    assert "marker.json" in files and "starts.jsonl" in files, files
    for directory, subdirs, names in os.walk(state_dir):
        for name in subdirs:  # lxc-etc: the /etc/lxc the starters show liblxc
            info = os.lstat(os.path.join(directory, name))
            assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700, (name, oct(info.st_mode))
        for name in names:
            info = os.lstat(os.path.join(directory, name))
            assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600, (name, oct(info.st_mode))
    assert stat.S_IMODE(os.lstat(lock_path(ve_experiment.config.root)).st_mode) == 0o600
'''
)


def test_privileged_ves_lose_capabilities_and_see_only_their_own_links(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_inspect=INSPECT_SUITE)
    result = run_pytest(
        pytester, names, "--ve-count=2", "--ve-pings=3", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"
    )
    result.assert_outcomes(passed=4)
    assert leftovers(names) == []


UNPRIVILEGED_SUITE = (
    PING_SUITE
    + """

import subprocess

from pytest_lxcexp.engine.userns import root_id_map


def test_ves_run_in_user_namespaces(ve_experiment):
    idmap = root_id_map()
    for index in (1, 2):
        pid = ve_experiment.starts[index].pid
        with open(f"/proc/{pid}/uid_map") as handle:
            assert handle.read().split() == ["0", str(idmap.uid_start), str(idmap.count)]
        with open(f"/proc/{pid}/status") as handle:
            uids = next(line for line in handle if line.startswith("Uid:")).split()[1:]
        assert uids == [str(idmap.uid_start)] * 4  # root inside, unprivileged outside
    done = subprocess.run(["lxc-attach", "-P", ve_experiment.config.root, "-n", "ve1", "--", "id", "-u"],
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "0", done.stderr
"""
)


def test_unprivileged_ves_run_in_user_namespaces_and_complete(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_unprivileged=UNPRIVILEGED_SUITE)
    result = run_pytest(
        pytester,
        names,
        "--ve-count=2",
        "--ve-pings=3",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=64M",
        "--ve-unprivileged",
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["3-ping VEs       : 2", "Takedown: nothing left behind"])
    assert leftovers(names) == []


def test_symlinks_in_the_root_are_never_followed_out_of_it(clean_host, leftovers, cli, tmp_path):
    names = clean_host
    setup = cli("setup", "2", *names.cli_options(), "--pings", "1000", "--ping-interval", "0.2", "--tmpfs-size", "32M")
    assert setup.returncode == 0, setup.stderr
    assert cli("start", "--root", names.root).returncode == 0
    # Outside the root: a directory that looks like a VE, and a file a log could point at.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config").write_text("lxc.uts.name = not-ours\n")
    (outside / "precious").write_text("keep me")
    secret_log = "lxcexp-begin 1 x\n" + "64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.1 ms\n" * 99
    (outside / "secret").write_text(secret_log)
    root = pathlib.Path(names.root)
    (root / "ve7").symlink_to(outside)  # a VE-looking symlink: takedown must not follow it
    (root / "escape").symlink_to(outside)
    # ve1's log, swapped (as a VE could, from inside) for a symlink to a file outside.
    log = root / "ve1" / "delta0" / "var" / "log" / "lxcexp" / "workload.log"
    log.unlink()
    log.symlink_to(outside / "secret")
    (root / "ve2" / "delta0" / "var" / "log" / "lxcexp").rename(root / "ve2" / "delta0" / "var" / "log" / "moved")
    (root / "ve2" / "delta0" / "var" / "log" / "lxcexp").symlink_to(outside)

    info = cli("info", "--root", names.root)
    assert info.returncode == 0, info.stderr
    rows = {line.split()[0]: line for line in info.stdout.splitlines()[1:]}
    assert set(rows) == {"ve1", "ve2"}  # ve7 is a symlink, not a VE
    # The secret unread (no ping counted), and the VE failed naming what it put in its log's place.
    assert rows["ve1"].split()[3] == "0" and "its workload log is a symlink" in rows["ve1"], rows["ve1"]
    assert rows["ve2"].split()[3] == "0", rows["ve2"]
    assert "its workload log is reached through ve2/delta0/var/log/lxcexp, which is a symlink" in rows["ve2"]

    down = cli("takedown", "--root", names.root)
    assert down.returncode == 0, down.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["config", "precious", "secret"]
    assert (outside / "precious").read_text() == "keep me"
    assert (outside / "secret").read_text() == secret_log
    assert leftovers(names) == []
