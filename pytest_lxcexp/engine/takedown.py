"""Ordered, idempotent, safe teardown: VEs, their processes, cgroups, mounts, network.

It only touches what it can prove ours: VE directories `ve<N>` inside a root that
carries our marker, processes inside our cgroup subtree, a tmpfs mounted with our
source name on that root, links named with the root's tag, and a bridge whose alias
carries the tag.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import cgroups, network, phases, tuning
from .fleet import defined_ves, live_ves, stop_all
from .shared import remove_run_files
from .storage import TMPFS_SOURCE, Layout, mounts, read_marker, umount


class TakedownError(RuntimeError):
    """Something of the experiment could not be removed."""


@dataclass
class TakedownReport:
    stopped: int = 0
    killed: int = 0
    unmounted: list[str] = field(default_factory=list)
    links_deleted: list[str] = field(default_factory=list)
    bridge_deleted: bool = False
    restored: dict[str, int] = field(default_factory=dict)
    leftovers: list[str] = field(default_factory=list)
    # Seconds per step, in the order run: where a slow takedown spent its time.
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.monotonic() - began

    def steps_text(self) -> str:
        """'kill 1.85 s, exits 9.60 s, ...': the steps' times, in the order run."""
        return ", ".join(f"{step} {seconds:.2f} s" for step, seconds in self.seconds.items())


def takedown_ves(root: str, tag: str, report: TakedownReport) -> None:
    """Stop every VE and make sure no process of the experiment remains."""
    layout = Layout(root)
    # Every VE and its monitor at once. Left to themselves, 1000 monitors cleaning up
    # after their VEs took 14 s; killed, their cgroups go in one pass below (3 s) and the
    # kernel drops each veth with its VE's network namespace.
    with report.timed("kill"):
        killed_ves, report.killed = cgroups.kill_all_ves(tag)
        cgroups.thaw_frozen(tag)  # a VE that froze itself dies only once thawed
    deadline = time.monotonic() + 30 + report.killed / 100
    with report.timed("exits"):
        cgroups.wait_until_empty(tag, deadline)
    with report.timed("sweep"):  # and what the kill could not see; a few seconds past a wait that ran out
        signalled, survivors = cgroups.kill_experiment_processes(tag, timeout=max(5.0, deadline - time.monotonic()))
    report.killed += signalled
    if survivors:
        report.leftovers.append(f"processes that would not die: {sorted(survivors)}")
    stopped_by_lxc: set[str] = set()
    with report.timed("lxc stop"):
        if read_marker(root) is not None:
            # A VE outside our cgroups (which the kill could not reach) stops the LXC way. Only
            # VEs whose monitor still listens are asked: loading all 1000 VEs took 12 s.
            defined = defined_ves(layout)
            live = live_ves(layout, defined)
            stopped_by_lxc = stop_all(layout, defined if live is None else live, workers=os.cpu_count() or 1)
    report.stopped = len(killed_ves | stopped_by_lxc)
    with report.timed("cgroups"):
        removed = cgroups.remove_subtrees(tag)
    report.killed += len(removed.killed)
    if removed.survivors:
        report.leftovers.append(f"processes that would not die: {sorted(removed.survivors)}")
    report.leftovers += [f"cgroup {path}" for path in removed.left]


# liblxc's lock files: one per VE it ever loaded, /run/lxc/lock/<lxcpath>/.<name>, which
# nothing of LXC's removes (44 000 had piled up on this machine).
LXC_LOCK_DIR = "/run/lxc/lock"
_LOCK_FILE = re.compile(r"\.ve\d+")


def lxc_lock_dir(root: str) -> str:
    return os.path.join(LXC_LOCK_DIR, root.strip("/"))


def lxc_lock_files(root: str) -> list[str]:
    directory = lxc_lock_dir(root)
    if os.path.islink(directory) or not os.path.isdir(directory):
        return []
    return [os.path.join(directory, name) for name in os.listdir(directory) if _LOCK_FILE.fullmatch(name)]


def remove_lxc_locks(root: str) -> None:
    """Remove our VEs' liblxc lock files, then the directories up to /run/lxc/lock they alone kept."""
    for path in lxc_lock_files(root):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    directory = lxc_lock_dir(root)
    while directory.startswith(LXC_LOCK_DIR + "/") and not os.path.islink(directory):
        try:
            os.rmdir(directory)  # only if empty: another lxcpath below it keeps it
        except OSError:
            break
        directory = os.path.dirname(directory)


def remove_monitor_fifo(root: str) -> None:
    """The monitor FIFO a start watched (phases.py), if a crash left it, and the directories
    up to /run/lxc it alone kept."""
    path = phases.monitor_fifo(root)
    with contextlib.suppress(OSError):
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            os.unlink(path)
    directory = os.path.dirname(path)
    while directory.startswith(phases.RUNDIR + "/lxc/") and not os.path.islink(directory):
        try:
            os.rmdir(directory)  # only if empty
        except OSError:
            break
        directory = os.path.dirname(directory)


def takedown_network(tag: str, bridge: str | None, report: TakedownReport) -> None:
    """Delete our veths (normally gone with their VEs) and our bridge."""
    with report.timed("veths freed"):
        network.wait_for_ve_veths_to_go(tag)
    with report.timed("links"):
        leftover_veths = network.our_veths(tag)
        if leftover_veths:
            network.delete_links(leftover_veths)
            report.links_deleted = leftover_veths
    with report.timed("bridge"):
        if bridge:
            report.bridge_deleted = network.delete_bridge(bridge, tag)


def takedown_root(root: str, report: TakedownReport) -> None:
    """Unmount what is under the root, then our tmpfs, then remove the empty directory."""
    if read_marker(root) is None:
        return  # not ours (or already gone): touch nothing
    with report.timed("storage"):
        _takedown_marked_root(root, report)


def _takedown_marked_root(root: str, report: TakedownReport) -> None:
    # Here, while the marker still proves the root ours (the lock files are named after it).
    remove_lxc_locks(root)
    remove_monitor_fifo(root)
    report.restored = tuning.restore(root)
    prefix = root.rstrip("/") + "/"
    for entry in sorted(mounts(), key=lambda m: len(m["target"]), reverse=True):
        if entry["target"].startswith(prefix):
            umount(entry["target"], lazy=True)
            report.unmounted.append(entry["target"])
    for entry in mounts():
        if entry["target"] == root and entry["fstype"] == "tmpfs" and entry["source"] == TMPFS_SOURCE:
            umount(root)
            report.unmounted.append(root)
    if os.path.isdir(root) and not os.path.islink(root) and not os.listdir(root):
        os.rmdir(root)


def remove_abandoned_lock(root: str) -> None:
    """A run killed outright leaves its lock (and with xdist its gate and share files) beside
    the root: removed once nobody holds the lock (a holder, this process included, keeps them)."""
    remove_run_files(root)


def takedown(root: str, tag: str, bridge: str | None, report: TakedownReport | None = None) -> TakedownReport:
    """The whole takedown, in order; safe to repeat and to run after a crash."""
    report = report if report is not None else TakedownReport()
    errors = []
    # Every step runs even when an earlier one failed: a stuck mount must not leave the bridge.
    for step in (
        lambda: takedown_ves(root, tag, report),
        lambda: takedown_network(tag, bridge, report),
        lambda: takedown_root(root, report),
        lambda: remove_abandoned_lock(root),
    ):
        try:
            step()
        except Exception as error:  # noqa: BLE001 - collected and raised below
            errors.append(f"{type(error).__name__}: {error}")
    if errors:
        report.leftovers += errors
        raise TakedownError("takedown incomplete: " + "; ".join(errors))
    return report


def leftovers(root: str, tag: str, bridge: str | None) -> list[str]:
    """What of this experiment is still on the host (empty when takedown was complete)."""
    found = []
    prefix = root.rstrip("/")
    for entry in mounts():
        if entry["target"] == prefix or entry["target"].startswith(prefix + "/"):
            found.append(f"mount {entry['target']} ({entry['fstype']})")
    found += [f"process {pid}" for pid in sorted(cgroups.experiment_pids(tag))]
    found += [f"veth {name}" for name in network.our_veths(tag)]
    if bridge and network.bridge_owner(bridge) == tag:
        found.append(f"bridge {bridge}")
    for hierarchy in cgroups.hierarchies():
        for name in (cgroups.container_dir(tag), cgroups.monitor_dir(tag)):
            if os.path.isdir(os.path.join(hierarchy, name)):
                found.append(f"cgroup {hierarchy}/{name}")
    if lxc_lock_files(root):
        found.append(f"liblxc lock files in {lxc_lock_dir(root)}")
    return found
