"""The root and the files beside it, when the root sits where others can write (/tmp)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from pytest_lxcexp.engine import shared, storage
from pytest_lxcexp.engine.config import ConfigError, parse_root


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("/tmp/a:b", "contains ':': it separates the parts of LXC's overlay rootfs spec"),
        ("/tmp/a\nb", "contains '\\n': a space or control character"),
        ("/tmp/a,b", "contains ',': it separates overlayfs mount options"),
        ("/tmp/a b", "contains ' '"),
    ],
)
def test_a_root_that_breaks_lxc_config_is_a_usage_error(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match="--ve-root") as error:
        parse_root("--ve-root", text)
    assert words in str(error.value)


def test_a_root_in_a_world_writable_directory_must_be_sticky(tmp_path: Path) -> None:
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o777)
    with pytest.raises(ConfigError, match="writable by everyone and not sticky"):
        storage.check_root(str(open_dir / "exp"))
    open_dir.chmod(0o1777)  # like /tmp
    assert storage.check_root(str(open_dir / "exp")) is None


def test_a_root_someone_else_made_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    root.mkdir()
    os.chown(root, 65534, 65534)
    with pytest.raises(ConfigError, match="belongs to uid 65534, not to us"):
        storage.check_root(str(root))


def test_a_lock_file_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    root = str(tmp_path / "exp")
    target = tmp_path / "precious"
    target.write_text("keep me")
    os.link(target, storage.lock_path(root))  # a hard link someone planted: we would truncate it
    with pytest.raises(storage.RootError, match="not a file of ours"):
        storage.RunLock(root).acquire()
    assert target.read_text() == "keep me"
    os.unlink(storage.lock_path(root))
    os.symlink(target, storage.lock_path(root))
    with pytest.raises(storage.RootError, match="is a symlink, not a file of ours"):
        storage.RunLock(root).acquire()
    assert target.read_text() == "keep me"


def test_a_lock_whose_file_was_replaced_is_taken_again_on_the_new_file(tmp_path: Path) -> None:
    path = str(tmp_path / "x.lock")
    handle = storage.lock_file(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert handle is not None
    os.unlink(path)  # a releasing holder unlinks: the old inode is no longer the lock
    again = storage.lock_file(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert again is not None
    assert os.fstat(again.fileno()).st_ino == os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
    handle.close()
    again.close()


def test_a_share_file_left_by_a_crashed_run_is_stale(tmp_path: Path) -> None:
    root = str(tmp_path / "exp")
    Path(shared.share_path(root)).write_text('{"run": "crashed", "members": 3, "ready": true, "host": ""}')
    os.chmod(shared.share_path(root), 0o600)
    member = shared.SharedRun(root, "new-run")
    assert member.join().first  # nobody held the run lock: not "another run is using this root"
    member.setup_done()
    assert member.leave()
    member.finish()
    member.cleanup_files()
    files = (shared.share_path(root), shared.gate_path(root), storage.lock_path(root))
    assert not any(os.path.exists(path) for path in files)


def test_a_live_run_still_refuses_another(tmp_path: Path) -> None:
    root = str(tmp_path / "exp")
    first = shared.SharedRun(root, "run-a")
    assert first.join().first
    first.setup_done()
    other = shared.SharedRun(root, "run-b")
    with pytest.raises(storage.RootError, match="another lxcexp run \\(run-a\\)"):
        other.join()
    second = shared.SharedRun(root, "run-a")
    assert not second.join().first
    assert not second.leave()
    second.finish()
    assert first.leave()
    first.finish()


def test_state_files_are_written_fresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    os.symlink(victim, f"{path}.{os.getpid()}.tmp")  # a planted temp name is removed, never followed
    storage.write_new(str(path), "{}")
    assert path.read_text() == "{}" and victim.read_text() == "untouched"


def test_a_half_written_last_start_line_is_skipped(tmp_path: Path) -> None:
    from pytest_lxcexp.engine.fleet import load_starts

    layout = storage.Layout(str(tmp_path))
    Path(layout.state_dir).mkdir()
    Path(layout.starts_log).write_text(
        '{"index": 1, "ok": true, "latency": 0.1, "started_at": 1.0, "pid": 5, "error": null}\n'
        '{"index": 2, "ok": tr\n'  # cut by a crash
        '{"index": 3, "ok": true, "latency": 0.1, "started_at": 1.0, "pid": 7, "error": null}\n'
        '{"index": 4, "ok": true, "lat'  # a worker still writing
    )
    assert sorted(load_starts(layout)) == [1, 3]
