"""The ramp's options, its steps, and the logic that stops it (no host needed)."""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools

import pytest

from pytest_lxcexp.engine import cgroups, host, ramp
from pytest_lxcexp.engine.config import DEFAULT_VE_PIDS_MAX, ConfigError, build_config
from pytest_lxcexp.engine.faults import classify, tmpfs_limit
from pytest_lxcexp.engine.progress import Counts, RecentRate, eta_text, status_text
from pytest_lxcexp.engine.ramp import (
    MEASURED_MARGIN,
    Headroom,
    RampPoint,
    StepObservation,
    VEFailure,
    bound_stop,
    decide,
    headroom_stop,
    memory_per_ve_ahead,
)
from pytest_lxcexp.engine.slo import Slo, parse_duration, parse_slos, step_sizes

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("start_p99:500ms", (Slo("start_p99", 0.5),)),
        (" start_p99 : 1.5s ", (Slo("start_p99", 1.5),)),
        ("start_p50:10ms,start_max:2s", (Slo("start_p50", 0.01), Slo("start_max", 2.0))),
        ("", ()),
    ],
)
def test_slos_parse(text: str, expected: tuple[Slo, ...]) -> None:
    assert parse_slos("--ve-slo", text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("start_p99", "'start_p99' is not METRIC:DURATION (e.g. start_p99:500ms)"),
        ("p99:500ms", "'p99' is not one of start_p50, start_p90, start_p99, start_max"),
        ("start_p99:500", "'500' is not a duration (use ms or s, e.g. 500ms or 1.5s)"),
        ("start_p99:0ms", "'0ms' must be more than zero"),
        ("start_p99:-5ms", "'-5ms' is not a duration (use ms or s, e.g. 500ms or 1.5s)"),
        ("start_p99:5ms,start_p99:6ms", "start_p99 is given twice"),
    ],
)
def test_bad_slos_name_the_option_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_slos("--ve-slo", text)
    assert str(caught.value) == f"--ve-slo: {reason}"


def test_durations_and_slo_text_round_trip() -> None:
    assert parse_duration("--x", "250ms") == 0.25
    assert str(Slo("start_p99", 0.05)) == "start_p99:50ms"
    assert parse_slos("--ve-slo", str(Slo("start_p90", 0.125))) == (Slo("start_p90", 0.125),)


def test_count_max_is_a_ramp_bounded_by_the_subnet() -> None:
    config = build_config(count="max", subnet="10.107.0.0/24", slo="start_p99:50ms", ramp_step="5", ramp_growth="2")
    assert config.ramp and config.count == 253 and config.subnet == ipaddress.IPv4Network("10.107.0.0/24")
    assert (config.ramp_step, config.ramp_growth, config.slo) == (5, 2.0, (Slo("start_p99", 0.05),))
    assert build_config(count="max", network="none").count == 100_000
    # The marker keeps the config: the objectives come back as they were.
    assert type(config).from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"count": "lots"},
            "--ve-count: 'lots' is not a positive whole number; or max, to ramp up until the host stops",
        ),
        ({"slo": "start_p99:50ms"}, "--ve-slo: applies to a ramp only: use it with --ve-count=max"),
        (
            {"count": "max", "ramp_growth": "0.9"},
            "--ve-ramp-growth: '0.9' must be between 1 (steps of one size) and 10",
        ),
        ({"count": "max", "ramp_growth": "x"}, "--ve-ramp-growth: 'x' is not a number"),
        ({"count": "max", "ramp_step": "0"}, "--ve-ramp-step: 0 is not a positive whole number (must be at least 1)"),
        ({"pids_max": "many"}, "--ve-pids-max: 'many' is not a positive whole number"),
        ({"pids_max": "total:many"}, "--ve-pids-max: 'many' is not a positive whole number"),
        ({"pids_max": "each:5"}, "--ve-pids-max: 'each:5' is not N, max, ve:N or total:N"),
        ({"pids_max": "512,ve:64"}, "--ve-pids-max: 've:64': the ve limit is given twice"),
        ({"pids_max": "5000000"}, "--ve-pids-max: 5000000 is more than the supported maximum of 4194304"),
    ],
)
def test_bad_ramp_options_are_usage_errors(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(**values)
    assert str(caught.value) == message


def test_ramp_steps_grow() -> None:
    assert list(itertools.islice(step_sizes(10, 2.0), 4)) == [10, 20, 40, 80]
    assert list(itertools.islice(step_sizes(5, 1.0), 3)) == [5, 5, 5]
    # Growth that rounds to nothing still starts a VE per step.
    assert list(itertools.islice(step_sizes(1, 1.2), 4)) == [1, 1, 1, 2]


PIDS = classify("sh: can't fork: Resource temporarily unavailable")
SLO = (Slo("start_p99", 0.05),)


def test_a_named_host_limit_stops_the_ramp_in_the_kernels_words() -> None:
    seen = StepObservation(
        latencies=[0.01] * 5,
        failures=[
            VEFailure(7, "its workload hit a host limit", PIDS, "sh: can't fork: Resource temporarily unavailable"),
            VEFailure(9, "its workload hit a host limit", PIDS, "sh: can't fork: Resource temporarily unavailable"),
        ],
    )
    stop = decide(seen, SLO, step=2)
    assert stop is not None and stop.limit == "pids" and stop.named
    assert stop.words.endswith(": ve7 and 1 more")
    assert stop.kernel == "sh: can't fork: Resource temporarily unavailable"
    assert "--ve-pids-max" in stop.setting and "kernel.pid_max" in stop.setting


def test_the_order_of_reasons() -> None:
    tmpfs = tmpfs_limit("/r")
    # A named limit wins over the pids budget, the tmpfs, unnamed failures and the objective.
    everything = StepObservation(
        latencies=[1.0],
        failures=[VEFailure(1, "failed to start: ?"), VEFailure(2, "x", tmpfs, "No space left on device")],
        pids_refused=3,
        pids_events="/sys/fs/cgroup/pids/lxcexp-t/pids.events",
        tmpfs_full=True,
        root="/r",
    )
    assert decide(everything, SLO, 1).limit == "tmpfs"
    budget = StepObservation([1.0], [VEFailure(1, "?")], 3, "/cg/pids.events", tmpfs_full=True, root="/r")
    stop = decide(budget, SLO, 1)
    assert (stop.limit, stop.kernel) == ("pids", "/cg/pids.events: max 3")
    oom = StepObservation([1.0], [VEFailure(1, "?")], oom_kills=2, oom_events="/cg/m/memory.oom_control", root="/r")
    stop = decide(dataclasses.replace(oom, tmpfs_full=True), SLO, 1)  # before the tmpfs and unnamed failures
    assert (stop.limit, stop.kernel) == ("memory", "/cg/m/memory.oom_control: oom_kill 2")
    assert "OOM killer ended 2 of its processes" in stop.words and "--ve-memory-max" in stop.setting
    full = decide(StepObservation([1.0], [VEFailure(1, "?")], tmpfs_full=True, root="/r"), SLO, 1)
    assert (full.limit, full.setting) == ("tmpfs", "--ve-tmpfs-size")
    unnamed = decide(StepObservation([1.0], [VEFailure(4, "did not begin its workload in time")]), SLO, 1)
    assert unnamed.limit == "failure" and not unnamed.named and "ve4" in unnamed.words
    slow = decide(StepObservation([0.01] * 98 + [0.2] * 2), SLO, 3)  # nearest rank: the 99th of 100
    assert slow.limit == "slo" and slow.words == (
        "objective start_p99:50ms broken: start_p99 of step 3's 100 starts was 200.0 ms"
    )
    assert decide(StepObservation([0.01] * 100), SLO, 3) is None
    assert decide(StepObservation([0.2]), (), 3) is None  # no objective, nothing failed


def test_the_next_step_must_leave_the_host_its_reserves() -> None:
    room = Headroom(
        memory_available=host.MEMORY_RESERVE + 100 * MIB,
        memory_per_ve=1.5 * MIB,
        processes_in_use=1000,
        processes_per_ve=3,
        pid_limit=32768,
        next_step=50,
    )
    assert headroom_stop(room) is None
    memory = headroom_stop(Headroom(**{**room.__dict__, "next_step": 100}))
    assert memory.limit == "memory" and memory.kernel.startswith("/proc/meminfo: MemAvailable: ")
    pids = headroom_stop(Headroom(**{**room.__dict__, "processes_in_use": 31700}))
    assert pids.limit == "pids" and "kernel.pid_max" in pids.setting
    # What fits of a step: 100 MiB above the reserve hold 66 VEs of 1.5 MiB; 68 PIDs above
    # pid_max's reserve hold 22 VEs of 3 processes.
    assert room.fitting == 50
    assert Headroom(**{**room.__dict__, "next_step": 100}).fitting == 66
    assert Headroom(**{**room.__dict__, "next_step": 100, "processes_in_use": 31700}).fitting == 22
    assert Headroom(**{**room.__dict__, "memory_available": host.MEMORY_RESERVE // 2}).fitting == 0


def test_the_next_step_must_fit_the_experiments_memory_limit() -> None:
    """--ve-memory-max below what the host has: past it the kernel OOM-kills inside the
    experiment (on cgroup v1 the starters first, as a ramp under 100 MiB showed), so the ramp
    cuts its steps to the limit as to the host's reserve, and stops there, naming it."""
    room = Headroom(
        memory_available=8 << 30,
        memory_per_ve=1.5 * MIB,
        processes_in_use=1000,
        processes_per_ve=3,
        pid_limit=32768,
        next_step=100,
        budget=200 * MIB,
        budget_used=50 * MIB,
        budget_kept=64 * MIB,
    )
    assert room.fitting == 57  # 86 MiB left of the limit, at 1.5 MiB a VE
    assert Headroom(**{**room.__dict__, "budget": None}).fitting == 100  # no limit: the host's room only
    full = headroom_stop(Headroom(**{**room.__dict__, "budget_used": 130 * MIB}))
    assert full is not None and full.limit == "memory" and full.setting == "--ve-memory-max"
    assert full.kernel == "memory cgroup: limit 200 MiB, 130 MiB in use"
    assert headroom_stop(Headroom(**{**room.__dict__, "next_step": 50})) is None


def test_the_memory_limit_and_its_use_are_read_from_the_experiments_cgroup(tmp_path, monkeypatch) -> None:
    top = tmp_path / "lxcexp-t1"
    top.mkdir()
    monkeypatch.setattr(cgroups, "memory_hierarchy", lambda: str(tmp_path))
    monkeypatch.setattr(cgroups, "unified_hierarchy", lambda: None)
    (top / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "none"
    (top / "memory.usage_in_bytes").write_text("4096\n")
    assert cgroups.memory_budget_use("t1") is None
    (top / "memory.limit_in_bytes").write_text(f"{100 * MIB}\n")
    assert cgroups.memory_budget_use("t1") == (100 * MIB, 4096)
    monkeypatch.setattr(cgroups, "unified_hierarchy", lambda: str(tmp_path))
    (top / "memory.max").write_text("max\n")
    (top / "memory.current").write_text("8192\n")
    assert cgroups.memory_budget_use("t1") is None
    (top / "memory.max").write_text(f"{200 * MIB}\n")
    assert cgroups.memory_budget_use("t1") == (200 * MIB, 8192)
    assert cgroups.memory_budget_use("gone") is None


def _point(running: int, memory_used: int, cgroup_memory: int | None) -> RampPoint:
    return RampPoint(1, 1, running, running, running, 0, 0, {}, memory_used, cgroup_memory, None, 1.0)


def test_memory_per_ve_ahead_is_the_budget_until_enough_ves_ran() -> None:
    budget = 1.5 * MIB
    assert memory_per_ve_ahead([], budget) == budget
    assert memory_per_ve_ahead([_point(50, 50 * MIB, 45 * MIB)], budget) == budget  # too few to tell
    # Then what the host lost per VE, or the cgroups' charge if larger, with the margin.
    measured = [_point(50, 50 * MIB, 45 * MIB), _point(1000, 1000 * MIB, 900 * MIB)]
    assert memory_per_ve_ahead(measured, budget) == pytest.approx(1.0 * MIB * MEASURED_MARGIN)
    others_freed = [_point(1000, -300 * MIB, 900 * MIB)]  # the rest of the host gave memory back
    assert memory_per_ve_ahead(others_freed, budget) == pytest.approx(0.9 * MIB * MEASURED_MARGIN)
    assert memory_per_ve_ahead([_point(1000, -300 * MIB, None)], budget) == budget  # nothing measured


def test_the_bound_names_the_limit_that_set_it() -> None:
    config = build_config(count="max", subnet="10.107.0.0/24")
    assert bound_stop(config, None).limit == "addresses"
    pid_max = host.Requirement("kernel.pid_max", 0, 32768, sysctl="/proc/sys/kernel/pid_max", per_ve=3, fixed=1100)
    stop = bound_stop(config, pid_max)
    assert (stop.limit, stop.kernel) == ("pids", "kernel.pid_max = 32768")
    assert pid_max.allows == (32768 - 1100) // 3


def test_status_text_counts_rate_and_eta() -> None:
    counts = Counts(total=1000, started=250, failed=2, completed=10, done=250, left=750, elapsed=10.0)
    assert status_text(counts) == (
        "lxcexp: 250 started / 248 running / 10 completed / 2 failed of 1000; 25.0 starts/s, ETA 30s"
    )
    waiting = Counts(1000, 1000, 0, 400, done=0, left=600, elapsed=1.0, phase="wait")
    assert status_text(waiting).endswith("0.0 completions/s, ETA -")
    assert (eta_text(59.4), eta_text(125), eta_text(7300)) == ("ETA 59s", "ETA 2m05s", "ETA 2h01m")


def test_the_ramp_bound_is_the_tightest_host_limit() -> None:
    # A 10 MiB tmpfs holds 8 MiB of base and 58 VEs of 24 KiB + 180 pings x 64 bytes: far fewer
    # than any host's PIDs or memory allow, and fewer than the subnet's 253 addresses.
    config = build_config(count="max", subnet="10.107.0.0/24", tmpfs_size="10M")
    bound, limit = host.ramp_bound(config)
    assert (bound, limit.what) == (
        (10 * MIB - host.TMPFS_BASE) // (24 * 1024 + 180 * 64),
        "tmpfs size (--ve-tmpfs-size)",
    )
    assert bound == 58  # 2 MiB at 35.25 KiB per VE
    # A large tmpfs leaves the subnet as the bound.
    assert host.ramp_bound(build_config(count="max", subnet="10.107.0.0/24", tmpfs_size="1G")) == (253, None)
    # Memory does not bound a ramp, however many VEs the budget says the host has room for:
    # the ramp measures it step by step (65,533 VEs at 1.5 MiB would need 96 GiB).
    wide = build_config(count="max", subnet="10.107.0.0/16", tmpfs_size="8G", tune_host=True)
    assert host.ramp_bound(wide) == (65533, None)
    assert "memory available" in [item.what for item in host.shortfalls(wide)]


def test_the_preflight_counts_the_per_ve_figures_of_the_base_and_init() -> None:
    def per_ve(**options: str) -> dict[str, int]:
        config = build_config(count=10, network="none", **options)
        return {item.what: item.per_ve for item in host.requirements(config)}

    busybox = per_ve()
    assert busybox["kernel.pid_max"] == host.PER_VE_BUDGET[("busybox", "workload")].processes == 3
    assert busybox["memory available"] == 3 * MIB // 2
    assert busybox["tmpfs size (--ve-tmpfs-size)"] == 24 * 1024 + 180 * host.TMPFS_PER_PING
    system = per_ve(init="system")  # every hierarchy: each VE's own memory cgroups cost more
    assert system["kernel.pid_max"] == 4 and system["memory available"] == 3 * MIB // 2 + host.MEMORY_CGROUPS_PER_VE
    assert "processes (--ve-pids-max)" not in busybox
    assert per_ve(pids_max="total:100")["processes (--ve-pids-max)"] == 2  # the monitor is outside the budget


@pytest.mark.parametrize(
    ("text", "each", "total"),
    [
        ("", DEFAULT_VE_PIDS_MAX, 0),
        ("512", 512, 0),
        ("ve:512", 512, 0),
        ("max", 0, 0),
        ("0", 0, 0),
        ("total:11", DEFAULT_VE_PIDS_MAX, 11),
        ("total:max", DEFAULT_VE_PIDS_MAX, 0),
        (" 256 , total:20000 ", 256, 20000),
        ("max,total:300", 0, 300),
    ],
)
def test_pids_max_each_and_total(text: str, each: int, total: int) -> None:
    config = build_config(pids_max=text)
    assert (config.ve_pids_max, config.pids_max) == (each, total)


def test_a_ve_pids_limit_below_what_a_ve_runs_is_refused() -> None:
    host.require_pids_budget(build_config(pids_max="2"))  # a busybox VE's init and its ping
    with pytest.raises(ConfigError) as caught:
        host.require_pids_budget(build_config(pids_max="1"))
    assert str(caught.value) == "--ve-pids-max: 1 per VE is below the 2 processes one busybox/workload VE runs"
    with pytest.raises(ConfigError, match="below the 5 processes one debian/system VE runs"):
        host.require_pids_budget(build_config(pids_max="4", base="debian", init="system", base_release="bookworm"))


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("lxc-start: ve1: Too many open files in system", "files"),
        ("Failed to attach veth to bridge: Exchange full", "ports"),
        ("sh: can't fork: Resource temporarily unavailable", "pids"),
        ("Failed to create keyring: Disk quota exceeded", "keys"),
        ("Cannot allocate memory - Failed to clone", "memory"),
        ("neighbour table overflow", "neighbours"),
        ("Failed to allocate a pty: No space left on device", "ptys"),
        ("inotify_add_watch: No space left on device", "space"),
    ],
)
def test_host_limits_are_named_with_what_raises_them(text: str, name: str) -> None:
    limit = classify(text)
    assert limit is not None and limit.name == name and limit.setting
    assert classify("no such thing") is None


class _Clock:
    """time for ramp: sleep() moves monotonic() on, nothing waits."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_process_count_is_taken_once_it_holds_still(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ramp, "time", _Clock())
    reads = iter([7, 6, 6, 5])
    monkeypatch.setattr(ramp.cgroups, "subtree_counter", lambda tag, controller, file: next(reads))
    assert ramp._steady_processes("t") == 6
    counts = iter(range(100, 0, -1))  # never still: the last count when the second is up
    monkeypatch.setattr(ramp.cgroups, "subtree_counter", lambda tag, controller, file: next(counts))
    assert ramp._steady_processes("t", interval=0.2, within=1.0) == 95
    monkeypatch.setattr(ramp.cgroups, "subtree_counter", lambda tag, controller, file: None)
    assert ramp._steady_processes("t") is None  # no pids controller: nothing to wait for


def test_the_status_line_rate_is_the_recent_one() -> None:
    rate = RecentRate(window=30.0)
    assert rate.update(0.0, 0) is None
    # 100 starts a second for a minute, then 2 a second for 30 s: the ETA must follow the 2.
    for second in range(1, 61):
        rate.update(float(second), 100 * second)
    for second in range(61, 91):
        lately = rate.update(float(second), 6000 + 2 * (second - 60))
    assert lately == pytest.approx(2.0, abs=0.1)
    counts = Counts(total=8000, started=6060, failed=0, completed=0, done=6060, left=1940, elapsed=90.0)
    assert status_text(counts).endswith("67.3 starts/s, ETA 29s")  # the average since the first start
    slow = status_text(Counts(**{**counts.__dict__, "recent_rate": lately}))
    assert slow.endswith("2.0 starts/s, ETA 16m10s")
