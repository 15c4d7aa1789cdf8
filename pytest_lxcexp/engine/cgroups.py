"""The experiment's own cgroup subtree: how takedown proves a process belongs to a VE.

Each VE is placed (via lxc.cgroup.dir.container / .monitor) under `lxcexp-<tag>/veN`
and `lxcexp-<tag>.monitor/veN`, so every process of the experiment can be found by
walking those directories, never by matching process names. Where the VEs get no
cgroup of their own in a hierarchy (--ve-cgroups), the memory one, the starters and so
every VE and monitor sit directly in that hierarchy's `lxcexp-<tag>`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .storage import write_new

CGROUP_ROOT = "/sys/fs/cgroup"


def container_dir(tag: str) -> str:
    return f"lxcexp-{tag}"


def monitor_dir(tag: str) -> str:
    return f"lxcexp-{tag}.monitor"


# Where a system-init VE's processes live, below its own cgroup (lxc.cgroup.dir.container.inner):
# its cgroup namespace's root. Such a VE keeps CAP_SYS_ADMIN and can mount its cgroups, and
# the limits liblxc sets (pids.max, the CPU weight) sit one level up, out of its reach.
SYSTEM_INIT_INNER = "payload"


def hierarchies() -> list[str]:
    """Mount points of every cgroup hierarchy (v1 controllers and the v2 tree)."""
    found = []
    with open("/proc/self/mounts") as handle:
        for line in handle:
            _, target, fstype = line.split()[:3]
            if fstype in ("cgroup", "cgroup2"):
                found.append(target)
    return found


def unified_hierarchy() -> str | None:
    """Where the v2 tree is mounted, if it is."""
    for hierarchy in hierarchies():
        if os.path.isfile(os.path.join(hierarchy, "cgroup.controllers")):
            return hierarchy
    return None


def low_cpu_priority_line() -> str:
    """The LXC config line that gives a VE a low CPU weight (--ve-nice), for this host's cgroups.

    The default weight is 1024 shares (v1) or 100 (v2); a tenth of it keeps the host
    responsive while thousands of VEs run.
    """
    return "lxc.cgroup.cpu.shares = 102" if v1_mounted("cpu") else "lxc.cgroup2.cpu.weight = 10"


@functools.lru_cache(maxsize=16)  # once per run, not once per VE: the host's mounts stay
def v1_mounted(controller: str) -> bool:
    """Whether `controller` is mounted as a cgroup v1 hierarchy here (its keys are then
    lxc.cgroup.<controller>.*, else lxc.cgroup2.*)."""
    with open("/proc/self/mounts") as handle:
        return any(line.split()[2] == "cgroup" and controller in line.split()[3].split(",") for line in handle)


def _v1_hierarchy_controllers() -> list[list[str]]:
    """The controllers of each cgroup v1 hierarchy this process is in (named ones excluded)."""
    found = []
    with open("/proc/self/cgroup") as handle:
        for line in handle:
            _, controllers, _ = line.rstrip("\n").split(":", 2)
            names = [name for name in controllers.split(",") if name and not name.startswith("name=")]
            if names:
                found.append(names)
    return found


def unified_only() -> bool:
    """A cgroup v2-only host: one unified tree, no v1 controller hierarchy."""
    return not _v1_hierarchy_controllers() and unified_hierarchy() is not None


def unified_controllers() -> list[str]:
    """The controllers of the unified (v2) tree's root; none on a v1-only host."""
    return _unified_controllers()


def _unified_controllers() -> list[str]:
    unified = unified_hierarchy()
    if unified is None:
        return []
    with open(os.path.join(unified, "cgroup.controllers")) as handle:
        return handle.read().split()


def cgroup_use_for(wanted: tuple[str, ...], v1_hierarchies: list[list[str]], unified: list[str]) -> str | None:
    """The value of liblxc's lxc.cgroup.use that gives each VE cgroups in `wanted` only, or
    None for liblxc's default (every hierarchy).

    liblxc skips a hierarchy unless all of its controllers are listed, so controllers
    mounted together with a wanted one (cpu,cpuacct) come along, and on a hybrid host the
    unified hierarchy's controllers (none on this project's machine) are listed too, lest
    liblxc skip that hierarchy.
    """
    use: list[str] = []
    for controllers in v1_hierarchies:
        if set(controllers) & set(wanted):
            use += controllers
    if not use:
        # No v1 hierarchy holds a wanted controller, or a cgroup v2 host, whose one hierarchy
        # liblxc uses with all its controllers whatever the list: nothing to choose.
        return None
    use += unified
    return ",".join(dict.fromkeys(use))


def cgroup_layout() -> dict[str, list]:
    """This host's cgroup hierarchies as a VE's start meets them: each v1 hierarchy's
    controllers (sorted) and the unified tree's, for telling whether two runs are comparable."""
    return {
        "v1": sorted(sorted(controllers) for controllers in _v1_hierarchy_controllers()),
        "unified": sorted(_unified_controllers()),
    }


def effective_cgroup_use(wanted: tuple[str, ...] | None) -> str | None:
    """The lxc.cgroup.use the tool gives liblxc for `wanted` on this host; None: liblxc's default, every hierarchy."""
    if wanted is None:
        return None
    return cgroup_use_for(wanted, _v1_hierarchy_controllers(), _unified_controllers())


def host_controllers() -> set[str]:
    """The controllers this kernel has enabled (/proc/cgroups)."""
    with open("/proc/cgroups") as handle:
        rows = [line.split() for line in handle if not line.startswith("#")]
    return {row[0] for row in rows if len(row) == 4 and row[3] == "1"}


def ves_get_cgroup(controller: str, wanted: tuple[str, ...] | None) -> bool:
    """Whether each VE (and its monitor) gets a cgroup of its own in `controller` on this host."""
    if wanted is None:
        return True
    use = cgroup_use_for(wanted, _v1_hierarchy_controllers(), _unified_controllers())
    return use is None or controller in use.split(",")


def ves_get_memory_cgroups(wanted: tuple[str, ...] | None) -> bool:
    """Whether each VE (and its monitor) gets a memory cgroup of its own on this host."""
    return ves_get_cgroup("memory", wanted)


def _write_lxc_conf(lxc_etc: str, text: str) -> None:
    """Root's only, like the rest of the state directory it lives in. Written only when it
    differs (the first start): a later start on a full tmpfs must still get as far as
    reporting each VE's failure. Written aside and renamed: xdist workers start ranges at
    once, and a starter must never read it half-written."""
    path = os.path.join(lxc_etc, "lxc.conf")
    with contextlib.suppress(OSError), open(path) as handle:
        if handle.read() == text:
            return
    os.makedirs(lxc_etc, mode=0o700, exist_ok=True)
    write_new(path, text)


def cgroup_use(wanted: tuple[str, ...] | None) -> str | None:
    """lxc.cgroup.use for `wanted` on this host (None: liblxc's default, every hierarchy)."""
    if wanted is None:
        return None
    return cgroup_use_for(wanted, _v1_hierarchy_controllers(), _unified_controllers())


def starter_cgroup_args(
    tag: str, wanted: tuple[str, ...] | None, lxc_etc: str, config_dirs: Iterable[str] = ("/etc/lxc",)
) -> list[str]:
    """The starter's arguments that confine each VE's cgroups to `wanted` (None: all; see
    starter.py): writes the lxc.conf it shows liblxc (in each build's global config
    directory, `config_dirs`), and makes the experiment's one memory cgroup that the
    starter, and so every VE and monitor, joins when the VEs have none of their own.

    Why not memory by default: each memory cgroup costs kernel memory in proportion to
    every superblock ever mounted on the host (its shrinker map; each VE mounts several):
    0.83 MiB for the two of a VE (its own and its monitor's) on this project's machine,
    most of a VE's host memory.
    """
    use = cgroup_use(wanted)
    if use is None:
        return []
    _write_lxc_conf(lxc_etc, f"lxc.cgroup.use = {use}\n")
    args = ["--lxc-etc", lxc_etc]
    for directory in dict.fromkeys(config_dirs):
        args += ["--config-dir", directory]
    if "memory" not in use.split(","):
        for hierarchy in hierarchies():
            if os.path.basename(hierarchy) == "memory":
                shared = os.path.join(hierarchy, container_dir(tag))
                os.makedirs(shared, exist_ok=True)
                args += ["--join", shared]
    return args


def _subtrees(tag: str) -> list[str]:
    paths = []
    for hierarchy in hierarchies():
        for name in (container_dir(tag), monitor_dir(tag)):
            path = os.path.join(hierarchy, name)
            if os.path.isdir(path) and not os.path.islink(path):
                paths.append(path)
    return paths


def _walk_dirs_deepest_first(top: str) -> list[str]:
    return [dirpath for dirpath, _, _ in os.walk(top, topdown=False, followlinks=False)]


def _child_dirs(top: str) -> list[str]:
    try:
        with os.scandir(top) as entries:
            return [entry.path for entry in entries if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def _nr_descendants(top: str) -> int | None:
    """How many cgroups are below `top` (v2's cgroup.stat); None where it cannot tell (v1)."""
    try:
        with open(os.path.join(top, "cgroup.stat")) as handle:
            for line in handle:
                key, _, value = line.partition(" ")
                if key == "nr_descendants":
                    return int(value)
    except OSError:
        pass
    return None


def _cgroup_dirs_deepest_first(top: str) -> list[str]:
    """The cgroups of a subtree, deepest first. Where v2 counts no cgroup below its children
    (a VE that made none), one listing: a cgroup directory lists some 40 control files, and
    reading 20,000 of them took most of a 10,000-VE takedown's kill step."""
    children = _child_dirs(top)
    if _nr_descendants(top) == len(children):
        return [*children, top]
    return _walk_dirs_deepest_first(top)


# A cgroup going away under the reader: gone (ENOENT), or being removed (ENODEV, seen
# while the kernel offlines hundreds of VEs' cgroups at once), or its task gone (ESRCH).
_GONE = (errno.ENOENT, errno.ENODEV, errno.ESRCH)


def _procs(directory: str) -> set[int]:
    """The PIDs in one cgroup directory; none if it is going away."""
    try:
        with open(os.path.join(directory, "cgroup.procs")) as handle:
            return {int(line) for line in handle if line.strip()}
    except OSError as error:
        if error.errno in _GONE:
            return set()
        raise


def experiment_pids(tag: str) -> set[int]:
    """Every PID in the experiment's cgroups, in any hierarchy."""
    pids: set[int] = set()
    for subtree in _subtrees(tag):
        for directory in _walk_dirs_deepest_first(subtree):
            pids |= _procs(directory)
    return pids


def ve_pids(tag: str, name: str) -> set[int]:
    """PIDs in one VE's payload cgroup (not its monitor)."""
    pids: set[int] = set()
    for hierarchy in hierarchies():
        top = os.path.join(hierarchy, container_dir(tag), name)
        if not os.path.isdir(top):
            continue
        for directory in _walk_dirs_deepest_first(top):
            pids |= _procs(directory)
    return pids


def _self_and_ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    return pids


def _subtree_pids(tag: str, name: str, within: Iterable[str] | None = None) -> dict[str, set[int]]:
    """PIDs under one of our subtrees (container_dir or monitor_dir), by VE name, in any
    hierarchy (or only those `within`)."""
    found: dict[str, set[int]] = {}
    for hierarchy in hierarchies() if within is None else within:
        top = os.path.join(hierarchy, name)
        if not os.path.isdir(top) or os.path.islink(top):
            continue
        for directory in _cgroup_dirs_deepest_first(top):
            pids = _procs(directory)
            if pids:
                ve = os.path.relpath(directory, top).split("/")[0]
                found.setdefault(ve, set()).update(pids)
    return found


def _inside_our_subtrees(tag: str, pids: Iterable[int]) -> bool:
    """Whether any of `pids` sits in one of our subtrees, in any hierarchy (/proc/PID/cgroup)."""
    ours = {container_dir(tag), monitor_dir(tag)}
    for pid in pids:
        with open(f"/proc/{pid}/cgroup") as handle:
            if any(line.rstrip("\n").split(":", 2)[2].lstrip("/").split("/")[0] in ours for line in handle):
                return True
    return False


def _killable_in_v2(tag: str) -> str | None:
    """The v2 tree, when both our subtrees are there with cgroup.kill (Linux 5.14) and neither
    holds this process or an ancestor: then one write per subtree kills the experiment."""
    unified = unified_hierarchy()
    if unified is None or _inside_our_subtrees(tag, _self_and_ancestors()):
        return None
    for name in (container_dir(tag), monitor_dir(tag)):
        top = os.path.join(unified, name)
        if os.path.islink(top) or not os.path.isfile(os.path.join(top, "cgroup.kill")):
            return None
    return unified


def kill_all_ves(tag: str) -> tuple[set[str], int]:
    """SIGKILL every VE and its LXC monitor at once; returns the names of the VEs that had
    processes and how many processes were signalled.

    Together, so the kernel tears the VEs' network namespaces down in batches (one by one,
    each pays a veth deletion under RTNL). Monitors first: each VE's init dies with its
    monitor (liblxc gives it PDEATHSIG), and a monitor left to see its VE die starts its
    own cleanup, a thousand of them contending for the kernel's cgroup lock (takedown_ves
    does that work in one pass instead).
    """
    unified = _killable_in_v2(tag)
    if unified is not None:
        # Every process is in exactly one cgroup of the v2 tree, so reading there alone finds
        # them (a third of the reads on a hybrid host: 10,000 VEs have 60,000 cgroups in all),
        # and cgroup.kill also takes what forks meanwhile. What is elsewhere (a VE without a
        # v2 cgroup of its own) the walk of every hierarchy in kill_experiment_processes finds.
        payloads = _subtree_pids(tag, container_dir(tag), within=[unified])
        monitors = set().union(*_subtree_pids(tag, monitor_dir(tag), within=[unified]).values())
        for subtree in (monitor_dir(tag), container_dir(tag)):
            _kill_subtree(subtree)
        return {name for name in payloads if name != "."}, len(monitors | set().union(*payloads.values()))
    spared = _self_and_ancestors()
    payloads = _subtree_pids(tag, container_dir(tag))
    monitors = set().union(*_subtree_pids(tag, monitor_dir(tag)).values())
    victims = [*(monitors - spared), *(set().union(*payloads.values()) - monitors - spared)]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return {name for name in payloads if name != "."}, len(victims)


def thaw_frozen(tag: str) -> list[str]:
    """Thaw every frozen cgroup of our container subtree in the v1 freezer hierarchy; returns
    the cgroups thawed. A VE that may mount cgroups (a system init keeps CAP_SYS_ADMIN) can
    freeze its own, and a v1-frozen process does not die of SIGKILL until it is thawed: the
    takedown would wait for it and leave it, its cgroups and its detached tmpfs behind.
    (A v2-frozen cgroup needs nothing: cgroup.kill and SIGKILL reach its processes.)
    Called after the kill, so what wakes up dies at once instead of running on."""
    thawed = []
    for hierarchy in hierarchies():
        top = os.path.join(hierarchy, container_dir(tag))
        if not os.path.isfile(os.path.join(top, "freezer.state")) or os.path.islink(top):
            continue
        for directory in _walk_dirs_deepest_first(top):
            path = os.path.join(directory, "freezer.state")
            try:
                with open(path) as handle:
                    if handle.read().strip() == "THAWED":
                        continue
                with open(path, "w") as handle:
                    handle.write("THAWED")
                thawed.append(directory)
            except OSError as error:
                if error.errno not in _GONE:
                    raise
    return thawed


def _kill_subtree(name: str) -> None:
    for hierarchy in hierarchies():
        path = os.path.join(hierarchy, name, "cgroup.kill")
        if os.path.isfile(path) and not os.path.islink(os.path.dirname(path)):
            try:
                with open(path, "w") as handle:
                    handle.write("1")
            except OSError as error:
                if error.errno not in _GONE:
                    raise


def _populated(top: str) -> bool:
    """A v2 cgroup's `populated`: a live process in it or below (zombies no longer count)."""
    try:
        with open(os.path.join(top, "cgroup.events")) as handle:
            return any(line.split() == ["populated", "1"] for line in handle)
    except OSError as error:
        if error.errno in _GONE:
            return False
        raise


def wait_until_empty(tag: str, until: float) -> bool:
    """Until the v2 tree says our subtrees hold no live process (or `until`): two reads per
    poll, where walking every cgroup of 10,000 VEs takes seconds of the CPU the kernel needs
    to tear them down. True when the v2 tree said so; returns False at once where it cannot
    tell (no v2 tree, or this process inside)."""
    unified = _killable_in_v2(tag)
    if unified is None:
        time.sleep(0.05)
        return False
    tops = [os.path.join(unified, name) for name in (container_dir(tag), monitor_dir(tag))]
    while any(_populated(top) for top in tops):
        if time.monotonic() >= until:
            return False
        time.sleep(0.05)
    return True


def kill_experiment_processes(tag: str, timeout: float = 10.0) -> tuple[int, set[int]]:
    """SIGKILL every process in our cgroups until none is left; returns how many it signalled
    and any that survived.

    Where the v2 tree proves our subtrees empty, the walk of every hierarchy is skipped (4.3 s
    of a 10,000-VE takedown on a hybrid host): a process that only a v1 hierarchy still holds
    keeps its cgroup busy, and remove_subtrees kills it there.

    Never this process or its ancestors: liblxc can move a caller into a VE's monitor
    cgroup, and killing the tool that runs the takedown would leave everything behind.
    """
    deadline = time.monotonic() + timeout
    if wait_until_empty(tag, deadline):  # what kill_all_ves killed, dying
        return 0, set()
    spared = _self_and_ancestors()
    signalled: set[int] = set()
    pids = experiment_pids(tag) - spared
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        signalled |= pids
        wait_until_empty(tag, min(deadline, time.monotonic() + 1.0))
        pids = experiment_pids(tag) - spared
    return len(signalled), pids


def flush_subtree_stats(tag: str) -> None:
    """Have the kernel flush the pending statistics of all our v2 cgroups in one pass.

    Each v2 cgroup whose processes ran sits on its parent's list of cgroups with pending
    statistics (rstat), and a cgroup's release unlinks it by walking that list: 10,000 VE
    cgroups under one parent made the takedown's releases quadratic, a quarter of its CPU.
    Reading the parent's `cpu.stat` flushes the whole subtree at once and empties the lists;
    with no process left, nothing is added again before the releases run.
    """
    unified = unified_hierarchy()
    if unified is None:
        return
    for name in (container_dir(tag), monitor_dir(tag)):
        path = os.path.join(unified, name, "cpu.stat")
        if os.path.islink(os.path.dirname(path)):
            continue
        try:
            with open(path) as handle:
                handle.read()
        except OSError as error:
            if error.errno not in _GONE:
                raise


@dataclass
class RemovedSubtrees:
    left: list[str] = field(default_factory=list)  # cgroups that would not go
    killed: set[int] = field(default_factory=set)  # processes found in them, and killed
    survivors: set[int] = field(default_factory=set)  # of those, the ones still there at the end


def remove_subtrees(tag: str) -> RemovedSubtrees:
    """rmdir our cgroup directories (deepest first). A cgroup that stays busy still holds a
    process (one the v2 kill could not see, in a v1 hierarchy only): it is killed, and the
    rmdir tried again."""
    flush_subtree_stats(tag)
    removed = RemovedSubtrees()
    spared = _self_and_ancestors()
    for subtree in _subtrees(tag):
        # Each VE's cgroup first without a look inside (a listing costs as much as the rmdir):
        # only one still busy (a cgroup below it, or a process) is walked.
        children = _child_dirs(subtree)
        busy = [child for child in children if not _remove_cgroup(child, spared, removed.killed, attempts=1)]
        for directory in [*(d for child in busy for d in _walk_dirs_deepest_first(child)), subtree]:
            if not _remove_cgroup(directory, spared, removed.killed):
                removed.left.append(directory)
                removed.survivors |= _procs(directory) - spared
    return removed


def _remove_cgroup(directory: str, spared: set[int], killed: set[int], attempts: int = 50) -> bool:
    for attempt in range(attempts):
        if attempt:
            time.sleep(0.02)  # EBUSY while the kernel reaps the last task
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as error:
            if error.errno == errno.EBUSY and attempt % 10 == 1:
                # Still busy past a moment's wait: a process is in it.
                for pid in _procs(directory) - spared:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
    return False


def _v1_or_unified(controller: str) -> str | None:
    """The hierarchy that holds `controller`: its v1 mount, else the v2 tree if it has it."""
    found = hierarchies()
    for hierarchy in found:
        if os.path.basename(hierarchy) == controller or controller in os.path.basename(hierarchy).split(","):
            return hierarchy
    for hierarchy in found:
        if controller in _read_words(os.path.join(hierarchy, "cgroup.controllers")):
            return hierarchy
    return None


def memory_hierarchy() -> str | None:
    """The hierarchy holding the memory controller (its v1 mount, or the v2 tree); None without one."""
    return _v1_or_unified("memory")


def _read_words(path: str) -> list[str]:
    try:
        with open(path) as handle:
            return handle.read().split()
    except OSError:
        return []


def subtree_counter(tag: str, controller: str, file: str) -> int | None:
    """A hierarchical counter (pids.current, memory.usage_in_bytes, ...) summed over the
    experiment's payload and monitor subtrees; None where the host has neither."""
    hierarchy = _v1_or_unified(controller)
    if hierarchy is None:
        return None
    values = [_read_words(os.path.join(hierarchy, name, file)) for name in (container_dir(tag), monitor_dir(tag))]
    numbers = [int(words[0]) for words in values if words and words[0].isdigit()]
    return sum(numbers) if numbers else None


def ve_pids_cgroup(tag: str, name: str) -> str | None:
    """One VE's own cgroup in the pids hierarchy (its pids.max, pids.current, pids.events);
    None where the host has no pids controller."""
    hierarchy = _v1_or_unified("pids")
    return None if hierarchy is None else os.path.join(hierarchy, container_dir(tag), name)


@functools.lru_cache(maxsize=8)
def ve_pids_max_line(limit: int) -> str:
    """The LXC config line that caps one VE's processes (--ve-pids-max), for this host's cgroups:
    every VE has a pids cgroup of its own (--ve-cgroups always holds pids)."""
    return f"lxc.cgroup.pids.max = {limit}" if v1_mounted("pids") else f"lxc.cgroup2.pids.max = {limit}"


def ve_memory_max_line(limit: int) -> str:
    """The LXC config line that caps one VE's memory (--ve-memory-max SIZE), for this host's
    cgroups: the VE has a memory cgroup of its own (the preflight makes sure)."""
    if v1_mounted("memory"):
        return f"lxc.cgroup.memory.limit_in_bytes = {limit}"
    return f"lxc.cgroup2.memory.max = {limit}"


def pids_budget_path(tag: str) -> str | None:
    """The experiment's payload cgroup in the pids hierarchy, where --ve-pids-max applies."""
    hierarchy = _v1_or_unified("pids")
    return None if hierarchy is None else os.path.join(hierarchy, container_dir(tag))


def set_pids_budget(tag: str, limit: int) -> str:
    """pids.max on the experiment's payload subtree: all VEs together may have `limit`
    processes (their monitors sit in the monitor subtree and do not count). Removed with
    the subtree at takedown."""
    path = pids_budget_path(tag)
    if path is None:
        raise RuntimeError("this host has no pids cgroup controller")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "pids.max"), "w") as handle:
        handle.write(str(limit))
    return path


def pids_refused(tag: str) -> int:
    """Forks the pids limit of the experiment's payload subtree refused: the kernel's own
    count, the `max` line of its pids.events."""
    path = pids_budget_path(tag)
    return 0 if path is None else refused_forks(path)


def refused_forks(cgroup: str) -> int:
    """Forks a pids cgroup refused: the `max` line of its pids.events (0 if it has none)."""
    words = _read_words(os.path.join(cgroup, "pids.events"))
    for key, value in zip(words[::2], words[1::2], strict=False):
        if key == "max" and value.isdigit():
            return int(value)
    return 0


def memory_budget_path(tag: str) -> str | None:
    """The experiment's payload cgroup in the memory hierarchy, where --ve-memory-max applies:
    every VE's memory is charged below it (on cgroup v1 without memory cgroups per VE, the
    VEs, their monitors and the starters are in it themselves: starter --join)."""
    hierarchy = memory_hierarchy()
    return None if hierarchy is None else os.path.join(hierarchy, container_dir(tag))


def memory_limit_possible() -> bool:
    """Whether the experiment's cgroup can get a memory limit before its first VE: a memory
    hierarchy, and on cgroup v2 its root handing the controller down (systemd's does; the
    tool does not enable it there itself)."""
    hierarchy = memory_hierarchy()
    if hierarchy is None:
        return False
    handed_down = _read_words(os.path.join(hierarchy, "cgroup.subtree_control"))
    return hierarchy != unified_hierarchy() or "memory" in handed_down


def _memory_limit_file(hierarchy: str) -> str:
    return "memory.max" if hierarchy == unified_hierarchy() else "memory.limit_in_bytes"


def set_memory_budget(tag: str, limit: int) -> str:
    """The memory limit of the experiment's payload subtree: past it the kernel reclaims, then
    OOM-kills inside the subtree only, so a VE that eats memory cannot push the host into its
    own OOM killer (which picks from every process on the host, the tool's included).
    Returns the file written; removed with the subtree at takedown."""
    hierarchy = memory_hierarchy()
    if hierarchy is None:
        raise RuntimeError("this host has no memory cgroup controller")
    path = os.path.join(hierarchy, container_dir(tag))
    os.makedirs(path, exist_ok=True)
    limit_file = os.path.join(path, _memory_limit_file(hierarchy))
    if not os.path.exists(limit_file):
        raise RuntimeError(f"{path} has no memory controller (the memory controller is not enabled above it)")
    with open(limit_file, "w") as handle:
        handle.write(str(limit))
    return limit_file


# cgroup v1's "no limit" (PAGE_COUNTER_MAX pages, in bytes): anything this large is none.
_NO_MEMORY_LIMIT = 1 << 62


def memory_budget_use(tag: str) -> tuple[int, int] | None:
    """The experiment's memory limit (--ve-memory-max) and what is charged against it now, in
    bytes; None where it has none (or no memory cgroup yet)."""
    hierarchy = memory_hierarchy()
    if hierarchy is None:
        return None
    path = os.path.join(hierarchy, container_dir(tag))
    usage_file = "memory.current" if hierarchy == unified_hierarchy() else "memory.usage_in_bytes"
    limit = _read_words(os.path.join(path, _memory_limit_file(hierarchy)))
    usage = _read_words(os.path.join(path, usage_file))
    if not (limit and usage and limit[0].isdigit() and usage[0].isdigit()) or int(limit[0]) >= _NO_MEMORY_LIMIT:
        return None  # "max" on v2
    return int(limit[0]), int(usage[0])


def _memory_event(directory: str, event: str) -> int:
    """A memory cgroup's count of `event`: oom_kill (a process OOM-killed) or max (its limit
    hit), from v2's memory.events, or v1's memory.oom_control and memory.failcnt. 0 if none."""
    words = _read_words(os.path.join(directory, "memory.events"))
    if not words:  # cgroup v1
        if event == "max":
            counts = _read_words(os.path.join(directory, "memory.failcnt"))
            return int(counts[0]) if counts and counts[0].isdigit() else 0
        words = _read_words(os.path.join(directory, "memory.oom_control"))
    for key, value in zip(words[::2], words[1::2], strict=False):
        if key == event and value.isdigit():
            return int(value)
    return 0


def oom_kill_file(tag: str) -> str:
    """Where the kernel counts the experiment's OOM kills (for people: a ramp's stop names it)."""
    hierarchy = memory_hierarchy() or CGROUP_ROOT
    name = "memory.events" if hierarchy == unified_hierarchy() else "memory.oom_control"
    return os.path.join(hierarchy, container_dir(tag), name)


def memory_events(tag: str, ve: str | None, event: str, limit: int = 500) -> int:
    """How often the kernel saw `event` (oom_kill or max, as _memory_event) for VE `ve`, or
    for the whole experiment when `ve` is None or has no memory cgroup left.

    cgroup v2 counts a cgroup's whole subtree: the VE's own cgroup, else the experiment's.
    v1 counts only where the process was charged: the experiment's cgroup (where the VEs sit
    without memory cgroups of their own, the default) plus the VE's subtree (at most `limit`
    cgroups of it: a VE cannot make the tool walk without end)."""
    hierarchy = memory_hierarchy()
    if hierarchy is None:
        return 0
    top = os.path.join(hierarchy, container_dir(tag))
    own = os.path.join(top, ve) if ve else None
    if own is None or not os.path.isdir(own) or os.path.islink(own):
        own = None
    if hierarchy == unified_hierarchy():
        return _memory_event(own or top, event)
    found = _memory_event(top, event)
    if own is not None:
        for seen, (directory, _, _) in enumerate(os.walk(own)):  # os.walk follows no symlinks
            if seen >= limit:
                break
            found += _memory_event(directory, event)
    return found
