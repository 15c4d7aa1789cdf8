"""One experiment on one root: the engine's single entry point for the plugin and the CLI."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from . import base, fleet, host, network, storage, takedown, tuning
from .config import ConfigError, ExperimentConfig
from .stats import Summary, VERecord, summarize
from .workload import read_log

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Experiment:
    """Builds, runs, measures and takes down one experiment, phase by phase."""

    def __init__(self, config: ExperimentConfig, progress: Progress = _quiet) -> None:
        self.config = config
        self.layout = storage.Layout(config.root)
        self.progress = progress
        self.timings: dict[str, float] = {}
        self.starts: dict[int, fleet.StartResult] = {}
        self._lock = storage.RunLock(config.root)
        self.stale_marker: dict | None = None
        self.warnings: list[str] = []
        self.tuned: dict[str, tuple[int, int]] = {}
        self.takedown_report = takedown.TakedownReport()
        self._first_start: float | None = None
        self._last_start_end: float | None = None
        self._last_completion: float | None = None

    @property
    def bridge_layout(self) -> network.BridgeLayout:
        return network.BridgeLayout(self.config.bridge, self.config.tag, self.config.count)

    @classmethod
    def attach(cls, root: str, progress: Progress = _quiet) -> Experiment:
        """Load the experiment that lives in `root` (set up earlier, e.g. by `lxcexp setup`)."""
        marker = storage.read_marker(root)
        if marker is None:
            raise ConfigError("--root", f"{root} holds no experiment of ours (run `lxcexp setup` first)")
        experiment = cls(ExperimentConfig.from_dict(marker["config"]), progress)
        experiment.starts = fleet.load_starts(experiment.layout)
        return experiment

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[phase] = time.monotonic() - began

    @contextmanager
    def timed_takedown(self) -> Iterator[None]:
        """Takedown runs in steps (one per fixture); their times add up."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings["takedown"] = self.timings.get("takedown", 0.0) + time.monotonic() - began

    # -- before anything is created -------------------------------------------------

    def check(self) -> dict | None:
        """Validate the host and the root; returns a stale experiment's marker, if any."""
        stale = storage.check_root(self.config.root)
        self.warnings = host.preflight(self.config)
        return stale

    def lock(self) -> None:
        self._lock.acquire()

    def unlock(self) -> None:
        self._lock.release()

    def clean_stale(self, marker: dict) -> None:
        """Take down an earlier experiment of ours left in this root (a crashed run)."""
        old = ExperimentConfig.from_dict(marker["config"])
        self.progress(f"lxcexp: taking down a stale experiment in {old.root} (pid {marker.get('pid')})")
        takedown.takedown(old.root, old.tag, old.bridge if old.network == "bridge" else None)

    # -- setup, one phase each ----------------------------------------------------

    def setup_root(self) -> None:
        with self._timed("setup tmpfs"):
            storage.mount_tmpfs(self.config.root, self.config.tmpfs_size)
            storage.write_marker(self.config)
            if self.config.tune_host:
                # After the marker: the old values are saved in the root, so takedown restores them.
                self.tuned = tuning.tune(self.config)
                for path, (old, new) in self.tuned.items():
                    self.progress(f"lxcexp: --ve-tune-host: {path} {old} -> {new}")

    def setup_base(self) -> None:
        with self._timed("setup base"):
            base.install_base(
                self.layout,
                self.config.base_cache,
                self.config.base_refresh,
                self.config.pings,
                self.config.ping_interval,
            )

    def setup_network(self) -> None:
        if self.config.network != "bridge":
            return
        with self._timed("setup network"):
            network.create_network(self.bridge_layout, network.AddressPlan(self.config.subnet))

    def setup_clones(self) -> None:
        with self._timed("setup clones"):
            fleet.create_clones(self.config, self.layout, lambda n: self.progress(f"lxcexp: {n} clones created"))

    def setup(self) -> None:
        self.setup_root()
        self.setup_base()
        self.setup_network()
        self.setup_clones()

    # -- running --------------------------------------------------------------------

    def start(self, first: int, last: int) -> list[fleet.StartResult]:
        began = time.monotonic()
        if self._first_start is None:
            self._first_start = began
        results = fleet.start_range(
            self.layout, range(first, last + 1), self.config.start_delay, workers=self.config.parallel
        )
        for result in results:
            self.starts[result.index] = result
        self._last_start_end = time.monotonic()
        self.timings["start all"] = self._last_start_end - self._first_start
        ok = sum(r.ok for r in results)
        took = self._last_start_end - began
        self.progress(f"lxcexp: started ve{first}-ve{last}: {ok} of {len(results)} in {took:.1f} s")
        return results

    def records(self, first: int, last: int) -> list[VERecord]:
        indexes = range(first, last + 1)
        states = fleet.ve_states(self.layout, indexes, workers=self.config.parallel)
        plan = network.AddressPlan(self.config.subnet) if self.config.network == "bridge" else None
        records = []
        for index in indexes:
            start = self.starts.get(index)
            state = states.get(index, fleet.VEState("UNKNOWN", None))
            log = read_log(self.layout.ve_workload_log(index))
            records.append(
                VERecord(
                    index=index,
                    state=state.state,
                    pid=state.pid,
                    pings=log.pings,
                    expected_pings=self.config.pings,
                    finished=log.finished,
                    log_present=log.present,
                    start_latency=start.latency if start else None,
                    start_error=start.error if start and not start.ok else None,
                    address=str(plan.ve_address(index)) if plan else None,
                )
            )
        return records

    def wait(self, first: int, last: int, timeout: float | None = None) -> list[VERecord]:
        """Wait until every VE of the range has finished its workload (or cannot), then report."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.config.effective_timeout)
        pending = set(range(first, last + 1))
        while pending and time.monotonic() < deadline:
            for index in sorted(pending):
                start = self.starts.get(index)
                if start is not None and not start.ok or read_log(self.layout.ve_workload_log(index)).finished:
                    pending.discard(index)
                elif start is not None and start.pid and not os.path.exists(f"/proc/{start.pid}"):
                    # Its init is gone: it will never finish, so do not wait out the timeout.
                    pending.discard(index)
            if pending:
                time.sleep(0.5)
        self._last_completion = time.monotonic()
        if self._first_start is not None:
            self.timings["complete all"] = self._last_completion - self._first_start
        return self.records(first, last)

    def summary(self, records: list[VERecord]) -> Summary:
        try:
            used = storage.tmpfs_used_bytes(self.config.root)
        except OSError:
            used = 0
        return summarize(records, disk_used=used, root=self.config.root, expected_pings=self.config.pings)

    # -- takedown -------------------------------------------------------------------

    def takedown(self) -> takedown.TakedownReport:
        with self.timed_takedown():
            bridge = self.config.bridge if self.config.network == "bridge" else None
            return takedown.takedown(self.config.root, self.config.tag, bridge)

    def leftovers(self) -> list[str]:
        bridge = self.config.bridge if self.config.network == "bridge" else None
        return takedown.leftovers(self.config.root, self.config.tag, bridge)
