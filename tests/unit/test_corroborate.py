"""A host limit named only by a VE's own output counts only when the host's counters show it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lxcexp.engine import corroborate, faults, host

PIDS = faults.classify("/bin/sh: can't fork: Resource temporarily unavailable")
ENFILE = faults.classify("sh: write error: Too many open files in system")
EMFILE = faults.classify("sh: Too many open files")


def host_shows_it(limit: faults.HostLimit) -> bool:
    return True


def host_shows_nothing(limit: faults.HostLimit) -> bool:
    return False


@pytest.fixture
def cgroups_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The experiment's pids cgroup and ve1's own, as plain directories with pids.events."""
    budget = tmp_path / "lxcexp-t1"
    (budget / "ve1" / "inner").mkdir(parents=True)
    for directory in (budget, budget / "ve1", budget / "ve1" / "inner"):
        (directory / "pids.events").write_text("max 0\n")
    monkeypatch.setattr(corroborate.cgroups, "pids_budget_path", lambda tag: str(budget))
    monkeypatch.setattr(corroborate.cgroups, "ve_pids_cgroup", lambda tag, name: str(budget / name))
    monkeypatch.setattr(host, "processes_in_use", lambda: 500)
    return budget


def test_a_fork_failure_only_the_ve_printed_is_not_the_hosts(cgroups_at: Path) -> None:
    assert PIDS is not None and not corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")


@pytest.mark.parametrize("where", [".", "ve1", "ve1/inner"])
def test_a_refused_fork_in_the_budget_or_the_ves_own_cgroups_is(cgroups_at: Path, where: str) -> None:
    (cgroups_at / where / "pids.events").write_text("max 3\n")
    assert corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]


def test_a_budget_that_was_full_agrees_after_its_ves_went(cgroups_at: Path) -> None:
    # cgroup v1: the refusal was counted in the failed VE's own cgroup, gone with it, and the
    # budget has room again (3 of 5); its peak still shows it was full.
    (cgroups_at / "ve1" / "inner" / "pids.events").unlink()
    for name, value in (("pids.max", "5"), ("pids.current", "3"), ("pids.peak", "4")):
        (cgroups_at / name).write_text(value + "\n")
    assert not corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]
    (cgroups_at / "pids.peak").write_text("5\n")
    assert corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]
    (cgroups_at / "pids.max").write_text("max\n")  # no budget: no peak to compare
    assert not corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]


def test_a_host_near_pid_max_agrees(cgroups_at: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(corroborate, "_pid_limit", lambda: 520)
    assert corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]


def test_files_memory_and_what_is_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EMFILE is not None and not corroborate.host_agrees(EMFILE, "/x", "t1", "ve1")  # a process's own rlimit
    monkeypatch.setattr(corroborate, "_file_table_near_full", lambda: False)
    assert ENFILE is not None and not corroborate.host_agrees(ENFILE, "/x", "t1", "ve1")
    monkeypatch.setattr(corroborate, "_file_table_near_full", lambda: True)
    assert corroborate.host_agrees(ENFILE, "/x", "t1", "ve1")
    memory = faults.classify("Cannot allocate memory")
    monkeypatch.setattr(host, "memory_available", lambda: 8 << 30)
    assert memory is not None and not corroborate.host_agrees(memory, "/x", "t1", "ve1")
    neighbours = faults.classify("ping: sendmsg: No buffer space available")
    assert neighbours is not None and corroborate.host_agrees(neighbours, "/x", "t1", "ve1")  # not counted here


def test_ve_limit_takes_the_ves_words_only_when_the_host_agrees(tmp_path: Path) -> None:
    lxc_log, workload_log = tmp_path / "lxc.log", tmp_path / "workload.log"
    lxc_log.write_text("")
    workload_log.write_text("lxcexp-begin 1\n/bin/sh: can't fork: Resource temporarily unavailable\n")
    root = str(tmp_path)
    assert (
        faults.ve_limit(root, str(lxc_log), str(workload_log), full_tmpfs=False, host_agrees=host_shows_nothing) is None
    )
    found = faults.ve_limit(root, str(lxc_log), str(workload_log), full_tmpfs=False, host_agrees=host_shows_it)
    assert found is not None and found[0].name == "pids"
    # liblxc's log is written on the host: taken as it says, whatever the check would say.
    lxc_log.write_text("lxc-start ve1 20261201 ERROR start - start.c:1 - Resource temporarily unavailable\n")
    found = faults.ve_limit(root, str(lxc_log), str(workload_log), full_tmpfs=False, host_agrees=host_shows_nothing)
    assert found is not None and found[0].name == "pids"


def test_a_budget_at_its_limit_agrees(cgroups_at: Path) -> None:
    # cgroup v1 counts a refusal in the forking cgroup only, gone with the stopped VE: the
    # experiment's budget still at its pids.max is what is left to show it.
    (cgroups_at / "pids.max").write_text("12\n")
    (cgroups_at / "pids.current").write_text("11\n")
    assert not corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve1")  # type: ignore[arg-type]
    (cgroups_at / "pids.current").write_text("12\n")
    assert corroborate.host_agrees(PIDS, "/nonexistent", "t1", "ve9")  # type: ignore[arg-type]
