"""Reading what VEs wrote without following their symlinks.

Everything under a VE's overlay upper directory (`ve<N>/delta0/...`) is the VE's to
write, and the host reads it as root: a log that is a symlink to /etc/shadow (or a
`var` that is a symlink to /) must never be followed, or the host would read, and copy
into reports, files outside the experiment. Kept free of other engine imports.
"""

from __future__ import annotations

import contextlib
import errno
import os

UPPER_DIR = "delta0"


def open_beneath(top: str, relative: str, flags: int = os.O_RDONLY) -> int:
    """Open top/relative, refusing a symlink in any component below `top` (ELOOP/ENOTDIR)."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EINVAL, f"not a path beneath {top}", relative)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=fd)
    finally:
        os.close(fd)


def open_ve_file(path: str, flags: int = os.O_RDONLY) -> int:
    """Open a file the host reads from a VE: no symlink followed below the VE's upper dir."""
    marker = f"/{UPPER_DIR}/"
    if marker in path:
        top, relative = path.split(marker, 1)
        return open_beneath(top + "/" + UPPER_DIR, relative, flags)
    return os.open(path, flags | os.O_NOFOLLOW)


def read_ve_text(path: str, limit: int | None = None) -> str | None:
    """The text of a VE's file (its last `limit` bytes), or None if absent or reached through a symlink."""
    try:
        fd = open_ve_file(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
            return None  # a symlink on the way: not ours to follow
        raise
    with os.fdopen(fd, "rb") as handle:
        if limit is not None:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - limit))
        return handle.read().decode(errors="replace")


def write_private_file(path: str, text: str) -> None:
    """A state file, root's only (0600), never written through a symlink, and only when its
    text differs. Written aside and renamed: xdist workers set up and start at once, and
    liblxc must never read it half-written."""
    with contextlib.suppress(OSError), open(path) as handle:
        if handle.read() == text:
            return
    aside = f"{path}.{os.getpid()}"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(aside, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(aside)
        raise
