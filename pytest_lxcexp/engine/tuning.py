"""--ve-tune-host: raise the sysctls a run is short of, and put the old values back.

The old values are written to the experiment's state directory before anything is
changed, so a takedown after a crash (`lxcexp takedown`) still restores them.
"""

from __future__ import annotations

import json
import os

from .config import ExperimentConfig
from .host import requirements
from .storage import Layout

TUNED_FILE = "tuned.json"


def tuned_path(root: str) -> str:
    return os.path.join(Layout(root).state_dir, TUNED_FILE)


def _write(path: str, value: int) -> None:
    with open(path, "w") as handle:
        handle.write(str(value))


def tune(config: ExperimentConfig) -> dict[str, tuple[int, int]]:
    """Raise every short sysctl; returns {path: (old, new)} (also saved in the root)."""
    changes = {item.sysctl: (item.have, item.need) for item in requirements(config) if item.short and item.sysctl}
    if not changes:
        return {}
    path = tuned_path(config.root)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({sysctl: old for sysctl, (old, _) in changes.items()}, handle)
    for sysctl, (_, new) in changes.items():
        _write(sysctl, new)
    return changes


def restore(root: str) -> dict[str, int]:
    """Put back what tune() changed for this root; returns {path: restored value}."""
    path = tuned_path(root)
    try:
        with open(path) as handle:
            saved = json.load(handle)
    except FileNotFoundError:
        return {}
    for sysctl, old in saved.items():
        # Only sysctls under /proc/sys, as written by tune(): never a path from elsewhere.
        if sysctl.startswith("/proc/sys/") and ".." not in sysctl:
            _write(sysctl, int(old))
    os.unlink(path)
    return saved
