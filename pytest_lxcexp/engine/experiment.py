"""One experiment on one root: the engine's single entry point for the plugin and the CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from . import (
    addressing,
    base,
    builds,
    cgroups,
    corroborate,
    fleet,
    forkstart,
    host,
    network,
    phases,
    storage,
    takedown,
    tuning,
    ve_memory,
)
from .config import MEMORY_MAX_AUTO, ConfigError, ExperimentConfig
from .faults import OOM_CRASH_WORDS, OOM_KILLED, FullTmpfsWatch, explain, tmpfs_full_words
from .progress import NO_STATUS, Counts, RecentRate, Status, status_text
from .stats import TAKEDOWN_STEP_PREFIX, Summary, VERecord, summarize
from .userns import root_id_map, shift_tree
from .waits import RangeWait, range_first_start, wait_deadline
from .workload import LogFollower, WorkloadLog, expected_exit_status, ping_target
from .workload_kinds import workload_kind

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Experiment:
    """Builds, runs, measures and takes down one experiment, phase by phase."""

    def __init__(self, config: ExperimentConfig, progress: Progress = _quiet) -> None:
        self.config = config
        self.layout = storage.Layout(config.root)
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.starts: dict[int, fleet.StartResult] = {}
        # Runs each VE's log held before its latest start: a restart appends, only a newer run counts.
        self._runs_before: dict[int, int] = {}
        # Each VE's log followed: a poll reads only what was written since the last one.
        self._logs: dict[int, LogFollower] = {}
        self._lock = storage.RunLock(config.root)
        self.completed: set[int] = set()
        # Other processes (xdist workers of one run) start VEs in this root too: the monitors'
        # RUNNING announcements come through one FIFO per lxcpath, which one reader would
        # steal from the others, so then none watches (their `running` is null).
        self.shared_lxcpath = False
        self.warnings: list[str] = []
        self.tuned: dict[str, tuple[int, int]] = {}
        self.takedown_report = takedown.TakedownReport()
        # --ve-count=max: the VEs the ramp created so far, and its result once it stopped.
        self.ramp_created = 0
        # The experiment's memory limit as set at setup (--ve-memory-max resolved), None: none.
        self.memory_limit: int | None = None
        self.ramp_bound_by: host.Requirement | None = None  # the preflight limit that bounds the ramp
        self.ramp_result: Any = None  # engine.ramp.RampResult (ramp imports this module)
        self._first_start: float | None = None
        self._last_start_end: float | None = None
        self._last_completion: float | None = None
        self._builds: list[builds.LXCBuild] | None = None
        # The round being run (0-based, --ve-repeat): it shifts which build starts ve1.
        self.round = 0
        # The proof that each build ran as asked, from its first VE that could be looked at.
        self.proofs: dict[str, builds.Proof] = {}
        # Epoch of the last wait's end: parts of one run (xdist workers) measure "complete all"
        # from their own first start, so only this lets a merge make one span of them.
        self.waited_until: float | None = None
        # Every range's wait: its deadline, when it began and ended (results.json timings.waits).
        self.waits: list[RangeWait] = []
        self._running_watch: contextlib.ExitStack | None = None
        self._running_times = phases.RunningTimes()
        # Each VE's memory (monitor PSS, own cgroup's charge), read once per start: by the first
        # records after it (the end of its range's wait), keyed by index with that start's time.
        self._memory: dict[int, tuple[float, int | None, int | None]] = {}
        self._sub_bridges_made: set[int] = set()  # a ramp's, made step by step (create())
        self._start_rate = RecentRate()  # the status line's starts per second, lately

    def next_round(self, number: int) -> Experiment:
        """The experiment of round `number` (--ve-repeat), set up anew after this one's takedown:
        only what the session found once (the preflight's warnings, the resolved builds) carries over."""
        fresh = Experiment(self.config, self.progress)
        fresh.round = number
        fresh.warnings = list(self.warnings)
        fresh._builds = self._builds
        fresh.ramp_bound_by = self.ramp_bound_by
        return fresh

    @property
    def builds(self) -> list[builds.LXCBuild]:
        """The LXC builds that start the VEs (--ve-lxc), found from the builds themselves."""
        if self._builds is None:
            self._builds = builds.resolve_builds(self.config.lxc)
        return self._builds

    def builds_metadata(self) -> list[dict[str, Any]]:
        """Each build as results.json's metadata.builds records it: what it is, and its proof."""
        described = []
        for build in self.builds:
            proof = self.proofs[build.name].to_dict() if build.name in self.proofs else None
            described.append(build.to_dict() | {"proof": proof, "proofs": [proof] if proof else []})
        return described

    def build_of(self, index: int) -> builds.LXCBuild:
        """The build that starts veN in this round: interleaved, ve1 the first build's."""
        return self.builds[builds.build_index(index, len(self.builds), self.round)]

    @property
    def bridge_layout(self) -> addressing.BridgeLayout:
        return addressing.BridgeLayout(self.config.bridge, self.config.tag, self.config.count)

    @classmethod
    def attach(cls, root: str, progress: Progress = _quiet) -> Experiment:
        """Load the experiment that lives in `root` (set up earlier, e.g. by `lxcexp setup`)."""
        marker = storage.read_marker(root)
        if marker is None:
            raise ConfigError("--ve-root", f"{root} holds no experiment of ours (run `lxcexp setup` first)")
        experiment = cls(ExperimentConfig.from_dict(marker["config"]), progress)
        experiment.starts = fleet.load_starts(experiment.layout)
        return experiment

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = time.monotonic() - began

    @contextmanager
    def timed_takedown(self) -> Iterator[None]:
        """Takedown runs in steps (one per fixture); their times add up."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings["takedown"] = self.timings.get("takedown", 0.0) + time.monotonic() - began
            # Each step's time so far (the report adds up over the fixtures' takedowns).
            for step, seconds in self.takedown_report.seconds.items():
                self.timings[f"{TAKEDOWN_STEP_PREFIX}{step}"] = seconds

    # -- before anything is created -------------------------------------------------

    def check(self) -> dict | None:
        """Validate the host and the root; returns a stale experiment's marker, if any."""
        host.require_root()  # first: without root, reading the root could fail with a traceback
        stale = storage.check_root(self.config.root)
        if self.config.unprivileged:
            root_id_map()  # a usage error naming the fix when root owns no subordinate ids
        self.warnings = host.preflight(self.config)
        if stale is None:
            # Links named with this root's tag but no experiment of ours in the root: they are
            # not provably ours, so the takedown must never meet (and delete) them.
            strays = network.our_veths(self.config.tag)
            if strays:
                raise ConfigError(
                    "--ve-root",
                    f"links named like this root's VEs exist ({', '.join(strays[:5])}) but {self.config.root} "
                    "holds no experiment of ours, so they are not provably ours; if they are a crashed "
                    f"run's, remove them with: lxcexp takedown --root {self.config.root}",
                )
        base.check_base(self.config)
        self.builds  # noqa: B018 - resolves every --ve-lxc build now: a bad one is a usage error
        layout = storage.Layout(self.config.root)
        builds.refuse_v1_keys(self.builds, fleet.ve_config_text(self.config, layout, self.config.ve_first))
        return stale

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def clean_stale(self, marker: dict) -> None:
        """Take down an earlier experiment of ours left in this root (a crashed run)."""
        old = ExperimentConfig.from_dict(marker["config"])
        self.progress(f"lxcexp: taking down a stale experiment in {old.root} (pid {marker.get('pid')})")
        takedown.takedown(old.root, old.tag, old.bridge if old.network == "bridge" else None)

    # -- setup, one phase each ----------------------------------------------------

    def setup_root(self) -> None:
        made_dir = not os.path.lexists(self.config.root)
        with self._timed("setup tmpfs"):
            try:
                storage.mount_tmpfs(self.config.root, self.config.tmpfs_size)
                storage.write_marker(self.config)
                if self.config.tune_host:
                    # After the marker: the old values are saved in the root, so takedown restores them.
                    self.tuned = tuning.tune(self.config)
                    for path, (old, new) in self.tuned.items():
                        self.progress(f"lxcexp: --ve-tune-host: {path} {old} -> {new}")
            except BaseException:
                # Also an interrupt between mkdir, mount and marker: a takedown that looks
                # for the marker would not see the bare mount or the directory we made.
                takedown.takedown_root(self.config.root, takedown.TakedownReport())
                storage.undo_root(self.config.root, made_dir)
                raise

    def setup_base(self) -> None:
        self._install_base()
        if self.config.unprivileged:
            # The tmpfs copy of the base belongs to the VEs' mapped root (the cache stays as it is).
            began = time.monotonic()
            shift_tree(self.layout.base_rootfs, root_id_map())
            self.timings["setup base"] = self.timings.get("setup base", 0.0) + time.monotonic() - began

    def _install_base(self) -> None:
        with self._timed("setup base"):
            base.install_base(self.layout, self.config, self.progress)

    def setup_network(self) -> None:
        if self.config.network != "bridge":
            return
        with self._timed("setup network"):
            # A ramp's bound may be tens of thousands of VEs it never reaches: it adds each
            # step's sub-bridges with the step's clones (create()), not 250 VEs' worth ahead.
            sub_bridges = () if self.config.ramp else None
            network.create_network(self.bridge_layout, addressing.AddressPlan(self.config.subnet), sub_bridges)

    def setup_clones(self) -> None:
        with self._timed("setup clones"):
            if self.config.pids_max:
                path = cgroups.set_pids_budget(self.config.tag, self.config.pids_max)
                self.progress(f"lxcexp: --ve-pids-max: {path}/pids.max = {self.config.pids_max}")
            self._set_memory_budget()
            if self.config.ramp:
                return  # a ramp creates each step's clones as it goes (engine/ramp.py)
            fleet.create_clones(self.config, self.layout, lambda n: self.progress(f"lxcexp: {n} clones created"))

    def _set_memory_budget(self) -> None:
        # auto: what the host can give now, less what it keeps: past that, the experiment's OOM
        # killer ends a VE's process instead of the host's ending anyone's.
        limit = host.memory_budget(self.config)
        if limit is None:
            if self.config.memory_max == MEMORY_MAX_AUTO:
                self.progress("lxcexp: --ve-memory-max: no memory cgroup to limit on this host; no limit")
            return
        if limit <= 0:  # less available than the reserve since the preflight
            self.progress(
                f"lxcexp: --ve-memory-max: the host has less than {host.MEMORY_RESERVE >> 20} MiB available; no limit"
            )
            return
        try:
            path = cgroups.set_memory_budget(self.config.tag, limit)
        except (OSError, RuntimeError) as error:
            if self.config.memory_max != MEMORY_MAX_AUTO:
                raise
            self.progress(f"lxcexp: --ve-memory-max: no limit set: {error}")
            return
        self.memory_limit = limit
        self.progress(f"lxcexp: --ve-memory-max: {path} = {limit} ({limit / 2**30:.1f} GiB)")

    @property
    def created_last(self) -> int:
        """The highest VE number that exists: the count, or as far as a ramp got."""
        if not self.config.ramp:
            return self.config.ve_last
        return self.ramp_created

    def setup(self) -> None:
        self.setup_root()
        self.setup_base()
        self.setup_network()
        self.setup_clones()

    # -- running --------------------------------------------------------------------

    def _host_veth(self, index: int) -> str:
        return network.veth_name(self.config.tag, index)

    def start(self, first: int, last: int, status: Status = NO_STATUS) -> list[fleet.StartResult]:
        began = time.monotonic()
        if self._first_start is None:
            self._first_start = began
        failed = sum(not r.ok for r in self.starts.values())
        done = [len(self.starts)]
        total = self.ramp_created if self.config.ramp else len(self.config.ves)

        def started(result: fleet.StartResult) -> None:
            nonlocal failed
            # Kept as each arrives: an interrupt halfway through the range keeps the starts so far.
            self.starts[result.index] = result
            done[0] += 1
            failed += not result.ok
            now = time.monotonic()
            status(
                status_text(
                    Counts(
                        total=total,
                        started=done[0],
                        failed=failed,
                        completed=len(self.completed),
                        done=done[0],
                        left=total - done[0],
                        elapsed=now - (self._first_start or began),
                        recent_rate=self._start_rate.update(now, done[0]),
                    )
                )
            )

        for index in range(first, last + 1):
            self._runs_before[index] = self.workload_log(index).runs
        lxc_builds = self.builds
        config_dirs = [build.config_dir for build in lxc_builds]
        starter_args = cgroups.starter_cgroup_args(
            self.config.tag, self.config.ve_controllers, self.layout.lxc_etc, config_dirs
        )
        starter_args += builds.starter_build_args(lxc_builds) + forkstart.starter_args()
        # A start that does not return is ended at its deadline, not waited on for good.
        starter_args += ["--deadline", str(self.config.start_deadline)]
        prover = self._prover()

        def started_and_proven(result: fleet.StartResult) -> None:
            started(result)
            prover.look_at(result)

        self._watch_running()
        try:
            results = fleet.start_range(
                self.layout,
                range(first, last + 1),
                self.config.start_delay,
                on_started=started_and_proven,
                workers=self.config.parallel,
                starter_args=starter_args,
                build_names=[build.name for build in lxc_builds],
                build_of=lambda index: builds.build_index(index, len(lxc_builds), self.round),
                veth_of=self._host_veth if self.config.network == "bridge" else None,
            )
            results = [dataclasses.replace(result, round=self.round) for result in results]
        except BaseException:
            # Interrupted: a start the starters reported (and the root recorded) is kept even
            # if the interrupt came before it was counted here.
            for index, result in fleet.load_starts(self.layout).items():
                if first <= index <= last:
                    self.starts.setdefault(index, result)
            raise
        status.end()
        for result in results:
            self.starts[result.index] = result
        prover.finish(results)
        self._last_start_end = time.monotonic()
        self.timings["start all"] = self._last_start_end - self._first_start
        ok = sum(r.ok for r in results)
        took = self._last_start_end - began
        self.progress(f"lxcexp: started ve{first}-ve{last}: {ok} of {len(results)} in {took:.1f} s")
        return results

    def _watch_running(self) -> None:
        """Watch the monitors' RUNNING announcements from the first start until the starts are
        over (the first wait, records or takedown): one reader for every range, so a range's
        start does not pay for starting and draining one."""
        if self._running_watch is not None or self.shared_lxcpath:
            return
        stack = contextlib.ExitStack()
        self._running_times = stack.enter_context(phases.watch_running(self.layout.root))
        self._running_watch = stack

    def end_running_watch(self) -> None:
        """Stop watching; each start still without its RUNNING phase gets it (and is recorded again)."""
        if self._running_watch is None:
            return
        self._running_watch.close()
        self._running_watch = None
        for index, result in list(self.starts.items()):
            moment = self._running_times.at.get(self.layout.ve_name(index)) if result.ok else None
            if result.running is None and moment is not None:
                self.starts[index] = dataclasses.replace(result, running=phases.since(moment, result.started_at))
                # The latest line of a VE wins when read back. Only an addition to what is on
                # file: a tmpfs that VEs filled (ENOSPC) must not turn it into a failed takedown.
                with contextlib.suppress(OSError):
                    fleet.record_start(self.layout, self.starts[index])

    def _prover(self) -> builds.Prover:
        use = cgroups.cgroup_use(self.config.ve_controllers)
        with open("/proc/self/cgroup") as handle:
            expected = builds.expected_hierarchies(use, handle.read().splitlines())
        return builds.Prover(
            {build.name: build for build in self.builds},
            self.proofs,
            expected,
            lambda index: f"/{cgroups.container_dir(self.config.tag)}/{self.layout.ve_name(index)}",
        )

    def records(self, first: int, last: int) -> list[VERecord]:
        self.end_running_watch()
        indexes = range(first, last + 1)
        states = fleet.ve_states(self.layout, indexes, workers=self.config.parallel)
        plan = addressing.AddressPlan(self.config.subnet) if self.config.network == "bridge" else None
        records = []
        for index in indexes:
            start = self.starts.get(index)
            state = states.get(index, fleet.VEState("UNKNOWN", None))
            log = self.workload_log(index)
            records.append(
                VERecord(
                    index=index,
                    state=state.state,
                    pid=state.pid,
                    pings=log.pings,
                    expected_pings=self.config.pings,
                    finished=log.finished,
                    log_present=log.present,
                    start_latency=start.latency if start else None,
                    start_error=start.error if start and not start.ok else None,
                    address=str(plan.ve_address(index)) if plan else None,
                    workload=self.config.workload,
                    began=log.began is not None,
                    exit_status=log.exit_status,
                    poweroff=self.config.poweroff,
                    powered_off=log.powered_off,
                    output="\n".join(log.output) if expected_exit_status(self.config.workload) is not None else None,
                    target=ping_target(self.config, index),
                    started=start is not None,
                    log_refused=log.refused,
                    build=start.build if start else None,
                    round=start.round if start else self.round,
                    phases=self._phases(start, log),
                    **self._ve_memory(start),
                )
            )
        # A host limit (full tmpfs, no more PIDs, ...) named for each VE it stopped.
        return [self._with_fault(record) for record in records]

    @functools.cached_property
    def _memory_hierarchy(self) -> str | None:
        """Where the VEs' own memory cgroups are; None where they have none (--ve-cgroups without memory)."""
        return ve_memory.memory_hierarchy(cgroups.ves_get_memory_cgroups(self.config.ve_controllers))

    def _ve_memory(self, start: fleet.StartResult | None) -> dict[str, int | None]:
        """veN's monitor PSS and own cgroup's charge, read while it runs, once per start (about
        0.5-1 ms a VE on a host at load 95, smaps_rollup most of it; docs/benchmarks.md)."""
        if start is None or not start.ok:
            return {}
        known = self._memory.get(start.index)
        if known is None or known[0] != start.started_at:
            name = self.layout.ve_name(start.index)
            known = (
                start.started_at,
                ve_memory.monitor_pss(start.monitor, self.config.tag, name),
                ve_memory.cgroup_charge(self.config.tag, name, self._memory_hierarchy),
            )
            self._memory[start.index] = known
        return {"monitor_pss": known[1], "cgroup_memory": known[2]}

    @staticmethod
    def _phases(start: fleet.StartResult | None, log: WorkloadLog) -> dict[str, float | None]:
        """Seconds from the VE's start request to each phase (see phases.py); {} if never started."""
        if start is None or not start.ok:
            return {}
        return {
            "lxc_start_returned": round(start.latency, 6),
            "running": start.running,
            "workload_began": phases.since(log.began_at, start.started_at),
            "first_ping": phases.since(log.first_answer_at, start.started_at),
        }

    def workload_log(self, index: int) -> WorkloadLog:
        """What veN's log says now (read incrementally; refused if it is not a plain file)."""
        follower = self._logs.get(index)
        if follower is None:
            follower = self._logs[index] = LogFollower(self.layout.ve_workload_log(index))
        return follower.poll()

    def _workload_done(self, index: int, log: WorkloadLog) -> bool:
        """Whether veN's latest run got as far as its workload goes (idle: begun; poweroff: off)."""
        if log.runs <= self._runs_before.get(index, 0):
            return False
        if workload_kind(self.config.workload) == "idle":
            return log.began is not None
        if not log.finished:
            return False
        if self.config.poweroff and log.powered_off:
            start = self.starts.get(index)
            return not (start and start.pid and os.path.exists(f"/proc/{start.pid}"))
        return True

    # -- churn: LXC's own concurrency test modes (create, start, stop, destroy) ----------

    def stop(self, first: int, last: int) -> set[str]:
        """Stop veFIRST..veLAST and wait until their processes and veths are gone (a restart reuses both)."""
        self.end_running_watch()
        indexes = range(first, last + 1)
        stopped = fleet.stop_all(self.layout, indexes, workers=self.config.parallel)
        deadline = time.monotonic() + 30
        names = {self.layout.ve_name(index) for index in indexes}
        veths = {network.veth_name(self.config.tag, index) for index in indexes}
        while time.monotonic() < deadline:
            busy = any(cgroups.ve_pids(self.config.tag, name) for name in names)
            if not busy and not veths & set(network.our_veths(self.config.tag)):
                break
            time.sleep(0.05)
        self.progress(f"lxcexp: stopped ve{first}-ve{last}: {len(stopped)} were running")
        return stopped

    def destroy(self, first: int, last: int) -> None:
        """Remove stopped VEs (config, overlay upper, logs); create() makes them anew."""
        indexes = range(first, last + 1)
        states = fleet.ve_states(self.layout, indexes)
        running = sorted(i for i, state in states.items() if state.state != "STOPPED")
        if running:
            # Its state too: one whose monitor did not answer is not known to be running.
            named = ", ".join(f"ve{i} ({states[i].state})" for i in running)
            raise RuntimeError(f"cannot destroy VEs that are not stopped: {named}")
        fleet.destroy_clones(self.layout, indexes)
        for index in indexes:
            self.starts.pop(index, None)
            self._runs_before.pop(index, None)
            self._logs.pop(index, None)

    def create(self, first: int, last: int) -> None:
        """Create veFIRST..veLAST as fresh clones of the base (after destroy()); a ramp's step
        also gets the sub-bridges its VEs join that earlier steps did not make."""
        if self.config.ramp and self.config.network == "bridge":
            needed = [n for n in self.bridge_layout.sub_bridges_for(first, last) if n not in self._sub_bridges_made]
            network.add_sub_bridges(self.bridge_layout, needed)
            self._sub_bridges_made.update(needed)
        fleet.create_clones(self.config, self.layout, indexes=range(first, last + 1))

    def _with_fault(self, record: VERecord) -> VERecord:
        from dataclasses import replace

        if record.completed:
            return record
        layout, index = self.layout, record.index
        status = record.exit_status
        fault = explain(
            self.config.root,
            layout.ve_lxc_log(index),
            layout.ve_workload_log(index),
            status,
            host_agrees=corroborate.checker(self.config.root, self.config.tag, layout.ve_name(index)),
        )
        if (
            fault is None
            and record.crashed
            and corroborate.host_agrees(OOM_KILLED, self.config.root, self.config.tag, layout.ve_name(index))
        ):
            fault = OOM_CRASH_WORDS
        if fault is None or (record.start_error and fault in record.start_error):
            return record
        return replace(record, fault=fault)

    def wait(self, first: int, last: int, timeout: float | None = None, status: Status = NO_STATUS) -> list[VERecord]:
        """Wait until every VE of the range has finished its workload (or cannot), then report.
        The range gives up `timeout` after its own first start (waits.wait_deadline)."""
        self.end_running_watch()
        pending = set(range(first, last + 1))
        timeout = timeout if timeout is not None else self.config.effective_timeout
        began = time.time()
        first_start = range_first_start(self.starts[i].started_at for i in pending if i in self.starts)
        held = sum(self.starts[i].latency for i in pending if i in self.starts and self.starts[i].hung)
        deadline_at = wait_deadline(first_start, timeout, began, held)
        deadline = time.monotonic() + max(0.0, deadline_at - began)
        # A full tmpfs stops every log from growing: do not wait out the whole timeout for it.
        full = FullTmpfsWatch(self.config.root, patience=max(5.0, 3 * self.config.ping_interval))
        waiting_since, completed_before = time.monotonic(), len(self.completed)
        # Every VE is looked at at least once, even when the range's deadline passed before this
        # wait began (a later range, waited on after an earlier one's timeout): its count is right.
        while pending:
            if full.hopeless([self.layout.ve_workload_log(index) for index in sorted(pending)], time.monotonic()):
                self.progress(f"lxcexp: {tmpfs_full_words(self.config.root)}; not waiting any longer")
                break
            for index in sorted(pending):
                start = self.starts.get(index)
                log = self.workload_log(index)
                if start is not None and not start.ok:
                    pending.discard(index)
                elif log.refused:
                    pending.discard(index)  # it fails now, with what was found in place of its log
                elif self._workload_done(index, log):
                    pending.discard(index)
                    self.completed.add(index)
                elif start is not None and start.pid and not os.path.exists(f"/proc/{start.pid}"):
                    # Its init is gone: it will never finish, so do not wait out the timeout.
                    pending.discard(index)
            if pending and time.monotonic() < deadline:
                failed = sum(not result.ok for result in self.starts.values())
                status(
                    status_text(
                        Counts(
                            total=len(self.config.ves),
                            started=len(self.starts),
                            failed=failed,
                            completed=len(self.completed),
                            # The rate and ETA are this wait's: its completions so far, its VEs still pending.
                            done=len(self.completed) - completed_before,
                            left=len(pending),
                            elapsed=time.monotonic() - waiting_since,
                            phase="wait",
                        )
                    )
                )
                time.sleep(0.5)
            else:
                break
        status.end()
        self._last_completion = time.monotonic()
        self.waited_until = time.time()
        self.waits.append(
            RangeWait(first, last, timeout, first_start, began, deadline_at, self.waited_until, len(pending))
        )
        if self._first_start is not None:
            self.timings["complete all"] = self._last_completion - self._first_start
        return self.records(first, last)

    def summary(self, records: list[VERecord]) -> Summary:
        try:
            used = storage.tmpfs_used_bytes(self.config.root)
        except OSError:
            used = 0
        return summarize(
            records,
            disk_used=used,
            root=self.config.root,
            expected_pings=self.config.pings,
            workload=self.config.workload,
        )

    # -- takedown -------------------------------------------------------------------

    def takedown(self) -> takedown.TakedownReport:
        self.end_running_watch()
        with self.timed_takedown():
            bridge = self.config.bridge if self.config.network == "bridge" else None
            # Each call reports on itself (a second takedown finds nothing to kill); the
            # experiment's step times add up over the calls, as its takedown time does.
            report = takedown.TakedownReport()
            try:
                return takedown.takedown(self.config.root, self.config.tag, bridge, report)
            finally:
                for step, seconds in report.seconds.items():
                    self.takedown_report.seconds[step] = self.takedown_report.seconds.get(step, 0.0) + seconds

    def leftovers(self) -> list[str]:
        bridge = self.config.bridge if self.config.network == "bridge" else None
        return takedown.leftovers(self.config.root, self.config.tag, bridge)
