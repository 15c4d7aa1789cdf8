"""engine.workload: the log a VE writes and the parser the host reads it with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_lxcexp.engine.workload import (
    INIT_SCRIPT,
    WORKLOAD_VERSION,
    WorkloadLog,
    log_tail,
    parse_log,
    read_log,
    workload_env,
)

# Real busybox ping output (busybox 1.36 `ping -c 5 -i 1 127.0.0.1`), wrapped in the
# workload's begin/end lines as the init script writes them.
FULL_LOG = """\
lxcexp-begin 1732662000 ve17
PING 127.0.0.1 (127.0.0.1): 56 data bytes
64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.044 ms
64 bytes from 127.0.0.1: seq=1 ttl=64 time=0.069 ms
64 bytes from 127.0.0.1: seq=2 ttl=64 time=0.061 ms
64 bytes from 127.0.0.1: seq=3 ttl=64 time=0.058 ms
64 bytes from 127.0.0.1: seq=4 ttl=64 time=0.071 ms

--- 127.0.0.1 ping statistics ---
5 packets transmitted, 5 packets received, 0% packet loss
round-trip min/avg/max = 0.044/0.060/0.071 ms
lxcexp-end 1732662004 rc=0
"""

INCOMPLETE_LOG = """\
lxcexp-begin 1732662000 ve3
PING 127.0.0.1 (127.0.0.1): 56 data bytes
64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.044 ms
64 bytes from 127.0.0.1: seq=1 ttl=64 time=0.052 ms
64 bytes from 127.0.0.1: seq=2 ttl=64 time=0.049 ms
"""

FAILED_LOG = """\
lxcexp-begin 1732662000 ve9
lxcexp-error lo-up
PING 127.0.0.1 (127.0.0.1): 56 data bytes
ping: sendto: Network is unreachable
lxcexp-end 1732662000 rc=1
"""


def test_no_log() -> None:
    log = parse_log(None)
    assert log == WorkloadLog(present=False)
    assert log.present is False
    assert log.pings == 0
    assert log.began is None
    assert log.finished is False


def test_empty_log() -> None:
    log = parse_log("")
    assert log.present is True
    assert log.began is None
    assert log.pings == 0
    assert log.ended is None
    assert log.exit_status is None
    assert log.finished is False


def test_begin_only() -> None:
    log = parse_log("lxcexp-begin 1732662000 ve1\n")
    assert log.present is True
    assert log.began == 1732662000
    assert log.pings == 0
    assert log.finished is False


def test_incomplete_log_counts_replies_but_is_not_finished() -> None:
    log = parse_log(INCOMPLETE_LOG)
    assert log.present is True
    assert log.began == 1732662000
    assert log.pings == 3
    assert log.ended is None
    assert log.exit_status is None
    assert log.finished is False


def test_full_log() -> None:
    log = parse_log(FULL_LOG)
    assert log == WorkloadLog(
        present=True, began=1732662000, pings=5, ended=1732662004, exit_status=0, runs=1, repliers=("127.0.0.1",)
    )
    assert log.finished is True
    assert log.workload is None  # a version 1 log names no workload
    assert log.powered_off is False


def test_statistics_lines_are_not_counted_as_replies() -> None:
    # "5 packets transmitted, ..." starts with a number too; only "N bytes from" is a reply.
    statistics_only = FULL_LOG.split("\n\n", 1)[1]
    assert parse_log(statistics_only).pings == 0


def test_end_with_failure_status() -> None:
    log = parse_log(FAILED_LOG)
    assert log.present is True
    assert log.pings == 0
    assert log.finished is True
    assert log.ended == 1732662000
    assert log.exit_status == 1


def test_many_replies() -> None:
    replies = "".join(f"64 bytes from 127.0.0.1: seq={n} ttl=64 time=0.05 ms\n" for n in range(180))
    text = f"lxcexp-begin 100 ve1\nPING 127.0.0.1 (127.0.0.1): 56 data bytes\n{replies}lxcexp-end 280 rc=0\n"
    log = parse_log(text)
    assert log.pings == 180
    assert (log.began, log.ended, log.exit_status) == (100, 280, 0)


def test_crlf_and_missing_final_newline() -> None:
    text = "lxcexp-begin 5 ve1\r\n64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.1 ms\r\nlxcexp-end 6 rc=0"
    log = parse_log(text)
    assert (log.began, log.pings, log.ended, log.exit_status) == (5, 1, 6, 0)


def test_read_log_from_file(tmp_path: Path) -> None:
    path = tmp_path / "workload.log"
    path.write_text(FULL_LOG)
    assert read_log(str(path)) == parse_log(FULL_LOG)


def test_read_log_tolerates_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "workload.log"
    path.write_bytes(INCOMPLETE_LOG.encode() + b"\xff\xfe garbage\n")
    log = read_log(str(path))
    assert log.present is True
    assert log.pings == 3


def test_read_log_missing_file(tmp_path: Path) -> None:
    log = read_log(str(tmp_path / "no-such.log"))
    assert log == WorkloadLog(present=False)
    assert log.finished is False


def test_read_log_empty_file_is_present(tmp_path: Path) -> None:
    path = tmp_path / "workload.log"
    path.write_text("")
    log = read_log(str(path))
    assert log.present is True
    assert log.pings == 0


def test_log_tail(tmp_path: Path) -> None:
    path = tmp_path / "workload.log"
    path.write_text(FULL_LOG)
    assert log_tail(str(path), 2) == "round-trip min/avg/max = 0.044/0.060/0.071 ms\nlxcexp-end 1732662004 rc=0"
    assert log_tail(str(path)) == "\n".join(FULL_LOG.splitlines()[-5:])
    assert log_tail(str(path), 100) == FULL_LOG.rstrip("\n")


def test_log_tail_missing_file(tmp_path: Path) -> None:
    assert log_tail(str(tmp_path / "no-such.log")) == ""


@pytest.mark.parametrize(
    ("pings", "interval", "expected"),
    [
        (180, 1.0, "PINGS=180\nINTERVAL=1\nTARGET=127.0.0.1\n"),
        (10, 0.5, "PINGS=10\nINTERVAL=0.5\nTARGET=127.0.0.1\n"),
    ],
)
def test_workload_env(pings: int, interval: float, expected: str) -> None:
    env = workload_env(pings, interval)
    assert expected in env
    assert env.startswith("WORKLOAD=ping-localhost\n")
    assert "POWEROFF=0\n" in env


def test_workload_env_target() -> None:
    assert "\nTARGET=10.0.0.1\n" in workload_env(1, 2, target="10.0.0.1")


def test_init_script_writes_what_the_parser_reads() -> None:
    assert INIT_SCRIPT.startswith("#!/bin/sh\n")
    assert f"version {WORKLOAD_VERSION}" in INIT_SCRIPT
    assert "@VERSION@" not in INIT_SCRIPT
    assert ". /etc/lxcexp/workload.env" in INIT_SCRIPT
    assert re.search(r'echo "lxcexp-begin \$\(date \+%s\) ', INIT_SCRIPT)
    assert re.search(r'echo "lxcexp-end \$\(date \+%s\) rc=\$rc"', INIT_SCRIPT)
    assert 'ping -c "$PINGS" -i "$INTERVAL" "$TARGET"' in INIT_SCRIPT


def test_the_init_takes_its_oom_score_before_it_forks_anything() -> None:
    # What it runs inherits the score at fork: a workload forked before the write kept 0,
    # and the OOM killer took the neighbours' inits in its place.
    body = [line for line in INIT_SCRIPT.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    first_fork = next(i for i, line in enumerate(body) if "$(" in line or line.startswith((". ", "[ ")))
    assert body.index("echo 1000 >/proc/self/oom_score_adj 2>/dev/null") < first_fork


def test_the_begin_and_first_answer_stamps_are_read_for_the_phases() -> None:
    log = parse_log(
        "lxcexp-begin 1796052325 ve1 workload=ping-localhost at=1796052325.104217\n"
        "lxcexp-wait 127.0.0.1 0 at=1796052325.112500\n"
        "64 bytes from 127.0.0.1: seq=0 ttl=64 time=0.040 ms\n"
        "lxcexp-end 1796052326 rc=0\n"
    )
    assert log.began_at == 1796052325.104217 and log.first_answer_at == 1796052325.1125
    assert log.pings == 1 and log.finished
    # dash has no $EPOCHREALTIME: empty stamps, no phases; version 2 logs had none either.
    empty = parse_log("lxcexp-begin 1796052325 ve1 workload=ping-localhost at=\nlxcexp-wait 127.0.0.1 0 at=\n")
    assert empty.began_at is None and empty.first_answer_at is None and empty.began == 1796052325
    # A restart's begin line forgets the earlier run's stamps.
    again = parse_log("lxcexp-begin 1 ve1 at=1.5\nlxcexp-wait t 0 at=1.6\nlxcexp-begin 2 ve1 workload=idle at=2.5\n")
    assert again.began_at == 2.5 and again.first_answer_at is None
