"""The preflight's per-VE budget follows the base and init the run uses."""

from __future__ import annotations

from pytest_lxcexp.engine import host
from pytest_lxcexp.engine.config import build_config


def _needs(**options: object) -> dict[str, int]:
    config = build_config(root="/tmp/lxcexp-unit-budget", count=100, network="none", **options)
    return {item.what: item.need for item in host.requirements(config)}


def test_a_debian_system_ve_is_budgeted_as_measured_not_as_busybox() -> None:
    busybox = _needs()
    debian = _needs(base="debian", init="system")
    memory = "memory available"
    assert busybox[memory] == 100 * host.PER_VE_BUDGET[("busybox", "workload")].memory
    per_ve = host.PER_VE_BUDGET[("debian", "system")].memory
    # --ve-init=system's VEs get every hierarchy, memory included, where the host has one.
    assert debian[memory] in (100 * per_ve, 100 * (per_ve + host.MEMORY_CGROUPS_PER_VE))
    extra_processes = 100 * (host.PER_VE_BUDGET[("debian", "system")].processes - 3)
    assert debian["kernel.pid_max"] - busybox["kernel.pid_max"] in range(extra_processes - 50, extra_processes + 50)


def test_an_unknown_rootfs_is_budgeted_as_a_full_distribution(tmp_path) -> None:
    (tmp_path / "sbin").mkdir()
    config = build_config(root="/tmp/lxcexp-unit-budget", base=str(tmp_path), init="system")
    assert host.ve_budget(config) == host.PER_VE_BUDGET[("debian", "system")]
