"""The built-in suites run as a user runs them: from a directory of the user's own holding nothing
(no conftest, no ini, no tests), with only the installed plugin, on real VEs, few of them.

`pytest --ve-count=N` there runs the ping experiment; `--ve-suite NAME` and
`--pyargs pytest_lxcexp.suites.NAME` run any suite.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from integration_helpers import results_path

from pytest_lxcexp.suites import SUITES_DIR, suite_names

CHECKOUT = pathlib.Path(__file__).parents[2]
NOTE = "lxcexp: no test of this session uses the experiment's fixtures: running the built-in suite ping"

# How each suite is chosen, and few VEs with short pings: the suites' own defaults are for real runs.
CASES = {
    "ping": (["--ve-suite=ping", "--ve-count=4", "--ve-pings=2", "--ve-ping-interval=0.2"], 2),
    "network_mesh": (["--ve-suite", "network_mesh", "--ve-count=6", "--ve-pings=3", "--ve-ping-interval=0.2"], 2),
    # boot_storm's own defaults (every VE in one range) apply through --pyargs too.
    "boot_storm": (["--pyargs", "pytest_lxcexp.suites.boot_storm", "--ve-count=20"], 3),
    "churn": (["--ve-suite=churn", "--ve-count=6", "--ve-batch=3", "--churn-cycles", "3"], 2),
    # Every attack contained, the 4 that only privileged VEs' protections contain among them.
    "hostile": (["--ve-suite=hostile"], 17),
    "debian_density": (
        ["--ve-suite=debian_density", "--ve-count=3", "--ve-pings=3", "--ve-ping-interval=0.2", "--ve-tmpfs-size=1G"],
        3,
    ),
    # Its defaults make it a ramp; an objective no start meets stops it after its first step.
    "ramp": (["--ve-suite=ramp", "--ve-ramp-step=3", "--ve-slo=start_p99:1ms", "--ve-tmpfs-size=64M"], 1),
}
SMALL = ["--ve-pings=2", "--ve-ping-interval=0.2", "--ve-tmpfs-size=256M"]


def run_in(directory: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    """`pytest ARGS` in `directory`, as a user types it (the venv's pytest, the installed plugin)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=directory,
    )


def test_every_suite_is_covered():
    assert suite_names() == sorted(CASES)
    readme = (SUITES_DIR / "README.md").read_text()
    for name in CASES:
        assert f"`{name}`" in readme, f"pytest_lxcexp/suites/README.md has no line for {name}"


@pytest.mark.parametrize("suite", sorted(CASES))
def test_suite_runs_from_an_empty_directory(suite, clean_host, leftovers, tmp_path):
    names = clean_host
    options, passed = CASES[suite]
    result = run_in(tmp_path, *options, *names.options())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert f" {passed} passed" in out, out[-2000:]
    assert "Takedown: nothing left behind" in out
    assert leftovers(names) == []


def test_ve_count_alone_runs_the_ping_experiment(clean_host, leftovers, tmp_path):
    names = clean_host
    result = run_in(tmp_path, "--ve-count=50", *SMALL, *names.options())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    lines = out.splitlines()
    assert any(line.startswith(NOTE) for line in lines), out[:2000]
    for line in ("Total VEs        : 50", "2-ping VEs       : 50", "No log file VEs  : 0", "50 VEs have a PID"):
        assert line in lines, out[-3000:]
    assert " 2 passed" in out and "Takedown: nothing left behind" in out
    assert leftovers(names) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # nothing written into the user's directory


def test_ve_count_with_two_workers_and_a_report(clean_host, leftovers, tmp_path):
    names = clean_host
    reports = tmp_path / "reports"
    options = ["--ve-count=50", "--ve-batch=10", "-n", "2", f"--ve-report-dir={reports}"]
    result = run_in(tmp_path, *options, *SMALL, *names.options())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert NOTE in out  # said by the controller, which collects nothing itself
    assert " 10 passed" in out and "Total VEs        : 50" in out and "Takedown: nothing left behind" in out
    results_file = results_path(reports)
    results = json.loads(results_file.read_text())
    assert results["summary"]["total"] == 50 and results["summary"]["completed"] == 50
    assert (results_file.parent / "report.html").is_file()
    assert leftovers(names) == []


def test_ve_count_in_the_checkout_runs_the_experiment(clean_host, leftovers):
    # The README's first command, in this project's checkout, whose testpaths hold the project's own tests.
    names = clean_host
    result = run_in(CHECKOUT, "--ve-count=3", *SMALL, *names.options())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert NOTE in out and "Total VEs        : 3" in out and "Takedown: nothing left behind" in out
    assert " 2 passed" in out and " deselected" in out  # the project's own tests, not run
    assert leftovers(names) == []


def test_ve_count_max_alone_runs_the_ramp(clean_host, leftovers, tmp_path):
    names = clean_host
    options = ["--ve-count=max", "--ve-workload=idle", "--ve-ramp-step=2", "--ve-slo=start_p99:1ms"]
    result = run_in(tmp_path, *options, *SMALL, *names.options())
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert NOTE.replace("suite ping", "suite ramp") in out, out[:2000]
    assert "Ramp (--ve-count=max): reached 2 VEs running without a failure" in out, out[-3000:]
    assert " 1 passed" in out and "Takedown: nothing left behind" in out
    assert leftovers(names) == []
