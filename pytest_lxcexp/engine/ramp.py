"""How many VEs can this host run? A ramp (--ve-count=max): start VEs in growing steps
until one fails, the host refuses, or a start-latency objective breaks.

After each step the ramp waits until the step's VEs have begun their workload (or died),
then measures the host (VEs running, memory, processes) and decides, in `decide()`, a
pure function of what it saw:

1. a VE of the step failed for a host limit the kernel named (ENOSPC, EAGAIN, ...);
2. the experiment's pids budget (--ve-pids-max) refused a fork (pids.events), or the
   kernel's OOM killer ended a process at the experiment's memory limit (--ve-memory-max);
3. the experiment's tmpfs is full;
4. a VE of the step failed for no named limit;
5. an objective (--ve-slo) broke on the step's start latencies;
6. the next step would not fit: memory (a reserve is kept for the host), the experiment's
   memory limit (--ve-memory-max, room kept for the starters charged to it) or PIDs; a step
   is first cut to what fits, and the ramp stops when that is less than a tenth of it;
7. the bound the preflight's limits set was reached.

It never pushes the host into its hard limits where that would hurt the rest of the host
(memory, pid_max): those are stopped before, by the measured per-VE figures (6) and the
preflight's bound (7). Memory is not part of the bound: the per-VE budget is an estimate
with a margin, and the count a ramp reports should be the host's. The limits that are the
experiment's own (its tmpfs, its pids budget) and the per-VE kernel objects (keys, ports,
ptys, neighbours) are met for real.
"""

from __future__ import annotations

import errno
import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import cgroups, host
from .config import ExperimentConfig
from .corroborate import checker
from .experiment import Experiment
from .faults import HostLimit, classify, tmpfs_full, tmpfs_limit, ve_limit
from .fleet import StartResult
from .progress import NO_STATUS, Status
from .safefs import UnsafeVEFile
from .slo import Slo, step_sizes
from .stats import latency_stats
from .workload import expected_exit_status, read_log

MIB = 1024 * 1024
# Memory per VE is taken from the ramp's own measurement once this many VEs run (fewer:
# the noise of the rest of the host is larger than what they take), with this margin: host
# memory per VE grew from 0.89 to 1.09 MiB between 400 and 14,833 VEs (docs/benchmarks.md),
# at most 3% from one step to the next.
MEASURED_RUNNING = 200
MEASURED_MARGIN = 1.2
# A step cut to what the host has room for is run only if it keeps this share of its VEs:
# a smaller one would add little to the count the ramp reports.
SHORTEST_STEP_SHARE = 0.1
# How long a step's VEs may take to begin their workload (a system init boots first).
SETTLE_SECONDS = {"workload": 30.0, "system": 120.0}


@dataclass(frozen=True)
class RampStop:
    """Why a ramp stopped: the limit (short name), in words, in the kernel's own words, and what raises it."""

    limit: str  # tmpfs, pids, memory, keys, ports, ptys, neighbours, files, space, slo, failure, bound
    words: str
    kernel: str = ""
    setting: str = ""

    @property
    def named(self) -> bool:
        """False when VEs failed and nothing named why (the thing this tool exists to expose)."""
        return self.limit != "failure"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class RampPoint:
    """The host after one step."""

    step: int
    first: int
    last: int
    running: int  # VEs whose init is alive
    started: int  # this step's good starts
    failed: int  # this step's VEs that failed to start, to begin their workload, or in it
    failed_running: int  # of those, the ones whose init still runs (counted in `running`)
    latency: dict[str, float]  # this step's start latency stats (seconds)
    memory_used: int  # host memory in use beyond its level before the first step (bytes; below it: negative)
    cgroup_memory: int | None  # charged to the experiment's memory cgroups (bytes)
    processes: int | None  # in the experiment's pids cgroups (VEs and monitors)
    elapsed: float  # seconds since the ramp began

    @property
    def good(self) -> int:
        """VEs running that did not fail."""
        return self.running - self.failed_running

    @property
    def memory_per_ve(self) -> float | None:
        """None when host memory in use did not grow: on a shared host, others freed more than the VEs took."""
        return self.memory_used / self.running if self.running and self.memory_used > 0 else None

    @property
    def processes_per_ve(self) -> float | None:
        return self.processes / self.running if self.running and self.processes is not None else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["good"] = self.good
        data["memory_per_ve"] = self.memory_per_ve
        data["processes_per_ve"] = self.processes_per_ve
        return data


@dataclass(frozen=True)
class VEFailure:
    """One VE of a step that did not get going, and the host limit behind it if one is named."""

    index: int
    reason: str
    limit: HostLimit | None = None
    kernel: str = ""


@dataclass(frozen=True)
class StepObservation:
    """What the ramp saw of one step, for decide()."""

    latencies: list[float]
    failures: list[VEFailure] = field(default_factory=list)
    pids_refused: int = 0
    pids_events: str = ""  # where the kernel counted it
    oom_kills: int = 0  # processes the kernel's OOM killer ended in the experiment's memory cgroup
    oom_events: str = ""  # where the kernel counted them
    tmpfs_full: bool = False
    root: str = ""


@dataclass(frozen=True)
class Headroom:
    """Whether the next step fits: memory kept for the host, PIDs below pid_max."""

    memory_available: int
    memory_per_ve: float
    processes_in_use: int
    processes_per_ve: float
    pid_limit: int
    next_step: int
    # --ve-memory-max: the experiment's limit and its charge now (bytes; None: no limit), and
    # what the next step's starters take of it (on cgroup v1 they are charged there).
    budget: int | None = None
    budget_used: int = 0
    budget_kept: int = 0

    @property
    def budget_left(self) -> float | None:
        return None if self.budget is None else self.budget - self.budget_used - self.budget_kept

    @property
    def fitting(self) -> int:
        """How many of the next step's VEs fit in all three (0 to next_step)."""
        memory = (self.memory_available - host.MEMORY_RESERVE) / self.memory_per_ve
        processes = (self.pid_limit - self.processes_in_use - host.PROCESS_RESERVE) / self.processes_per_ve
        counts = [self.next_step, int(memory), int(processes)]
        if self.budget_left is not None:
            counts.append(int(self.budget_left / self.memory_per_ve))
        return max(0, min(counts))


def memory_per_ve_ahead(points: list[RampPoint], budget: float) -> float:
    """The memory a VE of the next step is counted at: the base and init's budget until a step
    measured enough VEs, then what the last such step measured (host memory or, if larger,
    the VEs' cgroups' charge) with a margin for what grows with the count. What the host has
    available is read anew before every step, so an error is never carried further."""
    measured = [point for point in points if point.running >= MEASURED_RUNNING]
    if not measured:
        return budget
    last = measured[-1]
    charged = last.cgroup_memory / last.running if last.cgroup_memory else None
    figures = [figure for figure in (last.memory_per_ve, charged) if figure]
    return max(figures) * MEASURED_MARGIN if figures else budget


@dataclass
class RampResult:
    """A ramp's curve and the reason it stopped."""

    bound: int
    bound_by: str  # the preflight limit that set the bound, in words
    points: list[RampPoint] = field(default_factory=list)
    stop: RampStop | None = None
    slo: list[str] = field(default_factory=list)

    @property
    def reached(self) -> int:
        """VEs running without a failure when the ramp stopped (the last step's good VEs included)."""
        return self.points[-1].good if self.points else 0

    @property
    def peak(self) -> int:
        """The most VEs running at once, failed ones included."""
        return max((point.running for point in self.points), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reached": self.reached,
            "peak": self.peak,
            "bound": self.bound,
            "bound_by": self.bound_by,
            "slo": self.slo,
            "stop": self.stop.to_dict() if self.stop else None,
            "points": [point.to_dict() for point in self.points],
        }

    def describe(self) -> str:
        stop = self.stop
        words = f"{stop.words}" if stop else "not stopped"
        return f"ramp reached {self.reached} VEs running; stopped: {words}"


def ramp_lines(result: RampResult) -> list[str]:
    """The ramp in the terminal: count reached, what stopped it, and its curve by step."""
    stop = result.stop
    lines = [
        f"Ramp (--ve-count=max): reached {result.reached} VEs running without a failure "
        f"({result.peak} running at most; bound {result.bound})"
    ]
    if stop is not None:
        lines.append(f"  stopped by     : {stop.limit}: {stop.words}")
        if stop.kernel:
            lines.append(f"  kernel's words : {stop.kernel}")
        if stop.setting:
            lines.append(f"  raise it with  : {stop.setting}")
    if result.slo:
        lines.append(f"  objectives     : {', '.join(result.slo)}")
    lines.append(f"  bound          : {result.bound_by}")
    lines.append("  step  VEs          running failed  p50 ms  p99 ms  MiB/VE host  MiB/VE cgroup  processes/VE")
    for point in result.points:
        host_mib = f"{point.memory_per_ve / MIB:.2f}" if point.memory_per_ve is not None else "-"
        cgroup_mib = (
            f"{point.cgroup_memory / point.running / MIB:.2f}" if point.cgroup_memory and point.running else "-"
        )  # noqa: E501
        per = f"{point.processes_per_ve:.1f}" if point.processes_per_ve is not None else "-"
        p50, p99 = (f"{point.latency[key] * 1000:.1f}" if key in point.latency else "-" for key in ("p50", "p99"))
        lines.append(
            f"  {point.step:>4}  {f've{point.first}-ve{point.last}':<12} {point.running:>7} {point.failed:>6} "
            f"{p50:>7} {p99:>7} {host_mib:>12} {cgroup_mib:>14} {per:>13}"
        )
    return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def decide(seen: StepObservation, slos: tuple[Slo, ...], step: int) -> RampStop | None:
    """Whether the ramp stops after this step, and why (order: see the module's docstring)."""
    named = [failure for failure in seen.failures if failure.limit is not None]
    if named:
        first = named[0]
        assert first.limit is not None
        count = sum(1 for failure in named if failure.limit == first.limit)
        return RampStop(
            first.limit.name,
            f"{first.limit.words}: ve{first.index}" + (f" and {count - 1} more" if count > 1 else ""),
            first.kernel,
            first.limit.setting,
        )
    if seen.pids_refused:
        return RampStop(
            "pids",
            f"host limit: the experiment's pids budget refused {seen.pids_refused} forks (pids.max)",
            f"{seen.pids_events}: max {seen.pids_refused}",
            "--ve-pids-max (pids.max of the experiment's cgroup)",
        )
    if seen.oom_kills:
        return RampStop(
            "memory",
            f"the experiment's memory limit: the kernel's OOM killer ended {seen.oom_kills} of its processes",
            f"{seen.oom_events}: oom_kill {seen.oom_kills}",
            "--ve-memory-max (the experiment's memory cgroup), or more memory",
        )
    if seen.tmpfs_full:
        limit = tmpfs_limit(seen.root)
        return RampStop(limit.name, limit.words, f"statvfs({seen.root}): no free blocks or inodes left", limit.setting)
    if seen.failures:
        first = seen.failures[0]
        more = f" and {len(seen.failures) - 1} more" if len(seen.failures) > 1 else ""
        return RampStop("failure", f"ve{first.index} failed{more}, for no host limit named: {first.reason}")
    for slo in slos:
        value = slo.broken_by(seen.latencies)
        if value is not None:
            return RampStop(
                "slo",
                f"objective {slo} broken: {slo.metric} of step {step}'s {len(seen.latencies)} starts was {_ms(value)}",
                setting="a looser --ve-slo",
            )
    return None


def headroom_stop(room: Headroom) -> RampStop | None:
    """Stop before a step that would take the host's memory below its reserve or PIDs past pid_max."""
    need = room.next_step * room.memory_per_ve
    if room.memory_available - need < host.MEMORY_RESERVE:
        return RampStop(
            "memory",
            f"host limit: the next step of {room.next_step} VEs at {room.memory_per_ve / MIB:.2f} MiB each would "
            f"leave less than the {host.MEMORY_RESERVE // MIB} MiB kept for the host",
            f"/proc/meminfo: MemAvailable: {room.memory_available // 1024} kB",
            "more memory, or fewer VEs",
        )
    if room.budget_left is not None and need > room.budget_left:
        # Past it the kernel OOM-kills inside the experiment: VEs being started, or (v1) a starter.
        return RampStop(
            "memory",
            f"host limit: the next step of {room.next_step} VEs at {room.memory_per_ve / MIB:.2f} MiB each would "
            f"take the experiment past its memory limit (--ve-memory-max), {room.budget_kept // MIB} MiB of it "
            "kept for the starters",
            f"memory cgroup: limit {room.budget // MIB} MiB, {room.budget_used // MIB} MiB in use",
            "--ve-memory-max",
        )
    processes = room.processes_in_use + room.next_step * room.processes_per_ve + host.PROCESS_RESERVE
    if processes > room.pid_limit:
        return RampStop(
            "pids",
            f"host limit: the next step of {room.next_step} VEs at {room.processes_per_ve:.1f} processes each "
            f"would leave fewer than {host.PROCESS_RESERVE} of the host's {room.pid_limit} PIDs free",
            f"/proc/loadavg: {room.processes_in_use} threads; kernel.pid_max/threads-max: {room.pid_limit}",
            "kernel.pid_max and kernel.threads-max (--ve-tune-host raises them)",
        )
    return None


def bound_stop(config: ExperimentConfig, bound_by: host.Requirement | None) -> RampStop:
    """The ramp reached the bound the preflight set: name the limit that set it."""
    if bound_by is None:
        if config.network == "bridge" and config.count < 100_000:
            return RampStop(
                "addresses",
                f"reached the {config.count} VEs --ve-subnet {config.subnet} has addresses for",
                setting="a larger --ve-subnet",
            )
        return RampStop("bound", f"reached the {config.count} VEs this tool supports")
    return RampStop(
        _bound_limit_name(bound_by.what),
        f"reached the bound the host's limits set: {bound_by.what} has room for {config.count} VEs "
        f"({bound_by.per_ve} per VE)",
        f"{bound_by.what} = {bound_by.have}",
        bound_by.setting,
    )


def _bound_limit_name(what: str) -> str:
    for key, name in (
        ("pid_max", "pids"),
        ("threads", "pids"),
        ("file", "files"),
        ("keys", "keys"),
        ("tmpfs", "tmpfs"),
        ("memory", "memory"),
    ):
        if key in what:
            return name
    return "bound"


class Ramp:
    """Runs the ramp on an experiment set up with --ve-count=max (no clones yet)."""

    def __init__(self, experiment: Experiment, status: Status = NO_STATUS) -> None:
        if not experiment.config.ramp:
            raise ValueError("a ramp needs a config made with count=max")
        self.experiment = experiment
        self.config = experiment.config
        self.bound_by = experiment.ramp_bound_by
        self.status = status

    def run(self) -> RampResult:
        config, experiment = self.config, self.experiment
        result = RampResult(
            bound=config.count,
            bound_by=bound_stop(config, self.bound_by).words,
            slo=[str(slo) for slo in config.slo],
        )
        experiment.ramp_result = result
        began = time.monotonic()
        baseline = host.memory_available()
        figures = host.ve_budget(config)
        starters_charge = host.starters_memory(config)
        started = 0
        sizes = step_sizes(config.ramp_step, config.ramp_growth)
        for number in itertools.count(1):
            if started >= config.count:
                result.stop = bound_stop(config, self.bound_by)
                break
            last_point = result.points[-1] if result.points else None
            budget, budget_used = cgroups.memory_budget_use(config.tag) or (None, 0)
            room = Headroom(
                memory_available=host.memory_available(),
                memory_per_ve=memory_per_ve_ahead(result.points, figures.memory),
                processes_in_use=host.processes_in_use(),
                processes_per_ve=max(last_point.processes_per_ve or 0.0, figures.processes)
                if last_point
                else figures.processes,
                pid_limit=min(_sysctl("kernel/pid_max"), _sysctl("kernel/threads-max")),
                next_step=min(next(sizes), config.count - started),
                budget=budget,
                budget_used=budget_used,
                budget_kept=starters_charge,
            )
            # Near the host's limits the step is cut to what fits, so the count reached is the
            # host's, not the step size's; one cut to a sliver is not worth its starts.
            step = room.fitting
            if step < max(1, SHORTEST_STEP_SHARE * room.next_step):
                result.stop = headroom_stop(room) or bound_stop(config, self.bound_by)
                break
            first, last = started + 1, started + step
            started = last
            seen = self._step(first, last)
            result.points.append(self._measure(number, first, last, seen, baseline, began))
            self.status(
                f"lxcexp: ramp step {number} (ve{first}-ve{last}): {result.reached} running, "
                f"{len(seen.failures)} failed, p99 {_ms(max(seen.latencies, default=0.0))}"
            )
            result.stop = decide(seen, config.slo, number)
            if result.stop is not None:
                break
        experiment.progress(f"lxcexp: {result.describe()}")
        return result

    def _step(self, first: int, last: int) -> StepObservation:
        """Create, start and settle veFIRST..veLAST; what the ramp saw of them."""
        config, experiment = self.config, self.experiment
        try:
            experiment.create(first, last)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The clones themselves did not fit: the step's VEs cannot run.
            limit = classify(str(error), config.root) or tmpfs_limit(config.root)
            failure = VEFailure(first, f"creating its clone: {error}", limit, f"{error.strerror}: {error.filename}")
            experiment.ramp_created = last
            return StepObservation([], [failure], tmpfs_full=tmpfs_full(config.root), root=config.root)
        experiment.ramp_created = last
        refused_before = cgroups.pids_refused(config.tag)
        oom_kills_before = cgroups.memory_events(config.tag, None, "oom_kill")
        results = experiment.start(first, last, self.status)
        self._settle(results)
        failures = [failure for result in results if (failure := self._failure(result)) is not None]
        refused = cgroups.pids_refused(config.tag) - refused_before
        budget = cgroups.pids_budget_path(config.tag) or ""
        return StepObservation(
            latencies=[result.latency for result in results if result.ok],
            failures=failures,
            pids_refused=refused if config.pids_max else 0,
            pids_events=os.path.join(budget, "pids.events"),
            oom_kills=cgroups.memory_events(config.tag, None, "oom_kill") - oom_kills_before,
            oom_events=cgroups.oom_kill_file(config.tag),
            tmpfs_full=tmpfs_full(config.root),
            root=config.root,
        )

    def _settle(self, results: list[StartResult]) -> None:
        """Wait until every VE that started has begun its workload or died (or the tmpfs is full)."""
        deadline = time.monotonic() + SETTLE_SECONDS[self.config.init]
        pending = [result for result in results if result.ok]
        while pending and time.monotonic() < deadline and not tmpfs_full(self.config.root):
            pending = [result for result in pending if not self._begun(result) and _alive(result.pid)]
            if pending:
                time.sleep(0.2)

    def _begun(self, result: StartResult) -> bool:
        return read_log(self.experiment.layout.ve_workload_log(result.index)).began is not None

    def _failure(self, result: StartResult) -> VEFailure | None:
        layout, root = self.experiment.layout, self.config.root
        log = read_log(layout.ve_workload_log(result.index))
        # A VE that runs and began is failed only by what its own logs say; one that did
        # not get going may also have been stopped by the full tmpfs, which its logs cannot say.
        going = result.ok and _alive(result.pid) and log.began is not None
        logs = (layout.ve_lxc_log(result.index), layout.ve_workload_log(result.index))
        try:
            found = ve_limit(
                root,
                *logs,
                full_tmpfs=not going,
                host_agrees=checker(root, self.config.tag, layout.ve_name(result.index)),
            )
        except UnsafeVEFile as refusal:
            return VEFailure(result.index, f"its lxc.log is {refusal.found}")
        limit, kernel = found if found else (None, "")
        if not result.ok:
            error = result.error or "failed to start"
            if limit is None and (limit := classify(error, root)) is not None:
                kernel = error
            return VEFailure(result.index, f"failed to start: {error}", limit, kernel)
        if not _alive(result.pid):
            return VEFailure(result.index, "its init exited right after the start", limit, kernel)
        if log.began is None:
            return VEFailure(result.index, "did not begin its workload in time", limit, kernel)
        if limit is not None:
            return VEFailure(result.index, "its workload hit a host limit", limit, kernel)
        expected = expected_exit_status(self.config.workload)
        if log.finished and expected is not None and log.exit_status != expected:
            said = f": {log.output[-1]}" if log.output else ""
            return VEFailure(result.index, f"its command ended with rc={log.exit_status}{said}")
        return None

    def _measure(
        self, number: int, first: int, last: int, seen: StepObservation, baseline: int, began: float
    ) -> RampPoint:
        experiment = self.experiment
        running = sum(1 for result in experiment.starts.values() if result.ok and _alive(result.pid))
        stats = latency_stats(seen.latencies)
        return RampPoint(
            step=number,
            first=first,
            last=last,
            running=running,
            started=len(seen.latencies),
            failed=len(seen.failures),
            failed_running=sum(
                1 for f in seen.failures if f.index in experiment.starts and _alive(experiment.starts[f.index].pid)
            ),
            latency={key: stats[key] for key in ("p50", "p90", "p99", "max") if key in stats},
            memory_used=baseline - host.memory_available(),
            cgroup_memory=cgroups.subtree_counter(self.config.tag, "memory", "memory.usage_in_bytes"),
            processes=_steady_processes(self.config.tag),
            elapsed=round(time.monotonic() - began, 3),
        )


def _steady_processes(tag: str, interval: float = 0.2, within: float = 1.0) -> int | None:
    """The experiment's process count once two reads `interval` apart agree (or `within`
    seconds passed): a VE that began its workload may still run a short-lived process of
    its start, which a count taken right after the starts would add to the curve."""
    deadline = time.monotonic() + within
    count = cgroups.subtree_counter(tag, "pids", "pids.current")
    while count is not None and time.monotonic() < deadline:
        time.sleep(interval)
        count, before = cgroups.subtree_counter(tag, "pids", "pids.current"), count
        if count == before:
            break
    return count


def _alive(pid: int | None) -> bool:
    """Whether a VE's init runs: its /proc entry exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _sysctl(name: str) -> int:
    return host.read_int(f"/proc/sys/{name}")
