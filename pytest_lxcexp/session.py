"""The pytest layer's one shared state: what this session's experiment is and produced
(RunState, kept in config.stash under run_state_key), and how the options become its
ExperimentConfig. The plugin, fixtures, interrupts, summary, xdist support and report
import it; it imports none of them."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from .engine.config import ConfigError, ExperimentConfig, build_config
from .engine.experiment import Experiment
from .engine.progress import NO_STATUS, Status
from .engine.stats import Summary, VERecord
from .membership import RunMembership
from .options import build_config_values
from .report.results import Results, merge_worker_results


@dataclass
class HostFigures:
    """One host's part of a run over several hosts."""

    key: str  # as host_identity() tells it
    name: str
    root: str
    bridge: str
    subnet: str
    first: int
    last: int
    ves: int = 0
    started: int = 0
    completed: int = 0
    start_all: float | None = None
    disk_used: int = 0
    leftovers: list[str] | None = None

    def line(self) -> str:
        start = f"{self.start_all:.1f} s" if self.start_all is not None else "-"
        network = f"on {self.bridge} ({self.subnet})" if self.bridge else "without a network"
        return (
            f"  {self.name}: ve{self.first}-ve{self.last} in {self.root} {network}: "
            f"{self.ves} VEs, {self.started} started, {self.completed} completed, start all {start}"
        )


@dataclass
class RunState:
    """This session's experiment, the pytest layer's part in it, and what it produced."""

    config: ExperimentConfig
    experiment: Experiment | None = None
    # What a preflight found in the root: an earlier experiment of ours that crashed.
    stale_marker: dict | None = None
    membership: RunMembership = field(default_factory=RunMembership)
    # What the experiment is doing now: an interrupt or a failure is reported against it.
    phase: str = "preflight"
    status: Status = NO_STATUS  # a live status line: started/running/completed/failed, rate, ETA
    # The pytest_lxcexp_ve_fields implementations as one callable, None if there are none.
    ve_fields: Callable[[VERecord], dict[str, Any]] | None = None
    records: dict[int, VERecord] = field(default_factory=dict)
    summary: Summary | None = None
    kept: bool = False
    # xdist controller: each host's figures, and what the hosts' own takedowns left behind.
    hosts: list[HostFigures] = field(default_factory=list)
    leftovers: list[str] | None = None
    # What the summary prints besides the records; a local run's experiment measured them,
    # an xdist controller's come from the workers (see xdist_support.merge_into).
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tuned: dict[str, tuple[int, int]] = field(default_factory=dict)
    started: set[int] = field(default_factory=set)
    # xdist controller: each worker's results file (as report/plugin built it there), merged
    # once (merged_results) for both the terminal summary and results.json.
    worker_results: list[Results] = field(default_factory=list)
    _merged: Results | None = None

    def merged_results(self) -> Results | None:
        if self._merged is None and self.worker_results:
            self._merged = merge_worker_results(self.worker_results)
        return self._merged

    @contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        self.phase = phase
        try:
            yield
        finally:
            self.phase = f"after {phase}"

    def with_fields(self, records: list[VERecord]) -> list[VERecord]:
        """The records with the hooks' extra fields; a failing hook is recorded in the record,
        never lets the records (and the takedown after them) fail."""
        if self.ve_fields is None:
            return records
        return [self._with_fields(record, self.ve_fields) for record in records]

    @staticmethod
    def _with_fields(record: VERecord, ve_fields: Callable[[VERecord], dict[str, Any]]) -> VERecord:
        try:
            extra = ve_fields(record)
        except Exception as error:  # noqa: BLE001 - user code: reported in the record instead
            extra = {"ve_fields_error": f"{type(error).__name__}: {error}"}
        # Plain JSON types only: the fields go into results.json and across xdist workers.
        plain = {str(k): v if isinstance(v, str | int | float | bool | None) else str(v) for k, v in extra.items()}
        return dataclasses.replace(record, fields=plain) if plain else record

    def take_from(self, experiment: Experiment) -> None:
        """A local run: what its experiment measured, for the summary."""
        self.timings = dict(experiment.timings)
        self.warnings = list(experiment.warnings)
        self.tuned = dict(experiment.tuned)
        self.started = set(experiment.starts)


run_state_key = pytest.StashKey[RunState]()
# pytest-xdist workeroutput key of a worker's results file (report/plugin puts it there).
WORKER_RESULTS_KEY = "lxcexp_results"


# Settings that may differ between the hosts of one run: on an xdist worker, an environment
# variable LXCEXP_<NAME> (e.g. LXCEXP_VE_ROOT, set per host in its `--tx ...//env:` spec) wins
# over the command line and ini, which every host of the run shares.
PER_HOST_OPTIONS = ("ve_root", "ve_tmpfs_size", "ve_bridge", "ve_subnet", "ve_parallel", "ve_mirror", "ve_apt_proxy")


def host_env_name(name: str) -> str:
    return "LXCEXP_" + name.upper()


def host_overrides(config: pytest.Config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Per-host settings, by option: from `environ` (a --tx spec's env), or on an xdist
    worker from its own environment; none in a plain run."""
    if environ is None:
        if not hasattr(config, "workerinput"):
            return {}
        environ = os.environ
    return {name: environ[host_env_name(name)] for name in PER_HOST_OPTIONS if environ.get(host_env_name(name))}


# The defaults of the built-in suite this session runs (suite_choice), by ini name.
suite_defaults_key = pytest.StashKey[dict[str, str | bool]]()


def _value(config: pytest.Config, name: str, overrides: Mapping[str, str]) -> str | bool | None:
    """Per-host setting, else command line, else ini file, else the built-in suite's default;
    None leaves the option's own default."""
    if name in overrides:
        return overrides[name]
    for value in (config.getoption(name), config.getini(name)):
        if value is not None:
            return value
    return config.stash.get(suite_defaults_key, {}).get(name)


def config_from_pytest(config: pytest.Config, environ: Mapping[str, str] | None = None) -> ExperimentConfig:
    """Options (per-host settings over command line over ini) -> one validated ExperimentConfig.

    A value from a per-host setting that is bad names that setting, not the option.
    """
    overrides = host_overrides(config, environ)
    try:
        return _build(config, overrides)
    except ConfigError as error:
        from_env = {f"--{name.replace('_', '-')}": name for name in overrides}
        if error.option in from_env:
            raise ConfigError(f"{host_env_name(from_env[error.option])} (--tx env)", error.reason) from None
        raise


def _build(config: pytest.Config, overrides: Mapping[str, str]) -> ExperimentConfig:
    return build_config(**build_config_values(lambda name: _value(config, name, overrides)))
