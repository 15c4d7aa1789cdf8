"""Reading what VEs wrote without letting a VE block, flood or mislead the host.

Everything under a VE's directory (`ve<N>/`, its overlay upper `ve<N>/delta0/...`) may be
the VE's to write, and the host reads it as root, every half second. So a VE file is:

- reached from the experiment root (trusted: ours, checked not to be a symlink) one
  component at a time with `openat(..., O_NOFOLLOW)`: a log that is a symlink to
  /etc/shadow, or a `var` that is a symlink to /, is refused, never followed;
- opened `O_NONBLOCK`: a FIFO in place of a log must not park the host in `open()`;
- accepted only when `fstat` says it is a regular file (a FIFO, a character device, a
  directory or a socket is refused by name) of at most `MAX_VE_FILE_BYTES`;
- read with a bound, and closed on every path.

A refusal raises `UnsafeVEFile`, whose text says what was found; the caller fails *that
VE* with it and the run goes on. Kept free of other engine imports.
"""

from __future__ import annotations

import errno
import os
import re
import stat

UPPER_DIR = "delta0"
# More than any workload's log needs (180 pings are ~12 KiB): a larger VE file is refused.
MAX_VE_FILE_BYTES = 64 * 1024 * 1024
_VE_DIR = re.compile(r"^ve\d+$")
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeVEFile(Exception):
    """A VE file the host will not read: what was found in its place, in words."""

    def __init__(self, path: str, found: str) -> None:
        super().__init__(f"{path} is {found}")
        self.path = path
        self.found = found


def describe_mode(mode: int) -> str:
    """'a FIFO', 'a character device', ... for an lstat/fstat st_mode."""
    kinds = (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    )
    return next((words for test, words in kinds if test(mode)), f"a file of mode {mode:o}")


def split_ve_path(path: str) -> tuple[str, str]:
    """(trusted top, relative part) of a VE file's path: the top is the experiment root,
    the parent of the last `ve<N>` component; a path with none (a file handed in directly)
    trusts its own directory only."""
    parts = path.split("/")
    for position in range(len(parts) - 2, 0, -1):
        if _VE_DIR.match(parts[position]):
            return "/".join(parts[:position]) or "/", "/".join(parts[position:])
    return os.path.dirname(path) or ".", os.path.basename(path)


def _found_at(dir_fd: int, name: str) -> str:
    try:
        return describe_mode(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError as error:
        return f"unreadable ({os.strerror(error.errno or 0)})"


def _refusal(dir_fd: int, parts: list[str], position: int, error: OSError) -> str:
    """What was found where opening parts[position] failed, in words."""
    found = _found_at(dir_fd, parts[position])
    if position < len(parts) - 1:
        return f"reached through {'/'.join(parts[: position + 1])}, which is {found}"
    if found == "a regular file":
        return f"a regular file the host cannot open ({os.strerror(error.errno or 0)})"
    return found if found == "a symlink" else f"{found}, not a regular file"


def open_beneath(top: str, relative: str, flags: int = os.O_RDONLY) -> int:
    """Open top/relative, refusing a symlink in any component below `top` (ELOOP/ENOTDIR)."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EINVAL, f"not a path beneath {top}", relative)
    fd = os.open(top, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


def open_ve_file(path: str) -> int:
    """A read-only, non-blocking fd of a VE's regular file; FileNotFoundError if it is absent,
    UnsafeVEFile if anything else (a symlink on the way, a FIFO, a device, too large) is there."""
    top, relative = split_ve_path(path)
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeVEFile(path, "not a path beneath the experiment root")
    fd = os.open(top, _DIR_FLAGS)
    try:
        for position, part in enumerate(parts):
            last = position == len(parts) - 1
            try:
                next_fd = os.open(part, _OPEN_FLAGS if last else _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                raise
            except OSError as error:
                # ELOOP (a symlink), ENOTDIR (a file where a directory should be), ENXIO (a
                # socket), EACCES (a device node on our nodev tmpfs), ...
                raise UnsafeVEFile(path, _refusal(fd, parts, position, error)) from error
            os.close(fd)
            fd = next_fd
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeVEFile(path, f"{describe_mode(info.st_mode)}, not a regular file")
        if info.st_size > MAX_VE_FILE_BYTES:
            raise UnsafeVEFile(
                path,
                f"a file of {info.st_size / 2**20:.1f} MiB, more than the "
                f"{MAX_VE_FILE_BYTES // 2**20} MiB a VE's file may hold",
            )
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def read_at_most(fd: int, offset: int, limit: int) -> bytes:
    """Up to `limit` bytes from `offset` (pread: the fd's own position is not used)."""
    chunks: list[bytes] = []
    while limit > 0:
        chunk = os.pread(fd, min(limit, 1 << 20), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        limit -= len(chunk)
    return b"".join(chunks)


def read_ve_tail(path: str, limit: int = MAX_VE_FILE_BYTES) -> str | None:
    """The last `limit` bytes of a VE's file as text; None if it is absent.
    Raises UnsafeVEFile for anything that is not a plain regular file of a sane size."""
    try:
        fd = open_ve_file(path)
    except FileNotFoundError:
        return None
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - limit)
        return read_at_most(fd, start, min(size, limit)).decode(errors="replace")
    finally:
        os.close(fd)


def read_ve_text(path: str, limit: int | None = None) -> str | None:
    """The text of a VE's file (its last `limit` bytes), or None if absent or refused."""
    try:
        return read_ve_tail(path, MAX_VE_FILE_BYTES if limit is None else limit)
    except UnsafeVEFile:
        return None
