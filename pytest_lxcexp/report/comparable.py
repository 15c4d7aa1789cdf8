"""Which earlier runs may this one be held against: the same host as VEs meet it, the same experiment.

A verdict compares per-VE samples of two runs; it means something only when nothing but
the thing under test differs. So a reference must match on the host fingerprint (kernel,
cgroup layout, the lxc.cgroup.use liblxc got, CPU count) and on the options that shape
the experiment (SHAPE_OPTIONS and the number of xdist workers). How VEs were started (the fork
server or lxc-start per VE, engine/forkstart.py) is part of the fingerprint: their monitors'
memory differs. `latest` is the newest
run that matches and was successful; a reference that does not match is a usage error
unless --ve-compare-force.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..engine import cgroups, forkstart
from .archive import RESULTS_FILE, list_runs
from .results import Results

SHAPE_OPTIONS = ("count", "base", "workload", "network", "cgroups", "parallel")
FINGERPRINT_KEYS = ("kernel", "cgroup_layout", "lxc_cgroup_use", "cpu_count", "start_path")


def host_fingerprint(ve_controllers: tuple[str, ...] | None) -> dict[str, Any]:
    """This host as a run's VEs meet it (stored as results.json's metadata.fingerprint)."""
    use = cgroups.effective_cgroup_use(ve_controllers)
    return {
        "kernel": os.uname().release,
        "cgroup_layout": cgroups.cgroup_layout(),
        # Sorted: liblxc reads it as a set; the order only follows /proc/self/cgroup's.
        "lxc_cgroup_use": ",".join(sorted(use.split(","))) if use else "all (liblxc's default)",
        "cpu_count": os.cpu_count(),
        "start_path": forkstart.start_path(),
    }


@dataclass(frozen=True)
class RunKey:
    """What two runs must share to be compared."""

    fingerprint: dict[str, Any] | None
    shape: dict[str, Any]


def shape_of(options: dict[str, Any], workers: int) -> dict[str, Any]:
    return {**{name: options.get(name) for name in SHAPE_OPTIONS}, "workers": workers}


def key_of(results: Results) -> RunKey:
    meta = results.get("metadata") or {}
    workers = (results.get("session") or {}).get("workers") or 1
    return RunKey(meta.get("fingerprint"), shape_of(meta.get("options") or {}, workers))


def mismatches(reference: RunKey, current: RunKey) -> list[str]:
    """Why `reference` cannot be compared with `current`, one reason per difference (none: comparable)."""
    reasons = []
    if reference.fingerprint is None:
        reasons.append("it has no host fingerprint (written by an older pytest-lxcexp)")
    elif current.fingerprint is None:
        # `lxcexp compare A B` with an old B: the check must not depend on which side is the old one.
        reasons.append("the run it is compared with has no host fingerprint (written by an older pytest-lxcexp)")
    else:
        reasons += [
            f"{key} {reference.fingerprint.get(key)!r} here {current.fingerprint.get(key)!r}"
            for key in FINGERPRINT_KEYS
            if reference.fingerprint.get(key) != current.fingerprint.get(key)
        ]
    reasons += [
        f"{name} {reference.shape.get(name)!r} here {current.shape.get(name)!r}"
        for name in current.shape
        if reference.shape.get(name) != current.shape.get(name)
    ]
    return reasons


def successful(results: Results) -> bool:
    """Exit status 0, not interrupted, every VE completed."""
    session = results.get("session") or {}
    summary = results.get("summary") or {}
    return (
        session.get("exitstatus") == 0
        and not session.get("interrupted")
        and bool(summary)
        and summary.get("completed") == summary.get("total")
    )


def latest_comparable(report_dir: str, current: RunKey, exclude: str | None = None) -> tuple[str, Results]:
    """The newest successful run in the archive that `current` can be compared with.

    Raises LookupError saying why none qualifies (the newest runs' reasons).
    """
    runs, _ = list_runs(report_dir)
    passed_over = []
    for run in reversed(runs):
        if exclude and os.path.abspath(run.path) == os.path.abspath(exclude):
            continue
        if not successful(run.results):
            passed_over.append(f"{run.name}: not successful")
            continue
        reasons = mismatches(key_of(run.results), current)
        if not reasons:
            return os.path.join(run.path, RESULTS_FILE), run.results
        passed_over.append(f"{run.name}: {'; '.join(reasons)}")
    if not runs:
        raise LookupError(f"{report_dir} holds no saved run yet")
    shown = "; ".join(passed_over[:3]) + (f" (and {len(passed_over) - 3} more)" if len(passed_over) > 3 else "")
    raise LookupError(f"no comparable successful run in {report_dir}: {shown}")
