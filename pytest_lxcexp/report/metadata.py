"""What ran where: tool and liblxc versions, the liblxc actually loaded, the host.

Someone testing a new liblxc build through LD_LIBRARY_PATH must be able to see in the
report which library ran, so the path comes from this process's own memory map,
not from what the package manager believes is installed.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import socket
import subprocess
from importlib import metadata as importlib_metadata
from typing import Any

from .. import __version__

TOOL_NAME = "pytest-lxcexp"


def loaded_library(fragment: str, maps_path: str = "/proc/self/maps") -> str | None:
    """Path of the first mapped file whose name contains `fragment` (e.g. 'liblxc.so')."""
    try:
        with open(maps_path) as handle:
            for line in handle:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and fragment in os.path.basename(parts[5].strip()):
                    return parts[5].strip()
    except OSError:
        return None
    return None


def lxc_info() -> dict[str, Any]:
    """liblxc's own version string (asked of the loaded library), its path, python3-lxc's version."""
    try:
        import lxc  # noqa: PLC0415 - loading liblxc is the point: its path shows in /proc/self/maps
    except ImportError as error:
        return {"version": None, "library": None, "python_lxc": None, "error": str(error)}
    try:
        python_lxc = importlib_metadata.version("python3-lxc")
    except importlib_metadata.PackageNotFoundError:
        python_lxc = None
    return {
        "version": getattr(lxc, "version", None),
        "library": loaded_library("liblxc.so"),
        "python_lxc": python_lxc,
        "ld_library_path": os.environ.get("LD_LIBRARY_PATH") or None,
        **lxc_start_info(),
    }


def lxc_start_info() -> dict[str, str | None]:
    """The first lxc-start on the tool's PATH and the liblxc version it reports. The VEs are
    started by their --ve-lxc build's own lxc-start (metadata `builds`), not necessarily this one."""
    path = shutil.which("lxc-start")
    version = None
    if path:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            version = done.stdout.strip() or None
    return {"lxc_start": path, "lxc_start_version": version}


def os_release(path: str = "/etc/os-release") -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key == "PRETTY_NAME":
                    return value.strip().strip('"')
    except OSError:
        return None
    return None


def cpu_model(path: str = "/proc/cpuinfo") -> str | None:
    try:
        with open(path) as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        return None
    return None


def meminfo(path: str = "/proc/meminfo") -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values: dict[str, int] = {}
    with open(path) as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                values[key] = int(fields[0]) * (1024 if len(fields) > 1 and fields[1] == "kB" else 1)
    return values


def host_info() -> dict[str, Any]:
    uname = platform.uname()
    try:
        memory_total = meminfo().get("MemTotal")
    except OSError:
        memory_total = None
    return {
        "hostname": socket.gethostname(),
        "kernel": {"release": uname.release, "version": uname.version, "machine": uname.machine},
        "distribution": os_release(),
        "cpu": {"model": cpu_model(), "count": os.cpu_count()},
        "memory_total": memory_total,
    }


def collect(options: dict[str, Any], started_at: float, ended_at: float, pytest_version: str) -> dict[str, Any]:
    """Everything the results file says about the run's software and host."""
    return {
        "tool": {"name": TOOL_NAME, "version": __version__},
        "lxc": lxc_info(),
        **host_info(),
        "python": platform.python_version(),
        "pytest": pytest_version,
        "options": options,
        "started_at": started_at,
        "ended_at": ended_at,
    }
