"""Base root filesystems. `busybox`: built offline from the host's busybox-static, cached."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from .storage import Layout
from .workload import ENV_PATH, INIT_PATH, INIT_SCRIPT, WORKLOAD_VERSION, workload_env

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
ROOTFS_DIRS = ("bin", "sbin", "etc/lxcexp", "proc", "sys", "dev", "tmp", "run", "root", "var/log/lxcexp")


class BaseError(RuntimeError):
    """The base image cannot be built or found."""


def find_static_busybox() -> str:
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path) and _is_static(path):
            return path
    raise BaseError("no static busybox found (install the busybox-static package)")


def _is_static(path: str) -> bool:
    # A dynamic busybox would need the host's libraries inside the VE.
    with open(path, "rb") as handle:
        head = handle.read(4096)  # PT_INTERP, if any, sits near the start
    return b"ld-linux" not in head and b"ld-musl" not in head


def _cache_key(busybox: str) -> str:
    digest = hashlib.sha256()
    with open(busybox, "rb") as handle:
        digest.update(handle.read())
    digest.update(INIT_SCRIPT.encode())
    return f"busybox-v{WORKLOAD_VERSION}-{digest.hexdigest()[:12]}"


def build_busybox_rootfs(target: str, busybox: str) -> None:
    """Write a minimal root filesystem whose init is the workload."""
    for directory in ROOTFS_DIRS:
        os.makedirs(os.path.join(target, directory), exist_ok=True)
    os.chmod(os.path.join(target, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(target, "bin", "busybox"))
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet in ("busybox", "[[", "linuxrc") or "/" in applet:
            continue
        link = os.path.join(target, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    init = os.path.join(target, INIT_PATH.lstrip("/"))
    with open(init, "w") as handle:
        handle.write(INIT_SCRIPT)
    os.chmod(init, 0o755)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/hosts": "127.0.0.1 localhost\n",
        "etc/hostname": "ve\n",
    }
    for name, content in files.items():
        with open(os.path.join(target, name), "w") as handle:
            handle.write(content)


def cached_busybox_base(cache_dir: str, refresh: bool = False) -> str:
    """Return the cached rootfs directory, building it once (or again on refresh)."""
    busybox = find_static_busybox()
    final = os.path.join(cache_dir, _cache_key(busybox), "rootfs")
    if refresh and os.path.isdir(os.path.dirname(final)):
        shutil.rmtree(os.path.dirname(final))
    if os.path.isdir(final):
        return final
    building = final + f".building-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(os.path.dirname(final), mode=0o755, exist_ok=True)
    try:
        build_busybox_rootfs(building, busybox)
        os.rename(building, final)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return final


def install_base(layout: Layout, cache_dir: str, refresh: bool, pings: int, interval: float) -> str:
    """Copy the cached base into the experiment root and set the workload's parameters."""
    source = cached_busybox_base(cache_dir, refresh)
    target = layout.base_rootfs
    shutil.copytree(source, target, symlinks=True)
    with open(os.path.join(target, ENV_PATH), "w") as handle:
        handle.write(workload_env(pings, interval))
    return target
