"""The fork server (forkstart.c): built once per source and liblxc header, cached, or None.

Starts go through it when it can be built (a C compiler and liblxc's header, Debian's
lxc-dev), through `lxc-start` per VE otherwise, or when LXCEXP_START_WITH=lxc-start asks
for the old way (benchmarks compare the two). Which one a run used is part of its host
fingerprint: monitors forked from the server share pages that lxc-start's each own, so
runs of the two ways are not compared.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forkstart.c")
HEADER = "/usr/include/lxc/lxccontainer.h"
CACHE_DIR = "/var/cache/lxcexp/forkstart"  # beside lxc-builds/ and vm-images/
CHOICE_VARIABLE = "LXCEXP_START_WITH"
FORK_SERVER = "forkstart"
LXC_START = "lxc-start"

_built: dict[str, str | None] = {}


def wanted() -> bool:
    return os.environ.get(CHOICE_VARIABLE, FORK_SERVER) != LXC_START


def _digest() -> str:
    hashed = hashlib.sha256()
    for path in (SOURCE, HEADER):
        with open(path, "rb") as handle:
            hashed.update(handle.read())
    return hashed.hexdigest()[:16]


def build(cache_dir: str = CACHE_DIR) -> str | None:
    """The fork server's path, compiled into `cache_dir` on first use; None if it cannot be built."""
    if cache_dir in _built:
        return _built[cache_dir]
    path = None
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler and os.path.exists(HEADER):
        path = os.path.join(cache_dir, f"forkstart-{_digest()}")
        if not os.access(path, os.X_OK):
            path = _compile(compiler, path)
    _built[cache_dir] = path
    return path


def _compile(compiler: str, path: str) -> str | None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Compiled beside its final name and renamed: concurrent sessions never run half a file.
        handle, scratch = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".forkstart-")
    except OSError:
        return None  # a cache directory we cannot write: lxc-start per VE
    os.close(handle)
    try:
        done = subprocess.run(
            [compiler, "-O2", "-o", scratch, SOURCE, "-llxc"], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            return None
        os.chmod(scratch, 0o755)
        os.replace(scratch, path)
        return path
    except (OSError, subprocess.TimeoutExpired):
        return None
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


def start_path() -> str:
    """How this host's starts would run: the fork server, or lxc-start per VE."""
    return FORK_SERVER if wanted() and build() else LXC_START


def starter_args() -> list[str]:
    """The starter's --forkstart argument, when starts go through the fork server."""
    path = build() if wanted() else None
    return ["--forkstart", path] if path else []
