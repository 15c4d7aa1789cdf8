"""The LXC config lines that confine a VE (engine/protections.py), per init mode and workload."""

from __future__ import annotations

import pytest

from pytest_lxcexp.engine import cgroups, protections
from pytest_lxcexp.engine.config import DEFAULT_VE_PIDS_MAX, build_config
from pytest_lxcexp.engine.fleet import ve_config_text
from pytest_lxcexp.engine.storage import Layout


def config_lines(**options: object) -> list[tuple[str, str]]:
    text = ve_config_text(build_config(**options), Layout("/exp"), 1)
    return [(key.strip(), value.strip()) for key, _, value in (line.partition("=") for line in text.splitlines())]


def values(lines: list[tuple[str, str]], key: str) -> list[str]:
    return [value for name, value in lines if name == key]


def test_a_ping_ve_keeps_only_what_ping_needs() -> None:
    lines = config_lines()
    assert values(lines, "lxc.cap.keep") == ["net_admin net_raw"]
    assert values(lines, "lxc.cap.drop") == []  # liblxc refuses keep and drop together
    assert values(lines, "lxc.seccomp.profile") == ["/exp/.lxcexp/seccomp.policy"]
    assert values(lines, "lxc.mount.auto") == ["proc:mixed sys:ro"]


@pytest.mark.parametrize("unprivileged", [False, True])
def test_a_command_ve_keeps_roots_file_powers_but_no_admin_module_or_mknod(unprivileged: bool) -> None:
    kept = values(config_lines(workload="cmd:true", unprivileged=unprivileged), "lxc.cap.keep")[0].split()
    assert {"chown", "dac_override", "fowner", "kill", "setuid", "net_admin", "net_raw"} <= set(kept)
    assert not {"sys_admin", "mknod", "sys_module", "sys_rawio", "sys_boot", "sys_ptrace"} & set(kept)


def test_mknod_comes_back_only_with_a_device_allow_list() -> None:
    lines = config_lines(workload="cmd:true", cgroups="cpu,pids,devices")
    assert "mknod" in values(lines, "lxc.cap.keep")[0].split()
    keys = {name for name, _ in lines if ".devices." in name}
    assert keys and all(key.startswith(("lxc.cgroup.devices.", "lxc.cgroup2.devices.")) for key in keys)
    assert [value for name, value in lines if name.endswith("devices.deny")] == ["a"]
    allowed = [value for name, value in lines if name.endswith("devices.allow")]
    assert allowed == list(protections.ALLOWED_DEVICES)
    assert not any(rule.startswith("b") and "r" in rule.split()[-1] for rule in allowed)  # no block device read


def test_a_system_init_keeps_sys_admin_behind_the_allow_list_and_seccomp() -> None:
    lines = config_lines(init="system")
    dropped = values(lines, "lxc.cap.drop")[0].split()
    assert "sys_admin" not in dropped and "mknod" not in dropped  # systemd mounts and makes nodes
    assert {"sys_module", "sys_rawio", "sys_time", "mac_admin", "mac_override", "sys_boot"} <= set(dropped)
    assert values(lines, "lxc.seccomp.profile") == ["/exp/.lxcexp/seccomp.policy"]
    assert [value for name, value in lines if name.endswith("devices.deny")] == ["a"]


def test_no_allow_list_where_the_ve_has_no_devices_cgroup() -> None:
    assert not [name for name, _ in config_lines() if ".devices." in name]


def test_the_layers_can_be_left_out_for_the_benchmark(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protections, "LAYERS", ())
    lines = config_lines(workload="cmd:true", cgroups="cpu,pids,devices")
    assert values(lines, "lxc.cap.drop")[0].split() == protections.SYSTEM_DROPPED_CAPS
    assert values(lines, "lxc.seccomp.profile") == [] and not [n for n, _ in lines if ".devices." in n]


def test_the_seccomp_policy_holds_lxcs_default_and_the_keyring_calls() -> None:
    denied = {line.split()[0] for line in protections.SECCOMP_POLICY.splitlines()[4:]}
    with open("/usr/share/lxc/config/common.seccomp") as handle:
        lxcs = {line.split()[0] for line in handle.read().split("[all]")[1].splitlines() if line.strip()}
    assert lxcs <= denied  # nothing of LXC's own left out
    assert {"kexec_load", "open_by_handle_at", "init_module", "finit_module", "delete_module"} <= denied
    assert {"keyctl", "add_key", "request_key"} <= denied
    assert protections.SECCOMP_POLICY.splitlines()[:4] == ["2", "denylist", "reject_force_umount", "[all]"]


def test_the_seccomp_policy_is_written_roots_only(tmp_path) -> None:  # noqa: ANN001
    import os
    import stat

    layout = Layout(str(tmp_path))
    os.makedirs(layout.state_dir)
    protections.write_seccomp_policy(layout)
    protections.write_seccomp_policy(layout)  # again: unchanged, no stray file aside
    assert os.listdir(layout.state_dir) == ["seccomp.policy"]
    assert stat.S_IMODE(os.stat(layout.seccomp_policy).st_mode) == 0o600
    with open(layout.seccomp_policy) as handle:
        assert handle.read() == protections.SECCOMP_POLICY


def test_a_privileged_system_init_is_warned_about() -> None:
    warning = protections.weaker_protection_warning(build_config(init="system"))
    assert warning and "CAP_SYS_ADMIN" in warning and "--ve-unprivileged" in warning
    assert protections.weaker_protection_warning(build_config(init="system", unprivileged=True)) is None
    assert protections.weaker_protection_warning(build_config()) is None


def test_each_ve_gets_a_pids_limit_by_default_and_none_with_max() -> None:
    # This host: pids in a v1 hierarchy (lxc.cgroup.*); a v2-only host gets lxc.cgroup2.pids.max.
    key = cgroups.ve_pids_max_line(1).split(" = ")[0]
    assert key in ("lxc.cgroup.pids.max", "lxc.cgroup2.pids.max")
    assert values(config_lines(), key) == [str(DEFAULT_VE_PIDS_MAX)]
    assert values(config_lines(pids_max="64,total:1000"), key) == ["64"]
    assert values(config_lines(pids_max="max"), key) == []


@pytest.mark.parametrize("init", ["workload", "system"])
def test_proc_irq_is_read_only_in_every_ve(init: str) -> None:
    # proc:mixed leaves /proc/irq writable, guarded by no capability: a privileged VE's root set host IRQ affinities.
    entries = values(config_lines(workload="cmd:true", init=init), "lxc.mount.entry")
    assert "/proc/irq proc/irq none bind,ro,nosuid,nodev,noexec 0 0" in entries, entries


def test_a_memory_limit_per_ve_only_when_asked() -> None:
    key = cgroups.ve_memory_max_line(1).split(" = ")[0]
    assert key in ("lxc.cgroup.memory.limit_in_bytes", "lxc.cgroup2.memory.max")
    assert values(config_lines(), key) == []  # the default: one limit for all VEs, none each
    assert values(config_lines(memory_max="64M,total:1G", cgroups="cpu,pids,memory"), key) == [str(64 * 2**20)]
