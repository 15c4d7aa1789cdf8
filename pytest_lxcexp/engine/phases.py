"""Per-VE phase latencies of a start, each in seconds from that VE's start request:

    lxc_start_returned   lxc-start -d returned (the starter's clock)
    running              its LXC monitor announced RUNNING (state_reader.py, on the monitor FIFO)
    workload_began       its init began the workload script ($EPOCHREALTIME, its first line)
    first_ping           a ping workload's first answered probe ($EPOCHREALTIME after it)

The host and its VEs share one CLOCK_REALTIME (no time namespace), so the VE's own stamps
and the starter's request time compare directly. A stamp that is missing (a shell
without $EPOCHREALTIME, such as dash; a VE that never got so far) is None.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator

READER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "state_reader.py")
RUNDIR = "/run"  # liblxc's runtime path (meson's runtime-path; /run for every build here)
PHASES = ("lxc_start_returned", "running", "workload_began", "first_ping")


def monitor_fifo(lxcpath: str) -> str:
    """Where liblxc's monitors send state messages for containers under `lxcpath`."""
    return f"{RUNDIR}/lxc/{lxcpath.lstrip('/')}/monitor-fifo"


class RunningTimes:
    """When each VE's monitor announced RUNNING (epoch seconds), once the watch has ended."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}


@contextlib.contextmanager
def watch_running(lxcpath: str) -> Iterator[RunningTimes]:
    """Stamp every RUNNING announcement under `lxcpath` while the block runs (the
    experiment holds it open from its first start until its first wait).

    Best effort: if the FIFO cannot be made (another reader's FIFO is there, /run is
    read-only), the times are simply missing; the starts go on."""
    times = RunningTimes()
    path = monitor_fifo(lxcpath)
    made: list[str] = []
    reader = None
    try:
        directory = os.path.dirname(path)
        missing = directory
        while not os.path.isdir(missing):
            made.append(missing)
            missing = os.path.dirname(missing)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISFIFO(os.lstat(path).st_mode):
                raise OSError(f"{path} exists and is not a FIFO")
            os.unlink(path)  # a crashed run's: no reader, ours (named after our root)
        os.mkfifo(path, 0o600)
        # A process group of its own, as the starters: a terminal's Ctrl-C reaches only the
        # tool, which ends the watch in order (the reader must outlive the FIFO it reads).
        reader = subprocess.Popen(
            [sys.executable, "-I", READER, path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            process_group=0,
        )
        assert reader.stdout is not None
        reader.stdout.readline()  # "ready": the FIFO is open before the first start
    except OSError:
        reader = None
    try:
        yield times
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # first: no monitor opens it any more, and the reader drains the rest
        for directory in made:
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        if reader is not None:
            # Best effort to the end: a reader that died (killed from outside) leaves the times missing.
            with contextlib.suppress(ValueError, IndexError, AttributeError, subprocess.SubprocessError):
                out, _ = reader.communicate(timeout=30)
                times.at = {str(k): float(v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def since(moment: float | None, started_at: float | None) -> float | None:
    if moment is None or started_at is None:
        return None
    return round(moment - started_at, 6)
