"""What a VE may do and see, and what the tool may touch: capabilities dropped, the network
namespace holding only lo and eth0, --ve-unprivileged in user namespaces, state files
root's only, and symlinks in the root never followed out of it."""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess

import pytest
from integration_helpers import PING_SUITE, run_pytest, run_to_completion, running_experiment

INSPECT_SUITE = (
    PING_SUITE
    + '''

import os, stat, subprocess

from pytest_lxcexp.engine.storage import lock_path

CAP_BITS = {"net_admin": 12, "net_raw": 13, "sys_module": 16, "sys_rawio": 17, "sys_ptrace": 19, "sys_admin": 21,
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
            "wake_alarm", "block_suspend", "audit_control", "sys_admin", "mknod", "sys_ptrace"}
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


# -- attacks from inside a VE (issue 12) ---------------------------------------------------

# Each attack logs "attack-ok NAME" or "attack-refused NAME" (and the tool's own error
# above it). A sysctl is written with a value other than the one it holds, so that a write
# that got through shows on the host. @MAJOR@:@MINOR@ is the host's root disk.
TRY = r"""try() { name=$1; shift; if "$@"; then echo "attack-ok $name"; else echo "attack-refused $name"; fi; }
"""
DISK_ATTACKS = (
    TRY
    + r"""
try mknod-disk mknod /tmp/disk b @MAJOR@ @MINOR@
try read-disk sh -c "head -c 512 /tmp/disk | wc -c | grep -qx 512"
grep -E '^(Cap|Seccomp)' /proc/self/status
/usr/local/bin/lxcexp-syscalls
exit 0
"""
)
ATTACKS = (
    TRY
    + r"""
v=$(cat /proc/sys/vm/swappiness)
try remount-proc-sys mount -o remount,rw /proc/sys
try write-sysctl sh -c "echo $((v + 1)) > /proc/sys/vm/swappiness"
try remount-sys mount -o remount,rw /sys
mkdir -p /tmp/fresh
try fresh-proc mount -t proc proc /tmp/fresh
try fresh-proc-sysctl sh -c "echo $((v + 1)) > /tmp/fresh/sys/vm/swappiness"
try devtmpfs mount -t devtmpfs devtmpfs /tmp/fresh
"""
    + DISK_ATTACKS.removeprefix(TRY)
)
ATTACK_NAMES = {line.split()[1] for line in ATTACKS.splitlines() if line.startswith("try ")}
# Calls the seccomp policy refuses, with arguments the kernel itself would refuse with
# anything but EPERM (or, keyctl, allow): so EPERM inside a VE is the filter's answer.
SYSCALL_PROBE = r"""
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
static void probe(const char *name, long number, long a, long b, long c) {
    errno = 0;
    long rc = syscall(number, a, b, c, 0L, 0L);
    printf("syscall %s rc=%ld errno=%d\n", name, rc, rc < 0 ? errno : 0);
}
int main(void) {
    probe("kexec_load", SYS_kexec_load, 0, 0, 0);
    probe("open_by_handle_at", SYS_open_by_handle_at, -1, 0, 0);
    probe("init_module", SYS_init_module, 0, 0, 0);
    probe("finit_module", SYS_finit_module, -1, 0, 0);
    probe("delete_module", SYS_delete_module, 0, 0, 0);
    probe("keyctl", SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -4 /* the user keyring */, 0);
    return 0;
}
"""
PROBED = {"kexec_load", "open_by_handle_at", "init_module", "finit_module", "delete_module", "keyctl"}
EPERM = 1
WATCHED_SYSCTLS = ("vm/swappiness", "kernel/panic", "kernel/pid_max", "net/ipv4/ip_forward")
CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_MODULE, CAP_SYS_BOOT = 21, 27, 16, 22


def _host_root_disk() -> tuple[int, int]:
    """major, minor of the block device the host's / is mounted from."""
    source = subprocess.run(["findmnt", "-no", "SOURCE", "/"], capture_output=True, text=True, check=True)
    info = os.stat(source.stdout.strip())
    assert stat.S_ISBLK(info.st_mode), f"the host's / is not on a block device: {source.stdout}"
    return os.major(info.st_rdev), os.minor(info.st_rdev)


def _sysctls() -> dict[str, str]:
    values = {}
    for name in WATCHED_SYSCTLS:
        with open(f"/proc/sys/{name}") as handle:
            values[name] = handle.read()
    return values


@pytest.fixture(scope="module")
def syscall_probe(tmp_path_factory) -> str:  # noqa: ANN001
    """SYSCALL_PROBE built static (the VE's base has no C library of the host's)."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.c").write_text(SYSCALL_PROBE)
    built = subprocess.run(
        ["gcc", "-static", "-O2", "-o", str(folder / "probe"), str(folder / "probe.c")], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr  # make deps installs gcc and libc6-dev
    return str(folder / "probe")


def _syscall_errnos(output: str) -> dict[str, int]:
    found = {}
    for line in output.splitlines():
        if line.startswith("syscall "):
            _, name, rc, err = line.split()
            found[name] = int(err.removeprefix("errno=")) if int(rc.removeprefix("rc=")) < 0 else 0
    return found


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as handle:
        return dict(line.rstrip("\n").split(":\t", 1) for line in handle if ":\t" in line)


# Per VE: its log, its init's /proc status and its mount table.
Found = list[tuple[str, dict[str, str], str]]


def _attack_every_ve(names, probe: str, attacks: str = ATTACKS, **options: object) -> Found:  # noqa: ANN001
    """Run `attacks` in two VEs; per VE its log, its init's /proc status and its mount table."""
    on_host = _syscall_errnos(subprocess.run([probe], capture_output=True, text=True, check=True).stdout)
    # Root on the host: no call refused with EPERM (the kernel has them, or says ENOSYS, or
    # the arguments are bad), so EPERM in a VE can only be its seccomp filter.
    assert set(on_host) == PROBED and EPERM not in on_host.values(), on_host
    major, minor = _host_root_disk()
    script = attacks.replace("@MAJOR@", str(major)).replace("@MINOR@", str(minor))
    before = _sysctls()
    found = []
    try:
        with running_experiment(names, count=2, workload=f"cmd:{script}", **options) as experiment:
            # Into the base every VE's overlay lies over, before any VE starts.
            target = os.path.join(experiment.layout.base_rootfs, "usr/local/bin/lxcexp-syscalls")
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(probe, target)
            os.chmod(target, 0o755)
            for record in run_to_completion(experiment):
                with open(experiment.layout.ve_workload_log(record.index)) as handle:
                    log = handle.read()
                with open(f"/proc/{record.pid}/mountinfo") as handle:
                    mounts = handle.read()
                found.append((log, _status(record.pid), mounts))
    finally:
        after = _sysctls()
        for name, value in before.items():
            if after[name] != value:  # put the host back before failing
                with open(f"/proc/sys/{name}", "w") as handle:
                    handle.write(value)
    assert after == before, "a VE changed the host's sysctls"
    return found


def _mount_options(mountinfo: str, target: str) -> set[str]:
    for line in mountinfo.splitlines():
        fields = line.split()
        if fields[4] == target:
            return set(fields[5].split(","))
    raise AssertionError(f"{target} is not mounted in the VE:\n{mountinfo}")


def _assert_every_attack_refused(found: Found) -> None:
    for log, status, mounts in found:
        refused = {line.split()[1] for line in log.splitlines() if line.startswith("attack-refused ")}
        assert refused == ATTACK_NAMES, log
        assert "attack-ok" not in log, log
        # The tool's own words for why (busybox's mount and sh), logged by the VE.
        assert "permission denied" in log.lower() and "Read-only file system" in log, log
        # Seen from the host: LXC's seccomp filter on the VE's init, the capabilities gone
        # from its bounding set, /proc/sys and /sys still read-only, no proc or devtmpfs added.
        assert status["Seccomp"] == "2" and int(status["Seccomp_filters"]) >= 1, status
        assert _syscall_errnos(log) == dict.fromkeys(PROBED, EPERM), log
        bounding = int(status["CapBnd"], 16)
        for bit in (CAP_SYS_ADMIN, CAP_MKNOD, CAP_SYS_MODULE, CAP_SYS_BOOT):
            assert not bounding & (1 << bit), (bit, status["CapBnd"])
        assert "ro" in _mount_options(mounts, "/proc/sys") and "ro" in _mount_options(mounts, "/sys")
        assert "/tmp/fresh" not in mounts


def test_a_default_ve_cannot_touch_host_sysctls_sys_or_disks(clean_host, leftovers, syscall_probe):
    _assert_every_attack_refused(_attack_every_ve(clean_host, syscall_probe))
    assert leftovers(clean_host) == []


def test_an_unprivileged_ve_cannot_touch_host_sysctls_sys_or_disks(clean_host, leftovers, syscall_probe):
    _assert_every_attack_refused(_attack_every_ve(clean_host, syscall_probe, unprivileged=True))
    assert leftovers(clean_host) == []


def test_a_system_init_keeps_sys_admin_but_not_the_host_disk_or_kernel_modules(clean_host, leftovers, syscall_probe):
    """busybox's own init (--ve-init=system) keeps CAP_SYS_ADMIN and CAP_MKNOD, as systemd
    needs them: LXC's device allow-list and seccomp policy are what stand between it and
    the host's disk and kernel (privileged; the README says what it can still do)."""
    for log, status, _ in _attack_every_ve(clean_host, syscall_probe, DISK_ATTACKS, init="system", unprivileged=False):
        assert "attack-refused read-disk" in log and "attack-ok read-disk" not in log, log
        assert "Operation not permitted" in log, log  # the devices cgroup's refusal of the open
        assert status["Seccomp"] == "2", status
        assert _syscall_errnos(log) == dict.fromkeys(PROBED, EPERM), log
        bounding = int(status["CapBnd"], 16)
        assert not bounding & (1 << CAP_SYS_MODULE) and not bounding & (1 << CAP_SYS_BOOT), status["CapBnd"]
    assert leftovers(clean_host) == []
