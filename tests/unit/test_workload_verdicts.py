"""Workloads: option parsing, the files that configure them, log format version 2, per-VE verdicts."""

from __future__ import annotations

import ipaddress
import shlex
import subprocess

import pytest

from pytest_lxcexp.engine.config import ConfigError, ExperimentConfig, build_config, parse_workload
from pytest_lxcexp.engine.stats import VERecord, results_block, summarize
from pytest_lxcexp.engine.workload import (
    INIT_PATH,
    INIT_SCRIPT,
    SYSTEM_INIT_PATH,
    env_for,
    expected_exit_status,
    init_command,
    mount_auto,
    parse_log,
    ping_target,
    ve_env,
    workload_kind,
)
from pytest_lxcexp.fixtures import describe_failures

SUBNET = ipaddress.IPv4Network("10.50.0.0/24")


def config(**kwargs: object) -> ExperimentConfig:
    values: dict = {"count": 5, "subnet": SUBNET}
    values.update(kwargs)
    return ExperimentConfig(**values)


# -- --ve-workload ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ping-localhost", "ping-localhost"),
        ("ping-gateway", "ping-gateway"),
        ("ping-neighbour", "ping-neighbour"),
        ("ping-neighbor", "ping-neighbour"),
        (" idle ", "idle"),
        ("cmd:echo hi; exit 3", "cmd:echo hi; exit 3"),
        ("cmd: printf '%s\\n' \"a b\" ", "cmd: printf '%s\\n' \"a b\" "),  # shell text kept byte for byte
    ],
)
def test_parse_workload(text: str, expected: str) -> None:
    assert parse_workload("--ve-workload", text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ping", "is not one of ping-localhost, ping-gateway, ping-neighbour, idle or cmd:COMMAND"),
        ("", "is not one of"),
        ("cmd:", "cmd: needs a shell command"),
        ("cmd:   ", "cmd: needs a shell command"),
        ("cmd:echo \0", "NUL"),
    ],
)
def test_parse_workload_rejects(text: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_workload("--ve-workload", text)
    assert caught.value.option == "--ve-workload"
    assert reason in caught.value.reason


@pytest.mark.parametrize("workload", ["ping-gateway", "ping-neighbour"])
def test_network_workloads_need_the_bridge(workload: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(workload=workload, network="none")
    assert caught.value.option == "--ve-workload"
    assert "needs --ve-network=bridge" in caught.value.reason


def test_poweroff_with_idle_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(workload="idle", poweroff=True)
    assert caught.value.option == "--ve-poweroff"


def test_init_mode_is_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        build_config(init="upstart")
    assert caught.value.option == "--ve-init"
    assert build_config(init="system").init == "system"


def test_workload_kinds() -> None:
    assert workload_kind("cmd:true") == "command"
    assert workload_kind("idle") == "idle"
    assert expected_exit_status("cmd:true") == 0
    assert expected_exit_status("hook") == 0
    assert expected_exit_status("ping-gateway") is None


@pytest.mark.parametrize(
    ("workload", "pings", "interval", "init", "seconds"),
    [
        ("ping-localhost", 180, 1.0, "workload", 240.0),
        ("ping-gateway", 10, 0.5, "workload", 125.0),  # + 60 s for the target to answer at all
        ("idle", 180, 1.0, "workload", 60.0),
        ("cmd:true", 180, 1.0, "system", 120.0),  # + 60 s for the distribution's init to boot
    ],
)
def test_effective_timeout_follows_the_workload(
    workload: str, pings: int, interval: float, init: str, seconds: float
) -> None:
    assert config(workload=workload, pings=pings, ping_interval=interval, init=init).effective_timeout == seconds


# -- what goes into the base and the VEs --------------------------------------------------


def test_ping_targets() -> None:
    assert ping_target(config()) == "127.0.0.1"
    assert ping_target(config(workload="ping-gateway")) == "10.50.0.1"
    neighbour = config(workload="ping-neighbour")
    # ve1 is .2, so veK's neighbour ve(K+1) is .K+2; the last VE pings ve1.
    assert [ping_target(neighbour, k) for k in range(1, 6)] == [
        "10.50.0.3",
        "10.50.0.4",
        "10.50.0.5",
        "10.50.0.6",
        "10.50.0.2",
    ]
    assert ping_target(config(workload="idle")) is None
    assert ping_target(config(count=1, workload="ping-neighbour"), 1) == "10.50.0.2"  # alone: itself


def test_env_for_each_workload() -> None:
    assert "WORKLOAD=ping-gateway\n" in env_for(config(workload="ping-gateway"))
    assert "TARGET=10.50.0.1\n" in env_for(config(workload="ping-gateway"))
    assert "POWEROFF=1\n" in env_for(config(poweroff=True))
    command = env_for(config(workload="cmd:echo 'hi there'; exit 3"))
    assert "WORKLOAD=command\n" in command
    line = next(line for line in command.splitlines() if line.startswith("COMMAND="))
    # What `sh` makes of the quoted value is the command itself.
    assert shlex.split(line.removeprefix("COMMAND="))[0] == "echo 'hi there'; exit 3"


def test_command_env_survives_a_real_shell(tmp_path) -> None:
    command = "echo \"$HOME\" 'x'\\''y' `id` $(true); exit 3"
    env = tmp_path / "workload.env"
    env.write_text(env_for(config(workload="cmd:" + command)))
    out = subprocess.run(["sh", "-c", f'. {env}; printf %s "$COMMAND"'], capture_output=True, text=True, check=True)
    assert out.stdout == command


def test_ve_env_only_for_neighbours() -> None:
    assert ve_env(config(), 2) is None
    assert ve_env(config(workload="ping-gateway"), 2) is None
    assert ve_env(config(workload="ping-neighbour"), 2) == "VE=2\nTARGET=10.50.0.4\n"


def test_init_and_mounts_follow_the_init_mode() -> None:
    assert init_command(config()) == INIT_PATH
    assert mount_auto(config()) == "proc:mixed sys:ro"
    assert init_command(config(init="system")) == SYSTEM_INIT_PATH
    assert mount_auto(config(init="system")) == "proc:mixed sys:mixed cgroup:mixed"


def test_init_script_is_posix_sh() -> None:
    # dash (Debian's /bin/sh) and busybox ash both run it: at least it must parse in sh -n.
    result = subprocess.run(["sh", "-n"], input=INIT_SCRIPT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for line in ("lxcexp-begin", "lxcexp-wait", "lxcexp-end", "lxcexp-poweroff", "poweroff -f"):
        assert line in INIT_SCRIPT


# -- log format version 2 -----------------------------------------------------------------

GATEWAY_LOG = """\
lxcexp-begin 1732662000 ve4 workload=ping-gateway
lxcexp-wait 10.50.0.1 0
PING 10.50.0.1 (10.50.0.1): 56 data bytes
64 bytes from 10.50.0.1: seq=0 ttl=64 time=0.101 ms
64 bytes from 10.50.0.1: seq=1 ttl=64 time=0.081 ms

--- 10.50.0.1 ping statistics ---
2 packets transmitted, 2 packets received, 0% packet loss
lxcexp-end 1732662001 rc=0
lxcexp-poweroff 1732662001
"""

# iputils ping (Debian's) words its replies differently from busybox.
IPUTILS_LOG = """\
lxcexp-begin 1732662000 ve1 workload=ping-localhost
PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.
64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time=0.025 ms
64 bytes from localhost (127.0.0.1): icmp_seq=2 ttl=64 time=0.040 ms

--- 127.0.0.1 ping statistics ---
2 packets transmitted, 2 received, 0% packet loss, time 1001ms
lxcexp-end 1732662001 rc=0
"""

COMMAND_LOG = """\
lxcexp-begin 1732662000 ve2 workload=command
hi
lxcexp-error lo-up
second line
lxcexp-end 1732662000 rc=3
"""


def test_gateway_log_with_poweroff() -> None:
    log = parse_log(GATEWAY_LOG)
    assert (log.workload, log.pings, log.exit_status, log.powered_off, log.runs) == ("ping-gateway", 2, 0, True, 1)
    assert log.repliers == ("10.50.0.1",)


def test_iputils_replies_are_counted() -> None:
    log = parse_log(IPUTILS_LOG)
    assert log.pings == 2
    assert log.repliers == ("127.0.0.1",)


def test_command_output_is_kept_without_our_own_lines() -> None:
    log = parse_log(COMMAND_LOG)
    assert log.exit_status == 3
    assert log.output == ("hi", "second line")


def test_command_output_keeps_the_last_lines() -> None:
    lines = "".join(f"line {n}\n" for n in range(100))
    log = parse_log(f"lxcexp-begin 1 ve1 workload=command\n{lines}lxcexp-end 2 rc=0\n")
    assert log.output == tuple(f"line {n}" for n in range(80, 100))


def test_a_restart_starts_a_new_run() -> None:
    log = parse_log(GATEWAY_LOG + "lxcexp-begin 1732662100 ve4 workload=ping-gateway\nlxcexp-wait 10.50.0.1 0\n")
    assert (log.runs, log.began, log.pings, log.finished, log.powered_off) == (2, 1732662100, 0, False, False)


def test_idle_log_has_no_end() -> None:
    log = parse_log("lxcexp-begin 1732662000 ve1 workload=idle\n")
    assert (log.began, log.finished, log.workload) == (1732662000, False, "idle")


# -- verdicts -------------------------------------------------------------------------------


def ve(**kwargs: object) -> VERecord:
    values: dict = {
        "index": 1,
        "state": "RUNNING",
        "pid": 100,
        "pings": 0,
        "expected_pings": 5,
        "finished": True,
        "log_present": True,
        "began": True,
    }
    values.update(kwargs)
    return VERecord(**values)


@pytest.mark.parametrize(
    ("kwargs", "failure"),
    [
        ({"workload": "idle", "finished": False}, None),
        ({"workload": "idle", "finished": False, "began": False}, "no begin line logged (state RUNNING)"),
        (
            {"workload": "idle", "finished": False, "state": "STOPPED", "pid": None},
            "crashed: not running (state STOPPED) after it began",
        ),
        ({"workload": "cmd:true", "exit_status": 0}, None),
        ({"workload": "cmd:exit 3", "exit_status": 3}, "command exited with status 3 (expected 0)"),
        ({"workload": "hook", "exit_status": 1}, "workload exited with status 1 (expected 0)"),
        (
            {"workload": "cmd:sleep 9", "finished": False, "state": "STOPPED"},
            "crashed: not running (state STOPPED) before its command ended",
        ),
        ({"workload": "cmd:sleep 9", "finished": False}, "incomplete: its command has not ended"),
        ({"workload": "ping-gateway", "pings": 5, "target": "10.50.0.1"}, None),
        (
            {"workload": "ping-gateway", "pings": 2, "target": "10.50.0.1"},
            "incomplete: 2 of 5 pings answered by 10.50.0.1",
        ),
        # --ve-poweroff: success is the workload's and a logged poweroff, the VE stopped.
        ({"pings": 5, "poweroff": True, "powered_off": True, "state": "STOPPED", "pid": None}, None),
        (
            {"pings": 5, "poweroff": True, "powered_off": True},
            "its workload ended but it did not power off (still RUNNING)",
        ),
        (
            {"pings": 5, "poweroff": True, "state": "STOPPED", "pid": None},
            "stopped (state STOPPED) after its workload ended, without powering off",
        ),
        (
            {"pings": 2, "poweroff": True, "finished": False, "state": "STOPPED", "pid": None},
            "not running (state STOPPED) after 2 of 5 pings",
        ),
        (
            {"workload": "cmd:false", "exit_status": 1, "poweroff": True, "powered_off": True, "state": "STOPPED"},
            "command exited with status 1 (expected 0)",
        ),
    ],
)
def test_verdicts(kwargs: dict, failure: str | None) -> None:
    record = ve(**kwargs)
    assert record.failure == failure
    assert record.completed is (failure is None)


def test_poweroff_after_success_is_not_a_crash() -> None:
    powered = ve(index=1, pings=5, poweroff=True, powered_off=True, state="STOPPED", pid=None)
    crashed = ve(index=2, pings=1, poweroff=True, finished=False, state="STOPPED", pid=None)
    summary = summarize([powered, crashed], expected_pings=5)
    assert (summary.completed, summary.powered_off, summary.crashed) == (1, 1, 1)
    lines = results_block(summary, "1M")
    assert "Powered off VEs  : 1 (after their workload succeeded)" in lines
    assert "Crashed VEs      : 1 (stopped before their workload ended)" in lines


def test_results_block_names_non_ping_workloads() -> None:
    summary = summarize([ve(workload="idle", finished=False)], workload="idle")
    assert "Completed VEs (idle): 1" in results_block(summary, "1M")


def test_fields_show_in_failures_and_records() -> None:
    record = ve(workload="cmd:exit 3", exit_status=3, output="boom", fields={"zone": "a", "tries": 2})
    assert "ve1: command exited with status 3 (expected 0) [zone=a, tries=2]" in describe_failures([record])
    data = record.to_dict()
    assert data["fields"] == {"zone": "a", "tries": 2}
    assert (data["exit_status"], data["output"], data["completed"]) == (3, "boom", False)
    hash(record)  # records stay hashable with their fields


def test_bridge_mac_is_stable_local_unicast() -> None:
    from pytest_lxcexp.engine.network import bridge_mac

    mac = bridge_mac("vebr")
    assert mac == bridge_mac("vebr") != bridge_mac("vebr2")
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b01  # locally administered, unicast
    assert len(mac.split(":")) == 6


def test_ve_config_follows_init_and_poweroff() -> None:
    from pytest_lxcexp.engine.fleet import ve_config_text
    from pytest_lxcexp.engine.storage import Layout

    layout = Layout("/exp")

    def lines(**kwargs: object) -> dict[str, str]:
        text = ve_config_text(config(**kwargs), layout, 2)
        return {key.strip(): value.strip() for key, _, value in (line.partition("=") for line in text.splitlines())}

    default = lines()
    assert default["lxc.init.cmd"] == INIT_PATH
    assert "sys_boot" not in default["lxc.cap.keep"].split()
    assert "sys_boot" in lines(poweroff=True)["lxc.cap.keep"].split()  # `poweroff -f` goes through reboot(2)
    system = lines(init="system", poweroff=True)
    assert system["lxc.init.cmd"] == "/sbin/init"
    assert system["lxc.mount.auto"] == "proc:mixed sys:mixed cgroup:mixed"
    assert "sys_boot" not in system["lxc.cap.drop"].split()


def test_merged_xdist_results_keep_the_workload_and_fields() -> None:
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))  # report_helpers sits beside this file
    from report_helpers import make_results

    from pytest_lxcexp.report.results import merge_worker_results

    whole = make_results(completed=10)
    for ve in whole["ves"]:
        ve.update(workload="idle", fields={"zone": "a"})
    whole["summary"]["workload"] = "idle"
    merged = merge_worker_results([json.loads(json.dumps(whole)), json.loads(json.dumps(whole))])
    assert merged["summary"]["workload"] == "idle"
    assert {ve["fields"]["zone"] for ve in merged["ves"]} == {"a"}
