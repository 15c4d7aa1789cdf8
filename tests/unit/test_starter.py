"""engine/starter.py's protocol with the tool, run as the tool runs it, with a stand-in
lxc-start on PATH (the real one is exercised by every integration test that starts VEs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pytest_lxcexp.engine.fleet import STARTER

# Called as: lxc-start -P PATH -n NAME -d -C -p PIDFILE. Fails VEs named ve-fail*; else
# stands in for a monitor (a shell with one child) and writes the monitor's PID.
FAKE_LXC_START = """#!/bin/sh
case "$4" in ve-fail*) exit 1;; esac
sh -c 'sleep 30 & wait' &
echo $! > "$8"
sleep 0.3
"""


Run = tuple[list[dict], subprocess.CompletedProcess]


def _run(tmp_path: Path, names: list[str], with_lxc_start: bool = True) -> Run:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if with_lxc_start:
        (bin_dir / "lxc-start").write_text(FAKE_LXC_START)
        (bin_dir / "lxc-start").chmod(0o755)
    for name in names:
        (tmp_path / name).mkdir(exist_ok=True)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin" if with_lxc_start else str(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-I", STARTER, str(tmp_path), "0"],
        input="".join(f"{name}\n" for name in names),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    return [json.loads(line) for line in done.stdout.splitlines()], done


def test_each_start_reports_its_ve_and_the_init_pid(tmp_path: Path) -> None:
    results, done = _run(tmp_path, ["ve1", "ve-fail2"])
    try:
        assert done.returncode == 0 and done.stderr == ""
        assert [(r["name"], r["ok"]) for r in results] == [("ve1", True), ("ve-fail2", False)]
        assert results[0]["latency"] > 0 and results[1]["pid"] is None
        # The init is the monitor's only child: here the stand-in monitor's sleep.
        with open(f"/proc/{results[0]['pid']}/cmdline", "rb") as handle:
            assert handle.read().split(b"\0")[0] == b"sleep"
        assert not (tmp_path / "ve1" / "monitor.pid").exists()  # read once, removed
    finally:
        if results and results[0]["pid"]:
            with open(f"/proc/{results[0]['pid']}/stat") as handle:
                monitor = int(handle.read().rsplit(")", 1)[1].split()[1])
            for pid in (results[0]["pid"], monitor):  # the processes this test made, by PID
                os.kill(pid, signal.SIGKILL)


def test_without_lxc_start_every_ve_gets_the_reason(tmp_path: Path) -> None:
    results, done = _run(tmp_path, ["ve1", "ve2"], with_lxc_start=False)
    assert done.returncode == 0
    assert [r["name"] for r in results] == ["ve1", "ve2"]
    assert all(not r["ok"] and "could not start it" in r["error"] for r in results)


def test_a_closed_pipe_stops_the_starter_quietly(tmp_path: Path) -> None:
    count = 40
    # The tool closes the pipe on an interrupt: the starter stops after the start in hand.
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "lxc-start").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "bin" / "lxc-start").chmod(0o755)
    process = subprocess.Popen(
        [sys.executable, "-I", STARTER, str(tmp_path), "0.05"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    process.stdin.write("".join(f"ve{i}\n" for i in range(count)).encode())
    process.stdin.close()
    assert json.loads(process.stdout.readline())["name"] == "ve0"
    process.stdout.close()
    assert process.wait(timeout=30) == 2
    assert process.stderr.read() == b""  # no "Exception ignored ... BrokenPipeError"


# A stand-in fork server: "0" for ve*, "3" (a failed start) otherwise, and for a VE named
# ve-crash* it dies without answering: the starter must start another for the next VE.
STAND_IN_SERVER = """#!/bin/sh
while read -r name log pidfile; do
    case "$name" in ve-crash*) exit 9;; ve*) echo 0;; *) echo 3;; esac
done
"""


def _run_with_server(tmp_path: Path, server_text: str, names: list[str], *options: str) -> list[dict]:
    """The starter's results for `names`, started through the stand-in fork server `server_text`."""
    server = tmp_path / "server"
    server.write_text(server_text)
    server.chmod(0o755)
    for name in names:
        (tmp_path / name).mkdir()
    done = subprocess.run(
        [sys.executable, "-I", STARTER, str(tmp_path), "0", "--forkstart", str(server), *options],
        input="".join(f"{name}\n" for name in names),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_fork_server_that_dies_costs_one_start_not_the_rest(tmp_path: Path) -> None:
    results = _run_with_server(tmp_path, STAND_IN_SERVER, ["ve1", "ve-crash2", "ve3", "x4"])
    expected = [("ve1", True), ("ve-crash2", False), ("ve3", True), ("x4", False)]
    assert [(r["name"], r["ok"]) for r in results] == expected
    assert "the fork server exited before answering" in results[1]["error"]
    assert "error" not in results[3]  # a start that failed: its reason is read from its lxc.log by the tool


# A start that never returns: the stand-in makes a "monitor" (a shell whose child is the
# "init"), writes its PID where liblxc would, keeps a copy for the test, and hangs.
HANGING_LXC_START = """#!/bin/sh
sh -c 'sleep 300 & echo $! > "$0.init"; wait' "$8" &
echo $! > "$8"
cp "$8" "$8.seen"
exec sleep 300
"""


def _dead(pid: int) -> bool:
    """Gone, or a zombie: PID 1 here does not reap orphans."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_start_past_its_deadline_is_ended_and_said(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "lxc-start").write_text(HANGING_LXC_START)
    (tmp_path / "bin" / "lxc-start").chmod(0o755)
    (tmp_path / "ve1").mkdir()
    process = subprocess.Popen(
        [sys.executable, "-I", STARTER, str(tmp_path), "0", "--deadline", "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
    )
    stdout, _ = process.communicate("ve1\n", timeout=60)
    [result] = [json.loads(line) for line in stdout.splitlines()]
    assert process.returncode == 0
    assert result["name"] == "ve1" and result["ok"] is False
    assert "had not returned after 3 s" in result["error"] and "--ve-timeout" in result["error"]
    assert result["latency"] >= 3 and result["hung"] is True
    assert _dead(int((tmp_path / "ve1" / "monitor.pid.seen").read_text()))
    assert _dead(int((tmp_path / "ve1" / "monitor.pid.init").read_text()))


# Stand-in fork servers. "hang": its child (the start) makes a "monitor" and hangs until
# killed; the server then answers with the child's status. "stuck": the server itself
# never answers again. Any other VE starts.
HANGING_SERVER = """#!/bin/sh
hang() {
    sh -c 'sleep 300 & echo $! > "$0.init"; wait' "$1" &
    echo $! > "$1"; cp "$1" "$1.seen"; exec sleep 300
}
while read -r name log pidfile; do
    case "$name" in
    ve-hang*) (hang "$pidfile"); echo $?;;
    ve-stuck*) exec sleep 300;;
    *) echo 0;;
    esac
done
"""


def test_a_fork_server_start_past_its_deadline_is_ended_and_the_next_goes_on(tmp_path: Path) -> None:
    results = _run_with_server(tmp_path, HANGING_SERVER, ["ve-hang1", "ve2", "ve-stuck3", "ve4"], "--deadline", "2")
    assert [(r["name"], r["ok"]) for r in results] == [
        ("ve-hang1", False),
        ("ve2", True),
        ("ve-stuck3", False),
        ("ve4", True),
    ]
    assert all("had not returned after 2 s" in results[i]["error"] and results[i]["hung"] for i in (0, 2))
    assert not any(results[i].get("hung") for i in (1, 3))
    assert _dead(int((tmp_path / "ve-hang1" / "monitor.pid.seen").read_text()))
    assert _dead(int((tmp_path / "ve-hang1" / "monitor.pid.init").read_text()))
