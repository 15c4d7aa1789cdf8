"""A light background sampler: host memory and running VEs, every half second.

It only reads /proc/meminfo and the experiment's own cgroup directories. It never calls
liblxc: the engine forks children while this thread runs, and a child must not inherit
liblxc state a second thread was in the middle of changing.

Started VEs and completed VEs are not sampled here: they are derived at the end from the
start timestamps and the workload logs' end epochs (see results.timeline), which is
exact and costs nothing while the experiment runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..engine import cgroups

INTERVAL = 0.5


@dataclass(frozen=True)
class Sample:
    at: float  # epoch seconds
    memory_used: int  # host: MemTotal - MemAvailable, bytes
    running: int  # VEs with at least one process
    cgroup_memory: int | None  # bytes charged to the experiment's memory cgroup, if the host has one


def host_memory_used(path: str = "/proc/meminfo") -> int:
    total = available = 0
    with open(path) as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                total = int(line.split()[1]) * 1024
            elif line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    return total - available


def _read_int(path: str) -> int | None:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CgroupProbe:
    """Counts the VEs that have processes, from one cgroup hierarchy, without liblxc."""

    def __init__(self, tag: str, mounts: list[str] | None = None) -> None:
        found = mounts if mounts is not None else cgroups.hierarchies()
        name = cgroups.container_dir(tag)
        # v1 'pids' keeps a hierarchical process count per VE: one small read per VE.
        pids = [m for m in found if os.path.basename(m) == "pids"]
        unified = [m for m in found if os.path.basename(m) in ("unified", "cgroup")]
        self.top = os.path.join((pids or unified or found or ["/sys/fs/cgroup"])[0], name)
        memory = [m for m in found if os.path.basename(m) == "memory"]
        if memory:
            self.memory_file = os.path.join(memory[0], name, "memory.usage_in_bytes")
        else:
            self.memory_file = os.path.join(unified[0] if unified else "/sys/fs/cgroup", name, "memory.current")

    def running(self) -> int:
        try:
            entries = list(os.scandir(self.top))
        except OSError:
            return 0
        count = 0
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                continue
            current = _read_int(os.path.join(entry.path, "pids.current"))
            if current is None:
                current = self._procs(entry.path)
            count += current > 0
        return count

    @staticmethod
    def _procs(directory: str) -> int:
        for path, _, _ in os.walk(directory):
            try:
                with open(os.path.join(path, "cgroup.procs")) as handle:
                    if handle.read().strip():
                        return 1
            except OSError:
                continue
        return 0

    def memory(self) -> int | None:
        return _read_int(self.memory_file)


class Sampler:
    """Samples in a daemon thread until stop(); stop() is safe to call more than once."""

    def __init__(
        self,
        probe: CgroupProbe,
        interval: float = INTERVAL,
        memory_used: Callable[[], int] = host_memory_used,
    ) -> None:
        self.probe = probe
        self.interval = interval
        self._memory_used = memory_used
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lxcexp-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        try:
            self.samples.append(Sample(time.time(), self._memory_used(), self.probe.running(), self.probe.memory()))
        except Exception as error:  # noqa: BLE001 - a failed sample must not end the session
            if len(self.errors) < 10:
                self.errors.append(f"{type(error).__name__}: {error}")

    def _run(self) -> None:
        self.sample()
        while not self._stop.wait(self.interval):
            self.sample()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> list[Sample]:
        """Stop, take one last sample (the state after takedown), and return them all."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=5)
            self.sample()
        return list(self.samples)
