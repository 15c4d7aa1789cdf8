"""--ve-memory-max: the experiment's one memory limit, and how an OOM kill inside it is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lxcexp.engine import cgroups, corroborate, faults, host
from pytest_lxcexp.engine.config import MEMORY_MAX_AUTO, ConfigError, ExperimentConfig, build_config


@pytest.mark.parametrize(
    ("given", "each", "total"),
    [
        ("total:auto", 0, MEMORY_MAX_AUTO),
        ("auto", 0, MEMORY_MAX_AUTO),
        ("total:max", 0, 0),
        ("max", 0, 0),  # alone: no limit at all
        ("none", 0, 0),
        ("total:512M", 0, 512 * 2**20),
        (" total : 2G ", 0, 2 * 2**30),
        ("64M", 64 * 2**20, MEMORY_MAX_AUTO),  # a part not given keeps its default
        ("64M,total:1G", 64 * 2**20, 2**30),
        ("total:max,ve:32M", 32 * 2**20, 0),
        ("max,total:1G", 0, 2**30),
    ],
)
def test_the_option_reads_each_ves_limit_and_the_total(given: str, each: int, total: int) -> None:
    config = build_config(memory_max=given)
    assert (config.ve_memory_max, config.memory_max) == (each, total)


def test_the_default_is_an_auto_total_and_none_per_ve() -> None:
    assert build_config().memory_max == MEMORY_MAX_AUTO == ExperimentConfig().memory_max
    assert build_config().ve_memory_max == 0 == ExperimentConfig().ve_memory_max


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("each:2G", "'each:2G' is not SIZE, max, total:SIZE, total:auto or total:max"),
        ("64M,128M", "'128M': the ve limit is given twice"),
        ("ve:auto", "'auto' is not a size"),
        ("total:lots", "'lots' is not a size"),
        ("total:100k", "is smaller than the minimum of 1M"),
    ],
)
def test_bad_values_name_the_option_and_the_reason(given: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(memory_max=given)
    assert caught.value.option == "--ve-memory-max" and reason in str(caught.value)


@pytest.fixture
def v1_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v1 memory hierarchy with the experiment's cgroup and ve2's own below it."""
    hierarchy = tmp_path / "memory"
    (hierarchy / "lxcexp-t1" / "ve2").mkdir(parents=True)
    for directory in (hierarchy / "lxcexp-t1", hierarchy / "lxcexp-t1" / "ve2"):
        (directory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
        (directory / "memory.failcnt").write_text("0\n")
        (directory / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    monkeypatch.setattr(cgroups, "memory_hierarchy", lambda: str(hierarchy))
    monkeypatch.setattr(cgroups, "unified_hierarchy", lambda: None)
    return hierarchy / "lxcexp-t1"


@pytest.fixture
def v2_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup v2 tree: memory.events counts each cgroup's whole subtree."""
    (tmp_path / "lxcexp-t1" / "ve2").mkdir(parents=True)
    for directory in (tmp_path / "lxcexp-t1", tmp_path / "lxcexp-t1" / "ve2"):
        (directory / "memory.events").write_text("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n")
        (directory / "memory.max").write_text("max\n")
    monkeypatch.setattr(cgroups, "memory_hierarchy", lambda: str(tmp_path))
    monkeypatch.setattr(cgroups, "unified_hierarchy", lambda: str(tmp_path))
    return tmp_path / "lxcexp-t1"


def test_the_limit_goes_in_v1s_limit_in_bytes(v1_memory: Path) -> None:
    written = cgroups.set_memory_budget("t1", 96 * 2**20)
    assert written == str(v1_memory / "memory.limit_in_bytes") and Path(written).read_text() == str(96 * 2**20)


def test_the_limit_goes_in_v2s_memory_max(v2_memory: Path) -> None:
    written = cgroups.set_memory_budget("t1", 2**30)
    assert written == str(v2_memory / "memory.max") and Path(written).read_text() == str(2**30)


def test_a_v2_cgroup_without_the_memory_controller_is_said_plainly(v2_memory: Path) -> None:
    (v2_memory / "memory.max").unlink()
    with pytest.raises(RuntimeError, match="has no memory controller"):
        cgroups.set_memory_budget("t1", 2**30)


def test_v1_counts_oom_kills_where_the_process_was_charged(v1_memory: Path) -> None:
    assert cgroups.memory_events("t1", "ve2", "oom_kill") == 0
    (v1_memory / "ve2" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroups.memory_events("t1", "ve2", "oom_kill") == 2  # ve2's own memory cgroup (--ve-cgroups with memory)
    assert cgroups.memory_events("t1", "ve1", "oom_kill") == 0  # no cgroup of its own: the shared one's count
    (v1_memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert cgroups.memory_events("t1", "ve1", "oom_kill") == 1
    (v1_memory / "memory.failcnt").write_text("17\n")
    assert cgroups.memory_events("t1", None, "max") == 17


def test_v2_counts_the_ves_own_subtree_when_it_has_one(v2_memory: Path) -> None:
    (v2_memory / "memory.events").write_text("max 4\noom_kill 1\n")  # another VE's kill, counted above
    assert cgroups.memory_events("t1", "ve2", "oom_kill") == 0
    assert cgroups.memory_events("t1", "ve9", "oom_kill") == 1  # its cgroup is gone: the experiment's
    (v2_memory / "ve2" / "memory.events").write_text("max 4\noom_kill 1\n")
    assert cgroups.memory_events("t1", "ve2", "oom_kill") == 1 and cgroups.memory_events("t1", None, "max") == 4


def test_a_ves_symlink_in_place_of_its_cgroup_is_not_followed(v1_memory: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "memory.oom_control").write_text("oom_kill 5\n")
    (v1_memory / "ve3").symlink_to(elsewhere)
    assert cgroups.memory_events("t1", "ve3", "oom_kill") == 0


def test_a_sigkill_is_named_an_oom_kill_only_when_the_kernel_counted_one(v1_memory: Path, tmp_path: Path) -> None:
    lxc_log, workload_log = tmp_path / "lxc.log", tmp_path / "workload.log"
    lxc_log.write_text("")
    workload_log.write_text("lxcexp-begin 1 ve1 workload=command\nKilled\n")
    agrees = corroborate.checker(str(tmp_path), "t1", "ve1")
    said = faults.explain(str(tmp_path), str(lxc_log), str(workload_log), 137, host_agrees=agrees)
    assert said == "its workload was killed by SIGKILL (rc=137)"  # a kill -9 of its own, say
    (v1_memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    said = faults.explain(str(tmp_path), str(lxc_log), str(workload_log), 137, host_agrees=agrees)
    assert said == f"its workload was killed by SIGKILL (rc=137): {faults.OOM_KILLED.words}"
    # Another signal is not the OOM killer's, whatever the counters say.
    said = faults.explain(str(tmp_path), str(lxc_log), str(workload_log), 143, host_agrees=agrees)
    assert said == "its workload was killed by SIGTERM (rc=143)"


def test_out_of_memory_words_agree_when_the_experiment_hit_its_limit(
    v1_memory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = faults.classify("dd: Cannot allocate memory")
    assert memory is not None
    monkeypatch.setattr(host, "memory_available", lambda: 8 << 30)
    assert not corroborate.host_agrees(memory, "/x", "t1", "ve1")
    (v1_memory / "memory.failcnt").write_text("3\n")
    assert corroborate.host_agrees(memory, "/x", "t1", "ve1")


def test_preflight_refuses_a_total_below_what_the_count_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host, "memory_available", lambda: 16 << 30)
    config = build_config(count=100, memory_max="total:64M", parallel=2)
    (budget,) = [item for item in host.requirements(config) if item.what == host.MEMORY_BUDGET]
    figures = host.ve_budget(config)
    assert budget.need == 100 * figures.memory + 2 * host.MEMORY_PER_STARTER and budget.short
    assert "raise --ve-memory-max" in budget.line()
    roomy = build_config(count=100, memory_max="total:4G", parallel=2)
    assert not [item for item in host.requirements(roomy) if item.what == host.MEMORY_BUDGET][0].short
    # none adds no requirement.
    assert not [
        item
        for item in host.requirements(build_config(count=100, memory_max="total:max"))
        if item.what == host.MEMORY_BUDGET
    ]


def test_preflight_refuses_a_count_the_auto_limit_would_oom_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto sets the host's available memory less its reserve: a count that fits what is
    available (the memory requirement) but not that limit would meet the experiment's OOM
    killer mid-run, so it is refused before anything is made, as an explicit size is."""
    monkeypatch.setattr(host, "memory_available", lambda: host.MEMORY_RESERVE + 512 * 2**20)
    monkeypatch.setattr(cgroups, "memory_hierarchy", lambda: "/sys/fs/cgroup/memory")
    config = build_config(count=400, parallel=2)  # 400 x 1.5 MiB: 600 MiB, past the 512 MiB auto sets
    short = {item.what: item for item in host.shortfalls(config)}
    assert host.MEMORY_AVAILABLE not in short  # 600 MiB of the 1536 MiB available
    budget = short[host.MEMORY_BUDGET]
    assert (
        budget.have == 512 * 2**20 and budget.need == 400 * host.ve_budget(config).memory + 2 * host.MEMORY_PER_STARTER
    )
    assert "--ve-memory-max" in budget.line()
    assert not [
        item for item in host.shortfalls(build_config(count=200, parallel=2)) if item.what == host.MEMORY_BUDGET
    ]
    # A host with less available than its reserve: auto would set no limit at all; refused too.
    monkeypatch.setattr(host, "memory_available", lambda: host.MEMORY_RESERVE // 2)
    assert host.MEMORY_BUDGET in {item.what for item in host.shortfalls(build_config(count=2))}
    # Where there is no memory controller, auto sets nothing and needs nothing.
    monkeypatch.setattr(cgroups, "memory_hierarchy", lambda: None)
    assert host.MEMORY_BUDGET not in {item.what for item in host.shortfalls(build_config(count=2))}


def test_a_limit_per_ve_needs_a_memory_cgroup_per_ve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.cgroups, "host_controllers", lambda: {"cpu", "pids", "memory"})
    monkeypatch.setattr(host.cgroups, "ves_get_memory_cgroups", lambda wanted: False)
    with pytest.raises(ConfigError, match="a limit per VE needs a memory cgroup per VE: add memory to --ve-cgroups"):
        host.require_memory_budget(build_config(memory_max="64M"))
    host.require_memory_budget(build_config(memory_max="total:64M"))  # one limit for all: no cgroup per VE
    monkeypatch.setattr(host.cgroups, "ves_get_memory_cgroups", lambda wanted: True)
    host.require_memory_budget(build_config(memory_max="64M"))


def test_a_limit_per_ve_below_what_one_ve_uses_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.cgroups, "host_controllers", lambda: {"cpu", "pids", "memory"})
    monkeypatch.setattr(host.cgroups, "ves_get_memory_cgroups", lambda wanted: True)
    with pytest.raises(ConfigError, match="1 MiB per VE is below the 15 MiB one debian/system VE may use"):
        host.require_memory_budget(build_config(memory_max="1M", base="debian", init="system", base_release="bookworm",
                                                mirror="http://example.invalid/debian"))  # fmt: skip


def test_without_a_memory_controller_only_the_default_goes_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host.cgroups, "host_controllers", lambda: {"cpu", "pids"})
    host.require_memory_budget(build_config())
    for given in ("total:1G", "64M"):
        with pytest.raises(ConfigError, match="this host has no memory cgroup controller"):
            host.require_memory_budget(build_config(memory_max=given))


def test_a_v2_root_that_does_not_hand_memory_down_refuses_a_total_and_auto_sets_none(
    v2_memory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host.cgroups, "host_controllers", lambda: {"cpu", "pids", "memory"})
    monkeypatch.setattr(host.cgroups, "ves_get_memory_cgroups", lambda wanted: True)  # v2: every VE has one
    (v2_memory.parent / "cgroup.subtree_control").write_text("cpu pids\n")
    with pytest.raises(ConfigError, match="does not hand the memory controller down"):
        host.require_memory_budget(build_config(memory_max="total:1G"))
    assert host.memory_budget(build_config()) is None  # auto: no limit, said at setup
    (v2_memory.parent / "cgroup.subtree_control").write_text("cpu memory pids\n")
    host.require_memory_budget(build_config(memory_max="total:1G"))
    assert host.memory_budget(build_config(memory_max="total:1G")) == 2**30


def test_a_ve_that_stopped_while_the_oom_killer_worked_in_its_cgroup_says_so(v1_memory: Path, tmp_path: Path) -> None:
    from pytest_lxcexp.engine.experiment import Experiment
    from pytest_lxcexp.engine.stats import VERecord

    experiment = Experiment(build_config(root=str(tmp_path / "exp"), count=2, workload="idle"))
    ours = v1_memory.parent / cgroups.container_dir(experiment.config.tag)  # the fixture's hierarchy
    ours.mkdir()
    (ours / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    crashed = VERecord(2, "STOPPED", None, 0, 0, False, True, workload="idle", began=True)
    assert crashed.crashed and experiment._with_fault(crashed).fault is None  # no OOM kill counted
    (ours / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    said = experiment._with_fault(crashed).failure
    assert said == f"crashed: not running (state STOPPED) after it began; {faults.OOM_CRASH_WORDS}"
    running = VERecord(1, "RUNNING", 5, 0, 10, False, True)  # unfinished pings, still up: not a crash
    assert experiment._with_fault(running).fault is None
