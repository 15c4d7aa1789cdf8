"""The pytest layer's one shared state: what this session's experiment is and produced
(RunState, kept in config.stash under run_state_key), and how the options become its
ExperimentConfig. The plugin, fixtures, interrupts, summary, xdist support and report
import it; it imports none of them."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from .engine.config import ConfigError, ExperimentConfig, build_config
from .engine.experiment import Experiment
from .engine.fleet import StartResult
from .engine.stats import Summary, VERecord, summarize
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
class RoundState:
    """One round of --ve-repeat (a session without it has one): what it measured, kept when
    the next round's experiment replaces its own."""

    number: int  # 0-based, as ves[].round; shown 1-based (round1, "round 1 of 2")
    began_at: float  # epoch of its set up
    first_build: str | None = None  # the --ve-lxc build that starts its first VE
    experiment: Experiment | None = None
    summary: Summary | None = None
    timings: dict[str, float] = field(default_factory=dict)
    starts: dict[int, StartResult] = field(default_factory=dict)
    waited_until: float | None = None
    # What its takedown left on the host, looked at before the next round's set up (None: not looked at).
    left_behind: list[str] | None = None
    waits: list[dict[str, Any]] = field(default_factory=list)  # each range's wait (engine/waits.py)

    def take_from(self, experiment: Experiment) -> None:
        self.timings = dict(experiment.timings)
        self.starts = dict(experiment.starts)
        self.waited_until = experiment.waited_until
        self.waits = [wait.to_dict() for wait in experiment.waits]


@dataclass
class RunState:
    """What this session's experiment produced; the terminal summary reads it."""

    config: ExperimentConfig
    experiment: Experiment | None = None  # the round being run (the last one, once all ran)
    # Every round's records, by (round, VE index); `summary` counts them all.
    records: dict[tuple[int, int], VERecord] = field(default_factory=dict)
    summary: Summary | None = None
    rounds: list[RoundState] = field(default_factory=list)
    kept: bool = False
    # xdist controller: each host's figures, and what the hosts' own takedowns left behind.
    hosts: list[HostFigures] = field(default_factory=list)
    leftovers: list[str] | None = None
    # What the summary prints besides the records; a local run's experiment measured them,
    # an xdist controller's come from the workers (see xdist_support.merge_into).
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tuned: dict[str, tuple[int, int]] = field(default_factory=dict)
    started: set[tuple[int, int]] = field(default_factory=set)  # (round, index) of each VE asked to start
    # xdist controller: each worker's results file (as report/plugin built it there), merged
    # once (merged_results) for both the terminal summary and results.json.
    worker_results: list[Results] = field(default_factory=list)
    _merged: Results | None = None

    def merged_results(self) -> Results | None:
        if self._merged is None and self.worker_results:
            self._merged = merge_worker_results(self.worker_results)
        return self._merged

    def begin_round(self, number: int) -> RoundState:
        """Round `number` begins: the first runs on the experiment the preflight made, each
        later one on a fresh one (a new set up: nothing of the last round's state carries over)."""
        experiment = self.experiment
        if experiment is not None and self.rounds:
            experiment = self.experiment = experiment.next_round(number)
        elif experiment is not None:
            experiment.round = number
        state = RoundState(number, time.time(), experiment=experiment)
        if experiment is not None:
            state.first_build = experiment.build_of(self.config.ve_first).name
        self.rounds.append(state)
        return state

    def round_records(self, records: list[VERecord], summary: Summary) -> None:
        """The round being run has its final records (its VEs about to be stopped)."""
        for record in records:
            self.records[(record.round, record.index)] = record
        if self.rounds:
            self.rounds[-1].summary = summary
        self.summary = summarize(
            self.records.values(),
            disk_used=max((r.summary.disk_used for r in self.rounds if r.summary), default=summary.disk_used),
            root=summary.root,
            expected_pings=summary.expected_pings,
            workload=summary.workload,
        )

    def end_round(self, left_behind: list[str] | None) -> None:
        """The round being run is taken down: keep what it measured before the next replaces it."""
        if not self.rounds:
            return
        current = self.rounds[-1]
        if current.experiment is not None:
            current.take_from(current.experiment)
        current.left_behind = left_behind

    def take_from(self, experiment: Experiment) -> None:
        """A local run: what its experiment measured, for the summary."""
        self.timings = dict(experiment.timings)
        self.warnings = list(experiment.warnings)
        self.tuned = dict(experiment.tuned)
        self.started = {(r.number, index) for r in self.rounds[:-1] for index in r.starts}
        self.started |= {(experiment.round, index) for index in experiment.starts}
        if self.rounds and self.rounds[-1].experiment is experiment:
            self.rounds[-1].take_from(experiment)  # also a round cut short before its end


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
