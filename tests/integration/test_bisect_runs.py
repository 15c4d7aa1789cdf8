"""`lxcexp bisect` for real: two builds of the LXC source bundle (v6.0.6, which test_build_lxc
builds too, and its parent: one more build, cached per commit), run side by side in real
sessions. One commit apart, the endpoints decide everything: either bad is not shown worse
and the bisect refuses, or it is and that one commit is named. Also: Ctrl-C in the middle
of a run leaves nothing behind, and bad input is refused before anything is built."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from integration_helpers import Names, lxc_monitors

BUNDLE = os.environ.get("LXCEXP_LXC_BUNDLE", "/work/shared/lxc-source/lxc.bundle")
GOOD, BAD = "v6.0.6^", "v6.0.6"


def bisect_command(names: Names, directory: str, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest_lxcexp.cli",
        "bisect",
        BUNDLE,
        "--good",
        GOOD,
        "--bad",
        BAD,
        "--dir",
        directory,
        "--root",
        names.root,
        "--bridge",
        names.bridge,
        "--subnet",
        names.subnet,
        *options,
    ]


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """Both endpoints built (or found built) before the tests time anything."""
    assert os.path.isfile(BUNDLE), f"the LXC source bundle is missing: {BUNDLE}"
    prefixes = {}
    for ref in (GOOD, BAD):
        done = subprocess.run(
            [sys.executable, "-m", "pytest_lxcexp.cli", "build-lxc", BUNDLE, "--ref", ref],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, done.stderr
        prefixes[ref] = done.stdout.strip()
    return prefixes


def test_one_commit_apart_the_endpoints_decide(clean_host: Names, built: dict[str, str], tmp_path) -> None:  # noqa: ANN001
    directory = str(tmp_path / "runs")
    done = subprocess.run(
        bisect_command(clean_host, directory, "--count", "20", "--max-rounds", "1"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = done.stdout
    assert "bisect: 1 commit after good v6.0.5-45-gd128f134 up to bad v6.0.6" in out, out + done.stderr
    assert "build-lxc: v6.0.5-45-gd128f134 is built already" in out and "build-lxc: v6.0.6 is built already" in out
    # The one real session: 20 VEs of each build, interleaved, each proven to be its build.
    (results_file,) = glob.glob(f"{directory}/run001/*/results.json")
    with open(results_file) as handle:
        results = json.load(handle)
    ves = results["ves"]
    assert [ve["build"] for ve in ves[:4]] == ["good", "candidate", "candidate", "good"] and len(ves) == 40
    builds = {build["name"]: build for build in results["metadata"]["builds"]}
    assert builds["good"]["prefix"] == built[GOOD] and builds["candidate"]["prefix"] == built[BAD]
    assert builds["good"]["proof"]["ok"] and builds["candidate"]["proof"]["ok"]
    assert builds["candidate"]["git_describe"] == "v6.0.6"
    (line,) = [line for line in out.splitlines() if line.startswith("endpoints: bad v6.0.6 vs good round 1:")]
    assert "start_latency" in line and "95% CI" in line
    assert "bisect: 0 builds compiled, 1 side-by-side runs" in out
    if "start_latency worse:" in line:
        # Shown worse: one commit after good is the first bad one, with no midpoint to try.
        assert done.returncode == 0 and "first bad commit: 2597434a" in out, out
    else:
        assert done.returncode == 1, out
        (refusal,) = done.stderr.strip().splitlines()
        assert refusal.startswith("lxcexp bisect: --bad: ") and "v6.0.6" in refusal
        assert "nothing to bisect" in refusal or "can't tell whether v6.0.6 is worse" in refusal


def test_ctrl_c_mid_run_leaves_nothing_behind(clean_host: Names, built: dict[str, str], tmp_path) -> None:  # noqa: ANN001
    directory = str(tmp_path / "runs")
    log = tmp_path / "bisect.log"
    with open(log, "w") as out:
        run = subprocess.Popen(
            bisect_command(clean_host, directory, "--count", "20", "--max-rounds", "3"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        while not lxc_monitors(clean_host.root):  # the session has VEs starting or running
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no VE started"
            time.sleep(0.05)
        os.kill(run.pid, signal.SIGINT)  # a terminal's Ctrl-C, to the bisect alone
        assert run.wait(timeout=300) == 130, log.read_text()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    text = log.read_text()
    assert "lxcexp bisect: interrupted" in text, text
    # The session got the Ctrl-C and took itself down (clean_host checks the host).
    with open(f"{directory}/run001/session.log") as handle:
        session_log = handle.read()
    assert "Takedown: nothing left behind" in session_log, session_log[-2000:]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--count", "5"], "--count: 5 is below 10"),
        (["--bridge", "eth0-not-ours-x"], "--bridge: "),
        (["--subnet", "10.1.2.3/40"], "--subnet: "),
    ],
)
def test_bad_input_is_one_line_naming_the_option(names: Names, tmp_path, options: list[str], message: str) -> None:  # noqa: ANN001
    directory = tmp_path / "runs"
    done = subprocess.run(bisect_command(names, str(directory), *options), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"lxcexp bisect: {message}"), line
    assert "build-lxc" not in done.stdout and not directory.exists() and not os.path.exists(names.root)


def test_good_after_bad_is_refused_before_anything_is_built(names: Names, tmp_path) -> None:  # noqa: ANN001
    command = bisect_command(names, str(tmp_path / "runs"))
    command[command.index("--good") + 1], command[command.index("--bad") + 1] = BAD, GOOD
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == (
        f"lxcexp bisect: --good: '{BAD}' is not an ancestor of --bad '{GOOD}': good must come before bad"
    )
