"""A hostile or broken VE cannot hang, crash or escape the run (issue 12), on real VEs.

The attacks themselves run as the built-in suite `hostile` (test_builtin_suites);
here: the signal that must always end the run, the takedown when reporting fails, the
tmpfs's mount options, the xdist files a crashed run leaves, and hung VEs in several ranges.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time

import pytest
from integration_helpers import PING_SUITE, lxc_monitors, run_pytest, running_experiment, started_pytest, wait_for

from pytest_lxcexp.engine import apparmor, cgroups, host, shared, storage
from pytest_lxcexp.engine.fleet import load_starts
from pytest_lxcexp.engine.storage import lock_path, mounts

# ve1 swaps its log for a FIFO (the run once blocked in open() on it for good); ve2 never ends.
FIFO_THEN_HANG = (
    "cmd:if [ $(hostname) = ve1 ]; then rm -f /var/log/lxcexp/workload.log; mkfifo /var/log/lxcexp/workload.log; "
    "else sleep 100000; fi"
)


def test_a_fifo_log_fails_its_ve_and_a_signal_still_ends_the_run(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    options = ["--ve-count=2", f"--ve-workload={FIFO_THEN_HANG}", "--ve-tmpfs-size=64M", "--ve-timeout=600"]
    with started_pytest(pytester, names, *options) as run:
        wait_for(lambda: len(lxc_monitors(names.root)) == 2, run, what="both VEs running")
        log = pathlib.Path(names.root, "ve1", "delta0", "var", "log", "lxcexp", "workload.log")
        wait_for(log.is_fifo, run, what="ve1's log replaced by a FIFO")
        time.sleep(2)  # polls of the FIFO: none may block
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    assert run.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "ve1: its workload log is a FIFO, not a regular file" in out, out
    assert "INTERRUPTED by SIGTERM" in out and "Takedown: nothing left behind" in out, out
    assert leftovers(names) == []


BROKEN_SUMMARY_CONFTEST = """
from pytest_lxcexp.engine.experiment import Experiment


def broken_summary(self, records):
    raise RuntimeError("the summary broke while reading records")


Experiment.summary = broken_summary  # fails in ve_clones' teardown, before the VEs are stopped
"""


# One hung VE in each range of two (ve2, ve4, ve6: their command never ends); the others end at once.
HUNG_IN_EACH_RANGE = "cmd:case $(hostname) in ve2|ve4|ve6) sleep 100000;; esac; echo done"
RANGE_TIMEOUT = 20


def test_ranges_with_a_hung_ve_each_wait_one_timeout_from_their_own_start(pytester, clean_host, leftovers):
    # The ping suite starts all three ranges, then waits on each in turn. Each range's wait
    # must give up `timeout` after the range's own first start: counted from the moment its
    # test began to wait, the second range would wait until about two timeouts after the
    # run's first start, the third until three.
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    reports = pytester.path / "reports"
    result = run_pytest(
        pytester,
        names,
        "--ve-count=6",
        "--ve-batch=2",
        f"--ve-workload={HUNG_IN_EACH_RANGE}",
        f"--ve-timeout={RANGE_TIMEOUT}",
        "--ve-network=none",
        "--ve-tmpfs-size=64M",
        f"--ve-report-dir={reports}",
    )
    out = result.stdout.str()
    result.assert_outcomes(passed=3, failed=3)  # every start; every range's wait has its hung VE
    (results_file,) = reports.glob("*/results.json")
    results = json.loads(results_file.read_text())
    ves = {ve["index"]: ve for ve in results["ves"]}
    assert [index for index, ve in sorted(ves.items()) if ve["completed"]] == [1, 3, 5], out
    for index in (2, 4, 6):
        assert "its command has not ended" in ves[index]["failure"], ves[index]
    waits = results["timings"]["waits"]
    assert [(wait["first"], wait["last"]) for wait in waits] == [(1, 2), (3, 4), (5, 6)], waits
    for wait in waits:
        # The range's first start as the starters stamped it, per VE.
        first_start = min(ves[index]["started_at"] for index in range(wait["first"], wait["last"] + 1))
        assert wait["timeout"] == RANGE_TIMEOUT
        assert wait["first_start"] == pytest.approx(first_start, abs=1e-3)
        assert wait["deadline"] == pytest.approx(first_start + RANGE_TIMEOUT, abs=1e-3), wait
        assert wait["pending"] == 1, wait  # its hung VE, given up on
        assert wait["ended"] >= wait["deadline"], wait  # not before its deadline...
        # ...and not a whole timeout more: waits do not add up, one range after another.
        assert wait["ended"] < wait["deadline"] + RANGE_TIMEOUT, wait
    # The later ranges' waits began once the first had waited out its timeout.
    assert waits[1]["began"] >= waits[0]["ended"] and waits[2]["began"] >= waits[1]["ended"]
    assert "Takedown: nothing left behind" in out, out
    assert leftovers(names) == []


def test_a_failure_while_reading_records_still_takes_everything_down(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    pytester.makeconftest(BROKEN_SUMMARY_CONFTEST)
    result = run_pytest(
        pytester, names, "--ve-count=3", "--ve-pings=2", "--ve-ping-interval=0.2", "--ve-tmpfs-size=64M"
    )
    out = result.stdout.str()
    assert "RuntimeError: the summary broke while reading records" in out, out
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out  # an error at teardown
    assert not lxc_monitors(names.root)
    assert leftovers(names) == []


def test_the_tmpfs_is_nosuid_nodev_and_0711(clean_host):
    names = clean_host
    with running_experiment(names, count=1, network="none"):
        (entry,) = [m for m in mounts() if m["target"] == names.root]
        with open("/proc/self/mountinfo") as handle:
            (line,) = [line for line in handle if f" {names.root} " in line]
        assert {"nosuid", "nodev"} <= set(line.split()[5].split(",")), line
        assert os.stat(names.root).st_mode & 0o7777 == 0o711
        assert entry["fstype"] == "tmpfs"


@pytest.mark.parametrize("planted", ["symlink", "hard link"])
def test_a_lock_file_planted_beside_the_root_is_refused_and_left_alone(pytester, clean_host, leftovers, planted):
    # The root's parent is /tmp, where anyone may plant the lock file's name: a symlink or a hard
    # link to a file root would then truncate or lock. The run must refuse in one line, touch
    # nothing through it and create nothing.
    names = clean_host
    victim = pytester.path / "victim"
    victim.write_text("keep me")
    lock = lock_path(names.root)
    (os.symlink if planted == "symlink" else os.link)(victim, lock)
    try:
        pytester.makepyfile(test_ping=PING_SUITE)
        result = run_pytest(pytester, names, "--ve-count=1", "--ve-tmpfs-size=64M", timeout=120)
        out = result.stdout.str() + result.stderr.str()
        assert result.ret == pytest.ExitCode.USAGE_ERROR, out
        words = "is a symlink, not a file of ours" if planted == "symlink" else "is not a file of ours"
        assert f"--ve-root: {names.root}: {lock} {words}" in out, out
        assert "Traceback" not in out, out
        assert victim.read_text() == "keep me" and os.lstat(lock).st_nlink == (1 if planted == "symlink" else 2)
        assert not os.path.exists(names.root)
    finally:
        os.unlink(lock)
    assert leftovers(names) == []


def _waits_for_flock(pid: int, path: str) -> bool:
    """Whether process `pid` is blocked in flock() on the file at `path` (the kernel's /proc/locks:
    a waiter's line has `->` and the file's major:minor:inode)."""
    info = os.stat(path)
    file_id = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    with open("/proc/locks") as handle:
        for line in handle:
            words = line.split()
            if "->" in words and "FLOCK" in words and str(pid) in words and file_id in words:
                return True
    return False


# Waits for the lock at argv[1] like any process of a run (a gate, a cache build), says which
# file it got, and holds it until its stdin closes.
LOCK_WAITER = """
import fcntl, os, sys
from pytest_lxcexp.engine.storage import lock_file
handle = lock_file(sys.argv[1], fcntl.LOCK_EX)
print(os.fstat(handle.fileno()).st_ino, flush=True)
sys.stdin.read()
"""


def test_a_lock_never_has_two_holders_across_processes(tmp_path):
    # A holder that releases unlinks the lock file. A process already waiting in flock() on
    # the old file wakes up holding an inode nobody else sees, while a newcomer may meanwhile
    # have made and locked a new file at the path: both would "hold" the lock.
    path = str(tmp_path / ".exp.lxcexp.lock")
    first = storage.lock_file(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert first is not None
    old = os.fstat(first.fileno()).st_ino
    waiter = subprocess.Popen(
        [sys.executable, "-c", LOCK_WAITER, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    newcomer = None
    try:
        wait_for(lambda: _waits_for_flock(waiter.pid, path), waiter, what="the waiter blocked on the lock")
        os.unlink(path)  # the first holder releases: unlink, then close
        newcomer = storage.lock_file(path, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert newcomer is not None
        new = os.fstat(newcomer.fileno()).st_ino
        assert new != old
        first.close()
        # The waiter got the old inode, saw the path names another, and now waits on the new one.
        wait_for(lambda: _waits_for_flock(waiter.pid, path), waiter, what="the waiter blocked on the new file")
        assert not select.select([waiter.stdout], [], [], 0)[0], "the waiter holds the lock with the newcomer"
        newcomer.close()
        got = waiter.stdout.readline().strip()
        assert got == str(new), (got, old, new)
    finally:
        first.close()
        if newcomer is not None:
            newcomer.close()
        waiter.kill()
        waiter.wait()


def test_a_busybox_cache_refresh_waits_for_the_build_in_progress(tmp_path, cli):
    # Two runs (or simulated hosts) building or refreshing the same busybox cache entry must
    # take turns, as the debian tarball's builds do: a refresh must not remove a rootfs
    # another process is building or using, nor two renames cross.
    cache = tmp_path / "cache"
    built = cli("createbase", "--cache", str(cache))
    assert built.returncode == 0, built.stderr
    rootfs = built.stdout.split("base: ", 1)[1].strip()
    lock = os.path.dirname(rootfs) + ".lock"
    holder = storage.lock_file(lock, fcntl.LOCK_EX)  # as a run building this entry holds it
    refresh = subprocess.Popen(
        [sys.executable, "-m", "pytest_lxcexp.cli", "createbase", "--cache", str(cache), "--refresh"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: _waits_for_flock(refresh.pid, lock), refresh, what="the refresh waiting on the cache lock")
        assert os.path.isfile(os.path.join(rootfs, "bin", "busybox"))  # untouched while the lock is held
    finally:
        holder.close()
    out, _ = refresh.communicate(timeout=120)
    assert refresh.returncode == 0, out
    assert f"base: {rootfs}" in out
    assert os.path.isfile(os.path.join(rootfs, "bin", "busybox"))
    assert [name for name in os.listdir(os.path.dirname(rootfs)) if ".building-" in name] == []


def _crashed_run_files(root: str) -> list[str]:
    """The gate and share files a SIGKILLed xdist run leaves beside its root (nobody holds its lock)."""
    share = json.dumps({"run": "crashed", "members": 2, "ready": True, "host": ""})
    for path, text in ((shared.share_path(root), share), (shared.gate_path(root), "")):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    return [shared.share_path(root), shared.gate_path(root)]


def test_a_crashed_xdist_runs_share_file_does_not_block_the_next_run(pytester, clean_host, leftovers):
    names = clean_host
    files = _crashed_run_files(names.root)
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(
        pytester, names, "-n", "2", "--ve-count=4", "--ve-batch=2", "--ve-pings=2", "--ve-ping-interval=0.2"
    )
    result.assert_outcomes(passed=4)
    assert "another lxcexp run" not in result.stdout.str()
    assert not [path for path in files if os.path.exists(path)]
    assert leftovers(names) == []


def test_lxcexp_takedown_removes_share_and_gate_files(clean_host, leftovers, cli):
    names = clean_host
    files = _crashed_run_files(names.root)
    done = cli("takedown", "--root", names.root)
    assert done.returncode == 0, done.stderr
    assert not [path for path in files if os.path.exists(path)]
    assert leftovers(names) == []


def test_a_range_stopped_and_started_again_under_xdist_starts_again(clean_host, leftovers, tmp_path):
    names = clean_host
    # The churn suite restarts each range; under -n each restart must really start the VEs
    # (its test asserts every VE logged one run more per cycle).
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--ve-suite=churn", "-n", "2", "--ve-count=4", "--ve-batch=2"]
        + ["--churn-cycles=2", "--ve-pings=2", "--ve-ping-interval=0.2", *names.options(), "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " 2 passed" in result.stdout
    assert leftovers(names) == []


BROKEN_BASE_CONFTEST = """
from pytest_lxcexp.engine.experiment import Experiment


def broken_base(self):
    raise RuntimeError("the base broke during setup")


Experiment.setup_base = broken_base  # the first worker's setup fails after the tmpfs is up
"""


def test_a_setup_failure_under_xdist_releases_the_other_workers(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    pytester.makeconftest(BROKEN_BASE_CONFTEST)
    result = run_pytest(pytester, names, "-n", "2", "--ve-count=4", "--ve-batch=2", timeout=300)
    out = result.stdout.str()
    assert result.ret != pytest.ExitCode.OK, out
    assert "INTERNALERROR>" not in out, out
    assert "RuntimeError: the base broke during setup" in out, out
    # The other worker was let go with the reason, instead of waiting at the gate.
    assert "the first process of this run failed to set the experiment up" in out, out
    assert leftovers(names) == []
    assert not [path for path in (shared.share_path(names.root), shared.gate_path(names.root)) if os.path.exists(path)]


CUT_LINE = '{"index": 2, "ok": tr'


def test_a_half_written_starts_line_loses_no_start(clean_host, leftovers, cli):
    # The starts log in the root is what every process of a run (xdist workers, CLI calls)
    # merges. A writer killed mid-line (or cut short by a full tmpfs) leaves a line without
    # its end: it is skipped, and the next start is still recorded.
    names = clean_host
    setup = cli("setup", "3", *names.cli_options(), "--network", "none", "--workload", "idle", "--tmpfs-size", "32M")
    assert setup.returncode == 0, setup.stderr
    assert cli("start", "1", "1", "--root", names.root).returncode == 0
    with open(storage.Layout(names.root).starts_log, "a") as handle:
        handle.write(CUT_LINE)  # a crashed writer's line, no newline
    info = cli("info", "--root", names.root)
    assert info.returncode == 0, info.stderr
    rows = {line.split()[0]: line for line in info.stdout.splitlines()[1:]}
    assert rows["ve1"].split()[1] == "RUNNING" and rows["ve2"].endswith(" never started"), info.stdout
    started = cli("start", "2", "3", "--root", names.root)
    assert started.returncode == 0, started.stderr
    info = cli("info", "--root", names.root)
    rows = {line.split()[0]: line.split() for line in info.stdout.splitlines()[1:]}
    # Every start is known: its state and its init's PID, none "never started".
    assert [(rows[name][1], rows[name][2].isdigit()) for name in ("ve1", "ve2", "ve3")] == [("RUNNING", True)] * 3, (
        info.stdout
    )
    assert "never started" not in info.stdout
    # What another process of the run merges (an xdist worker adopting a range's starts):
    # every start, ve2's too, which was appended after the cut line.
    recorded = load_starts(storage.Layout(names.root))
    assert sorted(recorded) == [1, 2, 3] and all(result.ok and result.pid for result in recorded.values()), recorded
    # The cut line is still a line of its own (nothing glued to it and lost), every later one whole.
    lines = pathlib.Path(storage.Layout(names.root).starts_log).read_text().splitlines()
    cut = lines.index(CUT_LINE)
    # ve2 and ve3 in the order their starts returned (two starters), then their RUNNING re-records.
    assert {2, 3} <= {json.loads(line)["index"] for line in lines[cut + 1 :]}, lines
    assert cli("takedown", "--root", names.root).returncode == 0
    assert leftovers(names) == []


# With a system init the VE keeps CAP_SYS_ADMIN: it mounts its own (namespaced) v1 freezer
# cgroup and freezes itself, this shell included.
FREEZE_ITSELF = (
    "cmd:mkdir -p /tmp/freezer && mount -t cgroup -o freezer none /tmp/freezer && "
    "echo FROZEN > /tmp/freezer/freezer.state; echo thawed"
)


def _freezer_hierarchy() -> str:
    found = [h for h in cgroups.hierarchies() if "freezer" in os.path.basename(h).split(",")]
    assert found, "this host has no v1 freezer hierarchy: the VE cannot freeze itself here"
    return found[0]


def test_a_ve_that_froze_its_own_cgroup_is_still_taken_down(clean_host, leftovers, cli):
    # A v1-frozen process does not die of SIGKILL until thawed: the takedown once waited a
    # minute and left the VE's 3 processes, its cgroups and its (detached) tmpfs behind.
    names = clean_host
    setup = cli(
        "setup", "1", *names.cli_options(), "--network", "none", "--init", "system",
        "--workload", FREEZE_ITSELF, "--tmpfs-size", "32M",
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    own = pathlib.Path(_freezer_hierarchy(), cgroups.container_dir(names.tag), "ve1", cgroups.SYSTEM_INIT_INNER)
    state = own / "freezer.state"
    try:
        assert cli("start", "--root", names.root).returncode == 0
        deadline = time.monotonic() + 60
        while not (state.is_file() and state.read_text().strip() == "FROZEN"):
            assert time.monotonic() < deadline, "ve1 never froze itself"
            time.sleep(0.1)
        down = cli("takedown", "--root", names.root)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "LEFT BEHIND" not in down.stdout + down.stderr
    finally:
        if state.is_file():  # without the fix: thaw it here, so the fixture's takedown can end it
            state.write_text("THAWED")
    assert leftovers(names) == []


# A system init keeps CAP_SYS_ADMIN: it writes "max" to the pids.max of the cgroup it sees as
# root, through the cgroup mounts LXC gave it (cgroup:mixed: its own cgroup writable; v1,
# then v2), or else a pids hierarchy it mounts itself.
RAISE_PIDS_MAX = (
    "cmd:for f in /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids.max; do "
    "[ -f $f ] && echo max > $f && echo raised-to-$(cat $f) && exit 0; done; mkdir -p /tmp/cg; "
    "{ mount -t cgroup -o pids none /tmp/cg || mount -t cgroup2 none /tmp/cg; } && "
    "echo max > /tmp/cg/pids.max && echo raised-to-$(cat /tmp/cg/pids.max)"
)


def test_a_system_init_ve_cannot_raise_the_pids_limit_it_was_given(clean_host, leftovers, cli):
    # The limit once sat on the cgroup the VE sees as its root: it wrote "max" there and its
    # processes were bounded by nothing but a --ve-pids-max total and the host's pid_max.
    names = clean_host
    setup = cli(
        "setup", "1", *names.cli_options(), "--network", "none", "--init", "system",
        "--workload", RAISE_PIDS_MAX, "--tmpfs-size", "32M", "--pids-max", "50",
    )  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    pids = cgroups.ve_pids_cgroup(names.tag, "ve1")
    assert pids is not None, "this host has no pids controller"
    log = pathlib.Path(names.root, "ve1", "delta0", "var", "log", "lxcexp", "workload.log")
    try:
        assert cli("start", "--root", names.root).returncode == 0
        deadline = time.monotonic() + 60
        while "lxcexp-end" not in (log.read_text() if log.is_file() else ""):
            assert time.monotonic() < deadline, f"ve1's command never ended: {log.read_text() if log.is_file() else ''}"
            time.sleep(0.1)
        assert pathlib.Path(pids, "pids.max").read_text().strip() == "50"  # the limit it was given holds
        if not apparmor.host_has_apparmor():  # (AppArmor may refuse the write: contained either way)
            assert "raised-to-max" in log.read_text()  # the write succeeded, on the root the VE sees
            assert pathlib.Path(pids, cgroups.SYSTEM_INIT_INNER, "pids.max").read_text().strip() == "max"
    finally:
        down = cli("takedown", "--root", names.root)
    assert down.returncode == 0, down.stdout + down.stderr
    assert leftovers(names) == []


# ve2 asks for 300 MiB at once (dd's buffer, filled from /dev/zero); the others end at once.
MEMORY_HOG = "cmd:if [ $(hostname) = ve2 ]; then dd if=/dev/zero of=/dev/null bs=300M count=1; fi"
# Runs the VEs, then reads the experiment's memory cgroup before the takedown removes it.
MEMORY_SUITE = """
import json, os

from pytest_lxcexp.engine import cgroups


def test_completed(ve_experiment, ve_range):
    ve_range.start()
    ve_range.wait()


def test_the_kernel_saw(ve_experiment):
    path = cgroups.memory_budget_path(ve_experiment.config.tag)
    limit = [n for n in ("memory.max", "memory.limit_in_bytes") if os.path.exists(os.path.join(path, n))][0]
    own = os.path.join(path, "ve2", limit)
    seen = {
        "limit": open(os.path.join(path, limit)).read().strip(),
        "ve2_limit": open(own).read().strip() if os.path.exists(own) else None,
        "oom_kills": cgroups.memory_events(ve_experiment.config.tag, "ve2", "oom_kill"),
        # The OOM killer's standing of ve1's init and of its LXC monitor.
        "oom_score_adj": [
            int(open(f"/proc/{pid}/oom_score_adj").read())
            for pid in (ve_experiment.starts[1].pid, ve_experiment.starts[1].monitor)
        ],
    }
    with open(os.environ["SEEN"], "w") as handle:
        json.dump(seen, handle)
"""


def test_a_ve_that_eats_memory_meets_the_experiments_oom_killer_not_the_hosts(
    pytester, clean_host, leftovers, monkeypatch
):
    names = clean_host
    seen = pytester.path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    pytester.makepyfile(test_memory=MEMORY_SUITE)
    options = ["--ve-count=3", "--ve-network=none", f"--ve-workload={MEMORY_HOG}", "--ve-tmpfs-size=64M"]
    result = run_pytest(pytester, names, *options, "--ve-memory-max=total:96M")
    out = result.stdout.str()
    # The hog's own process was killed inside the experiment's limit; the run, its other VEs
    # and the tool went on, and the record says why in the kernel's terms.
    result.assert_outcomes(passed=2)
    assert "Completed VEs (command): 2" in out and "Incomplete VEs   : 1" in out, out
    assert "ve2: command exited with status 137 (expected 0); its workload was killed by SIGKILL (rc=137): " in out
    assert "the kernel's OOM killer ended it" in out, out
    kernel = json.loads(seen.read_text())
    assert kernel["limit"] == str(96 * 2**20) and kernel["oom_kills"] >= 1, kernel
    assert kernel["oom_score_adj"] == [1000, 0], kernel  # the VE is the first pick, the tool's monitor not
    assert "Takedown: nothing left behind" in out, out
    assert leftovers(names) == []


def test_the_default_memory_limit_is_what_the_host_can_give_less_its_reserve(pytester, clean_host, monkeypatch):
    names = clean_host
    seen = pytester.path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    pytester.makepyfile(test_memory=MEMORY_SUITE)
    idle = ["--ve-count=2", "--ve-network=none", "--ve-workload=idle", "--ve-tmpfs-size=64M"]
    before = host.memory_available() - host.MEMORY_RESERVE
    result = run_pytest(pytester, names, *idle)
    after = host.memory_available() - host.MEMORY_RESERVE
    result.assert_outcomes(passed=2)
    limit = int(json.loads(seen.read_text())["limit"])
    # Read at setup, between the two readings here (with some slack: the host moves).
    assert min(before, after) - 2**28 <= limit <= max(before, after) + 2**28, (before, limit, after)
    unlimited = run_pytest(pytester, names, *idle, "--ve-memory-max=total:max")
    unlimited.assert_outcomes(passed=2)
    assert json.loads(seen.read_text())["limit"] in ("max", "9223372036854771712")  # the kernel's "none", v2 / v1


def test_a_limit_per_ve_ends_the_ves_own_process_and_no_neighbours(pytester, clean_host, leftovers, monkeypatch):
    names = clean_host
    seen = pytester.path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    pytester.makepyfile(test_memory=MEMORY_SUITE)
    options = ["--ve-count=3", "--ve-network=none", f"--ve-workload={MEMORY_HOG}", "--ve-tmpfs-size=64M"]
    # A memory cgroup per VE: asked for on cgroup v1; every VE has one on a v2-only host (a list is refused there).
    own_cgroups = [] if cgroups.unified_only() else ["--ve-cgroups=cpu,pids,memory"]
    # No total limit: only ve2's own stands between its 300 MiB and the host.
    result = run_pytest(pytester, names, *options, "--ve-memory-max=48M,total:max", *own_cgroups)
    out = result.stdout.str()
    result.assert_outcomes(passed=2)
    assert "Completed VEs (command): 2" in out and "Incomplete VEs   : 1" in out, out
    assert "ve2: command exited with status 137 (expected 0); its workload was killed by SIGKILL (rc=137): " in out
    kernel = json.loads(seen.read_text())
    assert kernel["ve2_limit"] == str(48 * 2**20) and kernel["oom_kills"] >= 1, kernel
    assert kernel["limit"] in ("max", "9223372036854771712"), kernel  # the experiment's: none
    assert "Takedown: nothing left behind" in out, out
    assert leftovers(names) == []


# ve2 fills a tmpfs file it already unlinked, through one small process (busybox dd, a 1 MiB
# buffer): the charge is the file's pages, which no process's RSS shows, and the file goes
# with dd. The others sleep, allocating nothing meanwhile.
TMPFS_HOG = (
    "cmd:if [ $(hostname) = ve2 ]; then sleep 1; exec >/fill; rm /fill; exec dd if=/dev/zero bs=1M count=300; fi;"
    " sleep 6"
)


def test_the_experiments_oom_killer_takes_the_ves_process_not_a_neighbours_monitor(
    pytester, clean_host, leftovers, monkeypatch
):
    """On cgroup v1 the VEs' LXC monitors share the experiment's memory cgroup (the starters
    join it), and a monitor's 3 MiB outweighs a small VE process: the kernel took ve1's monitor,
    and ve1 with it, for what ve2 ate. The tool's processes are the OOM killer's last choice."""
    names = clean_host
    seen = pytester.path / "seen.json"
    monkeypatch.setenv("SEEN", str(seen))
    pytester.makepyfile(test_memory=MEMORY_SUITE)
    options = ["--ve-count=4", "--ve-network=none", f"--ve-workload={TMPFS_HOG}", "--ve-tmpfs-size=512M"]
    result = run_pytest(pytester, names, *options, "--ve-memory-max=total:96M", timeout=240)
    out = result.stdout.str()
    result.assert_outcomes(passed=2)
    assert "Completed VEs (command): 3" in out and "Incomplete VEs   : 1" in out, out
    assert "ve2: command exited with status 137 (expected 0); its workload was killed by SIGKILL (rc=137): " in out
    assert json.loads(seen.read_text())["oom_kills"] >= 1
    assert "Takedown: nothing left behind" in out, out
    assert leftovers(names) == []
