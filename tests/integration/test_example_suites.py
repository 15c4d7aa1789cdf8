"""Each example suite runs as a user runs it (`pytest example_suites/NAME`), on real VEs, with few of them."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

SUITES = pathlib.Path(__file__).parents[2] / "example_suites"

# Few VEs and short pings: the suites' own defaults are for real runs.
CASES = {
    "ping": (["--ve-count=4", "--ve-pings=2", "--ve-ping-interval=0.2"], 2),
    "network_mesh": (["--ve-count=6", "--ve-pings=3", "--ve-ping-interval=0.2"], 2),
    "boot_storm": (["--ve-count=20"], 3),
    "churn": (["--ve-count=6", "--ve-batch=3", "--churn-cycles=3"], 2),
    "debian_density": (["--ve-count=3", "--ve-pings=3", "--ve-ping-interval=0.2", "--ve-tmpfs-size=1G"], 3),
    # Its ini makes it a ramp; an objective no start meets stops it after its first step.
    "ramp": (["--ve-ramp-step=3", "--ve-slo=start_p99:1ms", "--ve-tmpfs-size=64M"], 1),
}


def test_every_suite_is_covered():
    assert sorted(path.name for path in SUITES.iterdir() if path.is_dir()) == sorted(CASES)
    readme = (SUITES / "README.md").read_text()
    for name in CASES:
        assert f"`{name}`" in readme, f"example_suites/README.md has no line for {name}"


@pytest.mark.parametrize("suite", sorted(CASES))
def test_suite_runs_as_is(suite, clean_host, leftovers):
    names = clean_host
    options, passed = CASES[suite]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITES / suite), *options, *names.options(), "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=SUITES.parent,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert f" {passed} passed" in out, out[-2000:]
    assert "Takedown: nothing left behind" in out
    assert leftovers(names) == []
