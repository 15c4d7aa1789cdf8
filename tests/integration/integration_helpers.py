"""Plain helpers the integration tests share: the suites they run, pytest sessions on a test's own
names, experiments driven through the engine, and what the host shows of LXC's processes.
Fixtures live in conftest.py; these are imported (`from integration_helpers import ...`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pytest_lxcexp.engine import takedown
from pytest_lxcexp.engine.config import build_config, root_tag
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import VERecord
from pytest_lxcexp.engine.storage import lock_path
from pytest_lxcexp.suites import suite_path

# The built-in suite users start from: every VE started in ranges, then waited on to complete.
PING_SUITE = (suite_path("ping") / "test_ping.py").read_text()

# Two real faults: liblxc refuses to start ve4 (its lower directory is gone) and ve2 is killed mid-run.
FAULTY_SUITE = """
import os, signal

from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_break_ve4(ve_experiment):
    # A real liblxc refusal: ve4's lower directory does not exist.
    path = ve_experiment.layout.ve_config(4)
    text = open(path).read().replace(ve_experiment.layout.base_rootfs, "/nonexistent/lxcexp-lower")
    open(path, "w").write(text)


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_kill_ve2(ve_experiment):
    # A VE killed mid-run, by its recorded init PID (ours).
    os.kill(ve_experiment.starts[2].pid, signal.SIGKILL)


def test_completed(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
"""


@dataclass(frozen=True)
class Names:
    """A root, bridge and subnet of the test's own, so tests never share host objects."""

    root: str
    bridge: str
    subnet: str

    @property
    def tag(self) -> str:
        return root_tag(self.root)

    def options(self) -> list[str]:
        """As pytest options."""
        return [f"--ve-root={self.root}", f"--ve-bridge={self.bridge}", f"--ve-subnet={self.subnet}"]

    def cli_options(self) -> list[str]:
        """As `lxcexp setup` options."""
        return ["--root", self.root, "--bridge", self.bridge, "--subnet", self.subnet]


# -- pytest sessions over real VEs --------------------------------------------------------


# A small xdist run of the ping suite: 40 VEs in four ranges (8 tests), quick pings.
XDIST_RUN = ["-v", "--ve-count=40", "--ve-batch=10", "--ve-pings=3", "--ve-ping-interval=0.2", "--ve-tmpfs-size=128M"]


def session_args(names: Names, *options: str) -> list[str]:
    """A session's arguments: the test's own names first, so an option given after them wins
    (test_bad_input passes bad ones), and no cache directory left in the run's folder."""
    return [*names.options(), *options, "-p", "no:cacheprovider"]


def run_pytest(pytester: pytest.Pytester, names: Names, *options: str, timeout: float = 300) -> pytest.RunResult:
    """A pytest session in a subprocess, in pytester's folder, run to its end."""
    return pytester.runpytest_subprocess(*session_args(names, *options), timeout=timeout)


@contextlib.contextmanager
def started_pytest(pytester: pytest.Pytester, names: Names, *options: str) -> Iterator[subprocess.Popen]:
    """A pytest session left running for the test to watch and signal, its output on stdout.
    It gets a process group of its own, as a terminal's job, and is killed if the test leaves it running."""
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", *session_args(names, *options)],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def wait_for(condition: Callable[[], bool], run: subprocess.Popen, timeout: float = 120, what: str = "") -> None:
    """Poll until condition() holds; fail, with the run's output, if the run ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if run.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{run.stdout.read() if run.stdout else ''}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def assert_next_run_takes_the_stale_experiment_down(pytester: pytest.Pytester, names: Names) -> None:
    """A run on a root that still holds an experiment of ours (its run died without a takedown)
    says so, takes it down first, and then completes its own VEs and takedown."""
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(
        pytester, names, "--ve-count=2", "--ve-pings=2", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"lxcexp: {names.root} holds a stale experiment of ours*taking it down first"])
    result.stdout.fnmatch_lines(["Total VEs        : 2", "Takedown: nothing left behind"])


# -- experiments driven through the engine -----------------------------------------------


@contextlib.contextmanager
def running_experiment(names: Names, **options: object) -> Iterator[Experiment]:
    """An experiment set up on the test's own root, bridge and subnet; taken down whatever happens.
    Small and quick unless options say otherwise."""
    values: dict = {
        "root": names.root,
        "bridge": names.bridge,
        "subnet": names.subnet,
        "tmpfs_size": "128M",
        "pings": 3,
        "ping_interval": 0.2,
    }
    values.update(options)
    experiment = Experiment(build_config(**values))
    assert experiment.check() is None
    experiment.lock()
    try:
        experiment.setup()
        yield experiment
    finally:
        experiment.takedown()
        experiment.unlock()


def run_to_completion(experiment: Experiment, timeout: float | None = None) -> list[VERecord]:
    """Start every VE, wait for them all, and assert that each started and completed."""
    count = experiment.config.count
    assert all(result.ok for result in experiment.start(1, count))
    records = experiment.wait(1, count, timeout=timeout)
    assert all(r.completed for r in records), (experiment.config.base, [r.failure for r in records])
    return records


# -- what the host shows -------------------------------------------------------------------


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits for PID 1, here not an init that reaps, to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def lxc_monitors(root: str) -> list[int]:
    """PIDs of the LXC monitors of this root's containers: one per VE running or starting."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if handle.read().startswith(f"[lxc monitor] {root} ".encode()):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def leftovers_of(names: Names) -> list[str]:
    """Everything of the experiment that can still be seen on the host."""
    found = takedown.leftovers(names.root, names.tag, names.bridge)
    # Any live process whose cgroup is one of the experiment's. A zombie runs nothing and holds
    # no resource but its PID; here PID 1 (not an init that reaps) leaves orphans' zombies for a while.
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if not alive(int(pid)):
            continue
        try:
            with open(f"/proc/{pid}/cgroup") as handle:
                if f"lxcexp-{names.tag}" in handle.read():
                    found.append(f"process {pid} in the experiment's cgroups")
        except (FileNotFoundError, ProcessLookupError):
            continue
    found += [f"lxc monitor {pid}" for pid in lxc_monitors(names.root)]
    with open("/proc/self/mountinfo") as handle:
        found += [f"mount: {line.strip()}" for line in handle if names.root in line]
    if os.path.exists(names.root):
        found.append(f"directory {names.root}")
    if os.path.exists(lock_path(names.root)):
        found.append(f"lock file {lock_path(names.root)}")
    listed = subprocess.run(["lxc-ls", "-P", names.root], capture_output=True, text=True).stdout.split()
    found += [f"container {name}" for name in listed]
    return found
