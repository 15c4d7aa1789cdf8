"""What a VE can put in place of a file the host reads: refused by name, never blocking."""

from __future__ import annotations

import os
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_lxcexp.engine import faults
from pytest_lxcexp.engine.safefs import UnsafeVEFile, open_ve_file, read_ve_tail, split_ve_path
from pytest_lxcexp.engine.workload import LogFollower, log_tail, parse_log, read_log

LOG = "ve7/delta0/var/log/lxcexp/workload.log"


def host_shows_it(limit: faults.HostLimit) -> bool:
    return True


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    # A regression would block in open() or read(): turn that into a failure, not a hung run.
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("blocked reading a VE file")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / LOG
    path.parent.mkdir(parents=True)
    return path


def test_the_trusted_top_is_the_parent_of_the_ve_directory() -> None:
    assert split_ve_path("/tmp/ve9/ve12/delta0/var/log/x.log") == ("/tmp/ve9", "ve12/delta0/var/log/x.log")
    assert split_ve_path("/exp/ve3/lxc.log") == ("/exp", "ve3/lxc.log")
    assert split_ve_path("/somewhere/file.log") == ("/somewhere", "file.log")


def test_a_fifo_is_refused_without_blocking(log: Path) -> None:
    os.mkfifo(log)
    with pytest.raises(UnsafeVEFile, match="a FIFO, not a regular file"):
        open_ve_file(str(log))
    assert read_log(str(log)).refused == "a FIFO, not a regular file"


def test_a_character_device_is_refused(log: Path) -> None:
    os.mknod(log, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: a read without end
    assert read_log(str(log)).refused == "a character device, not a regular file"


def test_a_directory_is_refused_and_no_fd_leaks(log: Path) -> None:
    log.mkdir()
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        assert read_log(str(log)).refused == "a directory, not a regular file"
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_socket_is_refused(log: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(log))
        assert read_log(str(log)).refused == "a socket, not a regular file"


def test_a_huge_file_is_refused_by_its_size(log: Path) -> None:
    with open(log, "wb") as handle:
        handle.truncate(500 * 2**20)  # sparse: 500 MiB apparent, nothing allocated
    refused = read_log(str(log)).refused
    assert refused is not None and refused.startswith("a file of 500.0 MiB, more than the 64 MiB")


def test_a_symlinked_directory_on_the_way_is_named(log: Path, tmp_path: Path) -> None:
    lxcexp_dir = log.parent
    lxcexp_dir.rename(tmp_path / "moved")
    lxcexp_dir.symlink_to(tmp_path / "moved")
    with pytest.raises(UnsafeVEFile) as refusal:
        open_ve_file(str(log))
    assert refusal.value.found == "reached through ve7/delta0/var/log/lxcexp, which is a symlink"


def test_a_refused_lxc_log_is_the_fault(tmp_path: Path, log: Path) -> None:
    lxc_log = tmp_path / "ve7" / "lxc.log"
    os.mkfifo(lxc_log)
    log.write_text("lxcexp-begin 1 ve7\n")
    assert (
        faults.ve_fault(str(tmp_path), str(lxc_log), str(log), host_agrees=host_shows_it)
        == "its lxc.log is a FIFO, not a regular file"
    )


def test_the_tail_is_bounded(log: Path) -> None:
    log.write_bytes(b"x" * 100_000 + b"\nlast line\n")
    assert read_ve_tail(str(log), 10) == "last line\n"


def test_the_follower_reads_only_what_is_new(log: Path) -> None:
    follower = LogFollower(str(log))
    assert follower.poll().present is False
    log.write_text("lxcexp-begin 1 ve7 workload=command\nhal")
    first = follower.poll()
    assert first.runs == 1 and first.output == ("hal",)
    with open(log, "a") as handle:
        handle.write("f\nlxcexp-end 2 rc=0\n")
    second = follower.poll()
    assert second.finished and second.output == ("half",)
    assert follower._offset == log.stat().st_size  # noqa: SLF001 - the point of the follower
    assert second == parse_log(log.read_text())


def test_the_follower_starts_again_on_a_replaced_or_truncated_log(log: Path) -> None:
    follower = LogFollower(str(log))
    log.write_text("lxcexp-begin 1 ve7\nlxcexp-begin 2 ve7\n")
    assert follower.poll().runs == 2
    log.write_text("lxcexp-begin 3 ve7\n")  # truncated and rewritten
    assert follower.poll().runs == 1
    log.unlink()
    os.mkfifo(log)
    assert follower.poll().refused == "a FIFO, not a regular file"
    log.unlink()
    log.write_text("lxcexp-begin 4 ve7\nlxcexp-end 5 rc=0\n")
    assert follower.poll().finished


def test_a_range_deadline_counts_from_its_first_start() -> None:
    from pytest_lxcexp.engine.waits import range_first_start, wait_deadline

    now = 1_000_000.0
    first = range_first_start([now - 100, now - 99])
    # Started 100 s ago with a 60 s timeout: its deadline has passed; a range nobody started gets all of it.
    assert wait_deadline(first, 60, now) == now - 40
    assert wait_deadline(range_first_start([]), 60, now) == now + 60
    # Two hung starts held their starter 30 s each: the VEs started after them get that back.
    assert wait_deadline(first, 60, now, held=60) == now + 20


def test_endless_output_lines_are_kept_bounded(log: Path) -> None:
    # A VE may print lines of tens of MB (binary output, no newline): the record keeps each
    # line short, in the follower's memory as in results.json (2 VEs once made a 648 MB one).
    follower = LogFollower(str(log))
    log.write_bytes(b"lxcexp-begin 1 ve7 workload=command\n" + b"x" * 5_000_000)
    partial = follower.poll()
    assert len(partial.output[-1]) <= 600, len(partial.output[-1])
    assert len(follower._partial) <= 4 * 500 + 1  # noqa: SLF001 - what the follower carries between polls
    with open(log, "ab") as handle:
        handle.write(b"y" * 3_000_000 + b"\n" + (b"z" * 2_000_000 + b"\n") * 25 + b"lxcexp-end 2 rc=1\n")
    done = follower.poll()
    assert done.finished and done.exit_status == 1
    assert len(done.output) == 20 and all(len(line) <= 600 for line in done.output)
    assert done.output[0].startswith("z" * 500) and done.output[0].endswith("(line cut)")
    assert parse_log(log.read_text()) == done


def test_a_failed_ves_log_tail_is_kept_short(log: Path) -> None:
    # The reports show a failed VE's last lines: five lines of 60 kB each were 390 kB of results.json per VE.
    log.write_bytes(b"lxcexp-begin 1 ve7 workload=command\n" + (b"\0" * 12_000 + b"\n") * 5)
    tail = log_tail(str(log))
    assert len(tail.splitlines()) == 5 and len(tail) <= 5 * 600, len(tail)
