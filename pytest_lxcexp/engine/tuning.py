"""--ve-tune-host: raise the sysctls a run is short of, and put the old values back.

Several runs on different roots may tune the same host at once (simulated hosts, or two
users). So the host's original values and who needs what are kept host-wide, in
`/run/lxcexp/tuning.json` under an flock: each sysctl is raised to the highest need of
the runs holding it and put back to its original value only when the last holder
restores. /run is a tmpfs: a reboot forgets it together with the values it guards.

Each root also records what it holds in its state directory, so a takedown after a
crash (`lxcexp takedown`) still gives its share back.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator

from .config import ExperimentConfig
from .host import requirements
from .storage import Layout, lock_file, write_new

TUNED_FILE = "tuned.json"
HOST_STATE_DIR = "/run/lxcexp"


def tuned_path(root: str) -> str:
    return os.path.join(Layout(root).state_dir, TUNED_FILE)


def _host_file(state_dir: str) -> str:
    return os.path.join(state_dir, "tuning.json")


def _read_sysctl(path: str) -> int:
    with open(path) as handle:
        return int(handle.read().split()[0])


def _write(path: str, value: int) -> None:
    # Only sysctls under /proc/sys, as tune() found them: never a path from elsewhere.
    if not path.startswith("/proc/sys/") or ".." in path:
        raise ValueError(f"not a sysctl: {path}")
    with open(path, "w") as handle:
        handle.write(str(value))


@contextlib.contextmanager
def _host_registry(state_dir: str) -> Iterator[dict]:
    """{sysctl: {"original": N, "holders": {root: need}}}, locked host-wide, written back on exit."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    handle = lock_file(os.path.join(state_dir, "tuning.lock"), fcntl.LOCK_EX)
    assert handle is not None  # a blocking lock
    try:
        try:
            with open(_host_file(state_dir)) as source:
                registry = json.load(source)
        except (FileNotFoundError, ValueError):
            registry = {}
        yield registry
        write_new(_host_file(state_dir), json.dumps(registry, indent=1))
    finally:
        handle.close()


def tune(config: ExperimentConfig, state_dir: str = HOST_STATE_DIR) -> dict[str, tuple[int, int]]:
    """Raise every short sysctl; returns {path: (old, new)} (also saved in the root)."""
    needs = {item.sysctl: item.need for item in requirements(config) if item.short and item.sysctl}
    if not needs:
        return {}
    changes: dict[str, tuple[int, int]] = {}
    with _host_registry(state_dir) as registry:
        # The root's own record first: a crash after this still gives its share back.
        write_new(tuned_path(config.root), json.dumps(sorted(needs)))
        for sysctl, need in needs.items():
            entry = registry.setdefault(sysctl, {"original": _read_sysctl(sysctl), "holders": {}})
            entry["holders"][config.root] = need
            have = _read_sysctl(sysctl)
            if have < need:
                _write(sysctl, need)
            changes[sysctl] = (have, max(have, need))
    return changes


def restore(root: str, state_dir: str = HOST_STATE_DIR) -> dict[str, int]:
    """Give back what tune() raised for this root; a sysctl returns to its original value when
    no other root holds it any more. Returns {path: value written}."""
    path = tuned_path(root)
    try:
        with open(path) as handle:
            held = json.load(handle)
    except FileNotFoundError:
        return {}
    written: dict[str, int] = {}
    with _host_registry(state_dir) as registry:
        if isinstance(held, dict):
            # A root tuned by an earlier version: {sysctl: old value}, no host-wide registry.
            for sysctl, old in held.items():
                if sysctl not in registry:
                    _write(sysctl, int(old))
                    written[sysctl] = int(old)
            held = list(held)
        for sysctl in held:
            entry = registry.get(sysctl)
            if entry is None:
                continue
            entry["holders"].pop(root, None)
            if not entry["holders"]:
                _write(sysctl, int(entry["original"]))
                written[sysctl] = int(entry["original"])
                del registry[sysctl]
    os.unlink(path)
    return written
