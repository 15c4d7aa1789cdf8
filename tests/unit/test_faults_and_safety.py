"""Without the host: host limits named from error texts, VE files read without following
symlinks, the run lock's probe, undoing a half-made root, and root's subordinate ids."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from pytest_lxcexp.engine import faults, storage, userns
from pytest_lxcexp.engine.config import ConfigError
from pytest_lxcexp.engine.safefs import open_beneath, read_ve_text
from pytest_lxcexp.engine.workload import log_tail, read_log


def host_shows_it(limit: faults.HostLimit) -> bool:
    return True


# -- host limits ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("lxc ve3 20261127 ERROR start - start.c:1 - Resource temporarily unavailable - Failed to clone", "EAGAIN"),
        ("/sbin/lxcexp-workload: line 5: can't fork: Resource temporarily unavailable", "out of processes"),
        ("lxc ve9 ERROR network - network.c:1 - Exchange full - Failed to attach veth to bridge", "1023 ports"),
        ("ERROR conf - Too many open files - Failed to open", "EMFILE"),
        ("ERROR conf - Too many open files in system - Failed to open", "fs.file-max"),
        ("ERROR start - Disk quota exceeded - Failed to create session keyring", "kernel.keys.root_maxkeys"),
        ("ERROR start - Cannot allocate memory - Failed to clone", "ENOMEM"),
        ("ERROR terminal - No space left on device - Failed to open ptmx for the console", "kernel.pty.max"),
        ("ERROR utils - No space left on device - Failed to write", "ENOSPC"),
    ],
)
def test_host_limit_is_named(text: str, words: str, tmp_path: Path) -> None:
    found = faults.host_limit(text, str(tmp_path))  # tmp_path is not full: ENOSPC is not the tmpfs
    assert found is not None and words in found and found.startswith("host limit: ")


def test_no_host_limit_in_an_ordinary_error() -> None:
    assert faults.host_limit("ERROR overlay - No such file or directory - Failed to mount") is None


def test_enospc_on_a_full_tmpfs_names_the_tmpfs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "tmpfs_full", lambda root: root == "/exp")
    assert faults.host_limit("No space left on device", "/exp") == (
        "host limit: the tmpfs at /exp is full (ENOSPC; raise --ve-tmpfs-size)"
    )


def test_ve_fault_reads_the_first_lxc_error_then_the_workload(tmp_path: Path) -> None:
    lxc_log = tmp_path / "lxc.log"
    lxc_log.write_text(
        "lxc ve1 1 WARN x - y - harmless\n"
        "lxc ve1 2 ERROR start - start.c:1 - Resource temporarily unavailable - Failed to fork\n"
        "lxc ve1 3 ERROR start - start.c:2 - No such file or directory - a consequence\n"
    )
    log = tmp_path / "delta0" / "var" / "log" / "lxcexp" / "workload.log"
    log.parent.mkdir(parents=True)
    log.write_text("lxcexp-begin 1 ve1\nPING 127.0.0.1 (127.0.0.1): 56 data bytes\n64 bytes from 127.0.0.1: seq=0\n")
    assert "out of processes" in (
        faults.ve_fault(str(tmp_path), str(lxc_log), str(log), host_agrees=host_shows_it) or ""
    )
    lxc_log.write_text("")
    assert faults.ve_fault(str(tmp_path), str(lxc_log), str(log), host_agrees=host_shows_it) is None
    log.write_text("lxcexp-begin 1 ve1\nsh: can't fork: Resource temporarily unavailable\n")
    assert "out of processes" in (
        faults.ve_fault(str(tmp_path), str(lxc_log), str(log), host_agrees=host_shows_it) or ""
    )


def test_full_tmpfs_watch_gives_up_only_when_logs_stop_growing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    log = tmp_path / "log"
    log.write_text("a")
    full = {"now": False}
    monkeypatch.setattr(faults, "tmpfs_full", lambda root: full["now"])
    watch = faults.FullTmpfsWatch(str(tmp_path), patience=5)
    assert not watch.hopeless([str(log)], 0)
    full["now"] = True
    assert not watch.hopeless([str(log)], 1)  # first look at a full tmpfs
    assert not watch.hopeless([str(log)], 4)
    log.write_text("ab")  # still growing (inside an allocated page)
    assert not watch.hopeless([str(log)], 5)
    assert not watch.hopeless([str(log)], 9)
    assert watch.hopeless([str(log)], 10.5)
    assert watch.seen_full


# -- files written by VEs -------------------------------------------------------------


@pytest.fixture
def ve_upper(tmp_path: Path) -> Path:
    upper = tmp_path / "ve1" / "delta0"
    (upper / "var" / "log" / "lxcexp").mkdir(parents=True)
    return upper


def test_a_symlinked_log_is_not_followed(ve_upper: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:$6$hash\n")
    log = ve_upper / "var" / "log" / "lxcexp" / "workload.log"
    log.symlink_to(secret)
    assert read_ve_text(str(log)) is None
    parsed = read_log(str(log))
    assert parsed.refused == "a symlink" and parsed.pings == 0 and not parsed.finished
    assert log_tail(str(log)) == "(not read: a symlink)"


def test_a_symlinked_directory_on_the_way_is_not_followed(ve_upper: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "log" / "lxcexp"
    outside.mkdir(parents=True)
    (outside / "workload.log").write_text("lxcexp-begin 1 x\n")
    (ve_upper / "var" / "log").rename(tmp_path / "moved")
    (ve_upper / "var" / "log").symlink_to(tmp_path / "outside" / "log")
    assert read_ve_text(str(ve_upper / "var" / "log" / "lxcexp" / "workload.log")) is None


def test_a_plain_log_is_read(ve_upper: Path) -> None:
    log = ve_upper / "var" / "log" / "lxcexp" / "workload.log"
    log.write_text("lxcexp-begin 1 ve1\n64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.1 ms\nlxcexp-end 2 rc=0\n")
    parsed = read_log(str(log))
    assert parsed.present and parsed.pings == 1 and parsed.finished
    assert read_ve_text(str(log), limit=11) == "end 2 rc=0\n"


def test_open_beneath_refuses_dotdot(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        open_beneath(str(tmp_path), "../etc/passwd")


# -- the run lock's probe -------------------------------------------------------------


def test_lock_holder_probe_creates_nothing_and_sees_a_holder(tmp_path: Path) -> None:
    root = str(tmp_path / "exp")
    lock = storage.RunLock(root)
    assert lock.holder() is None
    assert not os.path.exists(storage.lock_path(root))
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child holds the lock until killed
        held = storage.RunLock(root)
        held.acquire()
        os.write(writer, b"x")
        time.sleep(30)
        os._exit(0)
    try:
        os.read(reader, 1)
        assert lock.holder() == f"pid {pid}"
        with pytest.raises(storage.RootError, match=f"pid {pid}"):
            storage.RunLock(root).acquire()
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    # A holder killed outright leaves the file, but not the lock: the next run may go.
    assert os.path.exists(storage.lock_path(root))
    assert lock.holder() is None
    lock.acquire()
    assert oct(os.stat(storage.lock_path(root)).st_mode & 0o777) == "0o600"
    lock.release()
    assert not os.path.exists(storage.lock_path(root))


# -- undoing a root cut short before its marker -------------------------------------


def test_undo_root_removes_only_an_empty_directory_we_made(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    root.mkdir()
    storage.undo_root(str(root), made_dir=False)
    assert root.is_dir()  # not ours to remove
    (root / "file").write_text("x")
    storage.undo_root(str(root), made_dir=True)
    assert root.is_dir()  # not empty
    (root / "file").unlink()
    storage.undo_root(str(root), made_dir=True)
    assert not root.exists()


# -- subordinate ids ------------------------------------------------------------------


def test_root_id_map_reads_roots_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subuid, subgid = tmp_path / "subuid", tmp_path / "subgid"
    subuid.write_text("alice:100000:65536\nroot:200000:10\nroot:300000:65536\n")
    subgid.write_text("0:400000:131072\n")
    monkeypatch.setattr(userns, "SUBUID", str(subuid))
    monkeypatch.setattr(userns, "SUBGID", str(subgid))
    idmap = userns.root_id_map()
    assert idmap == userns.IdMap(uid_start=300000, gid_start=400000, count=65536)
    assert idmap.config_lines() == ["lxc.idmap = u 0 300000 65536", "lxc.idmap = g 0 400000 65536"]


def test_root_id_map_missing_is_a_usage_error_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\n")
    monkeypatch.setattr(userns, "SUBUID", str(tmp_path / "subuid"))
    monkeypatch.setattr(userns, "SUBGID", str(tmp_path / "absent"))
    with pytest.raises(ConfigError) as raised:
        userns.root_id_map()
    assert raised.value.option == "--ve-unprivileged"
    assert "usermod --add-subuids" in raised.value.reason
    assert str(tmp_path / "subuid") in raised.value.reason and str(tmp_path / "absent") in raised.value.reason


def test_enospc_with_under_a_mebibyte_left_is_the_tmpfs(monkeypatch: pytest.MonkeyPatch) -> None:
    # A 64 KiB write fails while a few 4 KiB blocks are still free: not "full", but the tmpfs's.
    class Almost:
        f_bavail, f_frsize, f_blocks, f_files, f_favail = 3, 4096, 6144, 100, 50

    monkeypatch.setattr(faults.os, "statvfs", lambda root: Almost)
    assert not faults.tmpfs_full("/exp")
    assert faults.classify("dd: error writing '/fill': No space left on device", "/exp").name == "tmpfs"
    Almost.f_bavail = 1024  # 4 MiB free: another filesystem's ENOSPC
    assert faults.classify("dd: error writing '/fill': No space left on device", "/exp").name == "space"


def test_holders_names_a_process_working_under_a_path(tmp_path: Path) -> None:
    # What a takedown's failed unmount names (storage.umount on EBUSY): here, a sleep whose
    # working directory is below the path.
    inside = tmp_path / "root" / "ve1"
    inside.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "30"], cwd=inside)
    try:
        assert (sleeper.pid, "sleep") in storage.holders(str(tmp_path / "root"))
        assert sleeper.pid not in [pid for pid, _ in storage.holders(str(tmp_path / "elsewhere"))]
    finally:
        sleeper.kill()
        sleeper.wait()
