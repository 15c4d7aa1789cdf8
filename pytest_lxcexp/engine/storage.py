"""The experiment root: a tmpfs, an ownership marker, the overlay clone layout, disk usage."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import stat
import time
from dataclasses import dataclass
from typing import IO, Any

from .config import ConfigError, ExperimentConfig
from .signals import signals_deferred

MARKER_DIR = ".lxcexp"
MARKER_FILE = "marker.json"
TOOL_NAME = "pytest-lxcexp"
TMPFS_SOURCE = "lxcexp"
WORKLOAD_LOG = "var/log/lxcexp/workload.log"

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
MNT_DETACH = 2
MS_NOSUID = 2
MS_NODEV = 4
# The tmpfs root: others may pass through (an unprivileged VE's mapped root must reach its
# overlay) but not list or create; nothing set-uid and no device node works from it.
ROOT_MODE = 0o711


class RootError(RuntimeError):
    """The experiment root cannot be used; the message says why."""


@dataclass(frozen=True)
class Layout:
    """Where everything lives under one experiment root."""

    root: str

    @property
    def state_dir(self) -> str:
        return os.path.join(self.root, MARKER_DIR)

    @property
    def marker(self) -> str:
        return os.path.join(self.state_dir, MARKER_FILE)

    @property
    def starts_log(self) -> str:
        return os.path.join(self.state_dir, "starts.jsonl")

    @property
    def lxc_etc(self) -> str:
        """The /etc/lxc the starters show liblxc (starter.py)."""
        return os.path.join(self.state_dir, "lxc-etc")

    @property
    def seccomp_policy(self) -> str:
        """The seccomp policy every VE's config names (protections.py)."""
        return os.path.join(self.state_dir, "seccomp.policy")

    @property
    def base_rootfs(self) -> str:
        return os.path.join(self.root, "base", "rootfs")

    def ve_name(self, index: int) -> str:
        return f"ve{index}"

    def ve_dir(self, index: int) -> str:
        return os.path.join(self.root, self.ve_name(index))

    def ve_upper(self, index: int) -> str:
        return os.path.join(self.ve_dir(index), "delta0")

    def ve_config(self, index: int) -> str:
        return os.path.join(self.ve_dir(index), "config")

    def ve_lxc_log(self, index: int) -> str:
        return os.path.join(self.ve_dir(index), "lxc.log")

    def ve_workload_log(self, index: int) -> str:
        # Read through the overlay's upper directory: no need to enter the VE.
        return os.path.join(self.ve_upper(index), WORKLOAD_LOG)


def open_private(path: str, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open a file of ours (a lock, gate or share file) beside the root, which may sit in a
    directory others can write (/tmp): never through a symlink, and only a regular file of
    ours with one link (not a hard link someone made to a file they want us to truncate)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
    except OSError as error:
        if error.errno != errno.ELOOP:
            raise
        # Planted where we would write: named, never followed.
        raise RootError(f"{path} is a symlink, not a file of ours; remove it if it is not yours") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        raise RootError(
            f"{path} is not a file of ours (owner uid {info.st_uid}, {info.st_nlink} links, mode {info.st_mode:o}); "
            "remove it if no lxcexp run is using it"
        )
    os.set_blocking(fd, True)
    return fd


def write_new(path: str, text: str) -> None:
    """Write a state file whole: a fresh temp file (O_EXCL, no symlink followed), then renamed over."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # a crashed writer's (same pid, recycled)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def lock_path(root: str) -> str:
    """The run lock lives beside the root, so it outlives an unmount of the tmpfs."""
    parent, name = os.path.split(root.rstrip("/"))
    return os.path.join(parent, f".{name}.lxcexp.lock")


def gate_path(root: str) -> str:
    """pytest-xdist: the gate its workers pass one by one to join or leave a run (shared.py)."""
    return lock_path(root)[: -len(".lock")] + ".gate"


def share_path(root: str) -> str:
    """pytest-xdist: who shares the root's run, and whether its setup is done (shared.py)."""
    return lock_path(root)[: -len(".lock")] + ".share.json"


def is_mountpoint(path: str) -> bool:
    return any(entry["target"] == path for entry in mounts())


def mounts() -> list[dict[str, str]]:
    entries = []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            source, target, fstype, options = line.split()[:4]
            target = target.replace("\\040", " ")
            entries.append({"source": source, "target": target, "fstype": fstype, "options": options})
    return entries


def read_marker(root: str) -> dict[str, Any] | None:
    """Return our marker's content, or None if the root carries none (or not ours)."""
    path = Layout(root).marker
    try:
        if os.path.islink(path):
            return None
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("tool") == TOOL_NAME else None


def check_root(root: str, option: str = "--ve-root") -> dict[str, Any] | None:
    """Read-only check of the root on disk; returns the marker of a stale experiment of ours.

    Raises ConfigError when the root is a file, a symlink, or a non-empty directory that
    is not ours. Creates nothing.
    """
    parent = os.path.dirname(root)
    try:
        parent_info = os.stat(parent)
    except FileNotFoundError:
        raise ConfigError(option, f"{root}: its parent directory {parent} does not exist") from None
    if not stat.S_ISDIR(parent_info.st_mode):
        raise ConfigError(option, f"{root}: its parent {parent} is not a directory")
    if parent_info.st_mode & stat.S_IWOTH and not parent_info.st_mode & stat.S_ISVTX:
        # Anyone could swap the root (or the lock beside it) for a symlink between our checks.
        raise ConfigError(option, f"{root}: its parent {parent} is writable by everyone and not sticky")
    try:
        info = os.lstat(root)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        raise ConfigError(option, f"{root} is a symlink; give the real directory")
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(option, f"{root} exists and is not a directory")
    if info.st_uid != os.geteuid():
        # In a sticky /tmp another user may have made it first, to have us mount over their choice.
        raise ConfigError(option, f"{root} belongs to uid {info.st_uid}, not to us")
    marker = read_marker(root)
    if marker is not None:
        return marker
    if os.listdir(root):
        raise ConfigError(option, f"{root} is not empty and carries no {TOOL_NAME} marker: not ours to use")
    return None


def mount_tmpfs(root: str, size: int) -> None:
    """Mount our tmpfs (nosuid, nodev, 0711) on the root, a directory of ours that is no symlink.

    The root may sit in a sticky world-writable directory (/tmp): the mount goes through an
    O_NOFOLLOW fd of the directory checked to be ours, so nothing swapped in between the
    check and the mount (a symlink to /etc) is mounted over.
    """
    if is_mountpoint(root):
        raise RootError(f"{root} is already a mount point")
    with contextlib.suppress(FileExistsError):
        os.mkdir(root, ROOT_MODE)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise RootError(f"{root} is not a directory of ours ({os.strerror(error.errno or 0)})") from None
    try:
        owner = os.fstat(fd).st_uid
        if owner != os.geteuid():
            raise RootError(f"{root} belongs to uid {owner}, not to us")
        options = f"size={size},mode={ROOT_MODE:04o}".encode()
        target = f"/proc/self/fd/{fd}".encode()
        if _libc.mount(TMPFS_SOURCE.encode(), target, b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
            err = ctypes.get_errno()
            raise RootError(f"mounting a tmpfs on {root} failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def umount(path: str, lazy: bool = False, busy_timeout: float = 10.0) -> None:
    """Unmount, waiting out EBUSY: a stopped VE's mount namespace is released asynchronously."""
    deadline = time.monotonic() + busy_timeout
    flags = MNT_DETACH if lazy else 0
    while _libc.umount2(path.encode(), flags) != 0:
        err = ctypes.get_errno()
        if err in (errno.EINVAL, errno.ENOENT):  # not mounted (any more)
            return
        if err == errno.EBUSY and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        held = ""
        if err == errno.EBUSY:  # who, so a takedown that gives up says what kept the mount
            held = "; held by " + (", ".join(f"{pid} ({name})" for pid, name in holders(path)) or "no process seen")
        raise RootError(f"unmounting {path} failed: {os.strerror(err)}{held}")


HOLDERS_SHOWN = 10


def holders(path: str) -> list[tuple[int, str]]:
    """Processes whose working directory, root or an open file is under `path` (at most
    HOLDERS_SHOWN): what keeps a mount busy, as `fuser -m` would say."""
    prefix = path.rstrip("/") + "/"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        links = [f"/proc/{entry}/cwd", f"/proc/{entry}/root"]
        with contextlib.suppress(OSError):
            links += [f"/proc/{entry}/fd/{fd}" for fd in os.listdir(f"/proc/{entry}/fd")]
        for link in links:
            with contextlib.suppress(OSError):
                target = os.readlink(link)
                if target == path or target.startswith(prefix):
                    with open(f"/proc/{entry}/comm") as handle:
                        found.append((int(entry), handle.read().strip()))
                    break
        if len(found) >= HOLDERS_SHOWN:
            break
    return found


def undo_root(root: str, made_dir: bool) -> None:
    """Undo a setup of the root cut short before its marker was written.

    The tmpfs check before mounting proved nothing was mounted at the root, so a tmpfs
    with our source name there now is the one we just mounted. The directory goes only
    if we made it and it is empty.
    """
    for entry in mounts():
        if entry["target"] == root and entry["fstype"] == "tmpfs" and entry["source"] == TMPFS_SOURCE:
            umount(root)
    if made_dir and os.path.isdir(root) and not os.path.islink(root) and not os.listdir(root):
        os.rmdir(root)


def write_marker(config: ExperimentConfig) -> None:
    layout = Layout(config.root)
    os.makedirs(layout.state_dir, mode=0o700, exist_ok=True)
    data = {
        "tool": TOOL_NAME,
        "tag": config.tag,
        "root": config.root,
        "pid": os.getpid(),
        "created": time.time(),
        "config": config.to_dict(),
    }
    write_new(layout.marker, json.dumps(data, indent=1))


def tmpfs_used_bytes(root: str) -> int:
    """Bytes in use on the root's filesystem (the tmpfs): what `du` of the whole root shows."""
    info = os.statvfs(root)
    return (info.f_blocks - info.f_bfree) * info.f_frsize


def human_size(size: float) -> str:
    """Like `du -h`: 138M, 1.2G."""
    for unit in ("", "K", "M", "G", "T"):
        if size < 1024 or unit == "T":
            if unit == "":
                return f"{int(size)}"
            return f"{size:.1f}{unit}" if size < 10 else f"{size:.0f}{unit}"
        size /= 1024
    return str(size)


def lock_file(path: str, operation: int) -> IO[str] | None:
    """flock() a lock file of ours (created if absent); None if LOCK_NB and someone holds it.

    A holder that releases unlinks the file: a process that opened the old file just
    before would "hold" an inode nobody else can see. So after flock the path must still
    name the locked inode, else the lock is taken again on the new file.
    """
    while True:
        handle = os.fdopen(open_private(path), "r+")
        try:
            fcntl.flock(handle, operation)
        except BlockingIOError:
            handle.close()
            return None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()


class RunLock:
    """An exclusive lock beside the root: a second run on the same root refuses."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = lock_path(root)
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        # Ctrl-C waits for the few syscalls below: cut between them, a lock file would be
        # left beside the root with nobody to remove it.
        with signals_deferred():
            self._acquire()

    def _acquire(self) -> None:
        handle = lock_file(self.path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if handle is None:
            try:
                with os.fdopen(open_private(self.path, os.O_RDONLY)) as held:
                    owner = held.read().strip() or "another process"
            except OSError:
                owner = "another process"
            raise RootError(f"another lxcexp run (pid {owner}) is using this root; wait for it to end")
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def holder(self) -> str | None:
        """Who holds the lock now ("pid N"), or None; creates nothing (a read-only probe)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None  # absent, or unreadable (not root): acquire() will tell
        with os.fdopen(fd) as handle:
            try:
                # Shared: probing never blocks a holder; fails while someone holds it exclusively.
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f"pid {handle.read().strip() or '?'}"
            fcntl.flock(handle, fcntl.LOCK_UN)
        return None

    def release(self) -> None:
        if self._handle is None:
            return
        # Held exclusively, so no xdist run lives here: its gate and share files are a crashed run's.
        for path in (gate_path(self.root), share_path(self.root), self.path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._handle.close()
        self._handle = None
