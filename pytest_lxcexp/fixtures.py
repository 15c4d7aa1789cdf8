"""Session fixtures, one state-changing step each: tmpfs -> base -> bridge -> clones.

Each tears down its own step, in reverse order, and each teardown is safe to repeat.
`ve_range` (function scope, parametrized by the plugin) hands a test its VEs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from .engine.builds import BuildProofError
from .engine.config import ExperimentConfig
from .engine.experiment import Experiment
from .engine.fleet import StartResult, load_starts
from .engine.ramp import Ramp
from .engine.shared import SharedRun
from .engine.stats import VERecord
from .engine.storage import RootError
from .engine.takedown import TakedownReport, takedown_network, takedown_root, takedown_ves
from .session import RunState, run_state_key

# A test using any of these needs the host (preflight, root); ve_config alone only reads options.
HOST_FIXTURES = frozenset(
    {"ve_round", "ve_root", "ve_base", "ve_network", "ve_clones", "ve_experiment", "ve_range", "ve_ramp"}
)
EXPERIMENT_FIXTURES = HOST_FIXTURES | {"ve_config"}


def _state(request: pytest.FixtureRequest) -> RunState:
    return request.config.stash[run_state_key]


def _say(request: pytest.FixtureRequest, message: str, **markup: bool) -> None:
    """Write a line to the terminal now, past pytest's output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(message, **markup)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(message, **markup)


def _progress(request: pytest.FixtureRequest):  # noqa: ANN202
    verbose = request.config.option.verbose > 0

    def emit(message: str) -> None:
        if verbose:
            _say(request, message)

    return emit


class StatusLine:
    """A live status line that does not flood: on a terminal one line rewritten in place
    (at most twice a second), in a log (not a terminal) a line every 30 s."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.request = request
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        # The reporter saw the real stdout before pytest captured it.
        self.tty = bool(getattr(reporter, "isatty", False))
        self.interval = 0.5 if self.tty else 30.0
        self.last = time.monotonic()  # nothing for phases shorter than one interval
        self.open = False  # a rewritten line is on the terminal, not yet ended

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        if not self.tty:
            _say(self.request, message)
            return
        reporter = self.request.config.pluginmanager.get_plugin("terminalreporter")
        capture = self.request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.rewrite(message, erase=True)
            self.open = True

    def end(self) -> None:
        """End a rewritten line, so what pytest writes next starts on a line of its own."""
        if self.open:
            self.open = False
            _say(self.request, "")


def ve_fields_from_hooks(config: pytest.Config, experiment: Experiment) -> Callable[[VERecord], dict] | None:
    """The pytest_lxcexp_ve_fields implementations as one callable for the engine, or None if there are none."""
    hook = config.hook.pytest_lxcexp_ve_fields
    if not hook.get_hookimpls():
        return None

    def fields(record: VERecord) -> dict:
        merged: dict = {}
        for extra in reversed(hook(record=record, experiment=experiment)):  # first-registered first
            merged.update(extra or {})
        return merged

    return fields


def xdist_run_id(config: pytest.Config) -> str | None:
    """The id of the pytest-xdist run this worker belongs to, or None outside xdist."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("testrunuid") if workerinput else None


def _join(request: pytest.FixtureRequest, experiment: Experiment) -> None:
    """Take the root: alone with the run lock, or as one of the run's xdist workers."""
    run_id = xdist_run_id(request.config)
    if run_id is None:
        experiment.lock()
        return
    host = request.config.workerinput.get("lxcexp_host", "")  # type: ignore[attr-defined]
    experiment.share = SharedRun(experiment.config.root, run_id, host)
    experiment.first_member = experiment.share.join().first


def _release_waiting_workers(experiment: Experiment) -> None:
    """A setup step failed: the run's other workers, waiting at the gate, fail instead of waiting."""
    if experiment.share is not None and experiment.first_member:
        experiment.share.setup_done(ok=False)


def _leave(experiment: Experiment, setup_failed: bool = False) -> None:
    share = experiment.share
    if share is None:
        experiment.unlock()
        return
    if setup_failed:
        _release_waiting_workers(experiment)
    share.finish()
    if experiment.last_member and not experiment.config.keep:
        share.cleanup_files()


@pytest.fixture(scope="session")
def ve_config(request: pytest.FixtureRequest) -> ExperimentConfig:
    """The session's validated ExperimentConfig."""
    return _state(request).config


@pytest.fixture(scope="session")
def ve_round(request: pytest.FixtureRequest) -> Iterator[int]:
    """The round being run (0-based), at the root of the chain: --ve-repeat N parametrizes it
    (round1..roundN, session scope), so pytest runs each round's tests before the next round's
    and tears the whole chain down, the takedown, between them."""
    state = _state(request)
    number = getattr(request, "param", 0)
    if state.config.repeat > 1:
        _say(request, f"lxcexp: round {number + 1} of {state.config.repeat}", bold=True)
    state.begin_round(number)
    yield number
    experiment = state.experiment
    # Looked at now, before the next round's set up: what this round's takedown left behind.
    taken_down = experiment is not None and experiment.taken_down
    state.end_round(experiment.leftovers() if taken_down else None)


@pytest.fixture(scope="session")
def ve_root(request: pytest.FixtureRequest, ve_round: int) -> Iterator[Experiment]:
    """Lock the root, clean a stale run of ours, mount the tmpfs and mark it ours."""
    state = _state(request)
    experiment = state.experiment or Experiment(state.config)
    experiment.round = ve_round
    experiment.progress = _progress(request)
    experiment.record_fields = ve_fields_from_hooks(request.config, experiment)
    status = StatusLine(request)
    experiment.status, experiment.status_end = status, status.end
    state.experiment = experiment
    try:
        _join(request, experiment)
    except RootError as error:
        if experiment.share is not None:
            # An xdist worker: pytest.exit() there is an INTERNALERROR in the controller;
            # an error of the fixture fails this worker's tests with the reason instead.
            raise RootError(f"--ve-root: {state.config.root}: {error}") from None
        # Another run took the root since the preflight's check: stop, touching nothing of its.
        pytest.exit(f"--ve-root: {state.config.root}: {error}", returncode=pytest.ExitCode.USAGE_ERROR)
    try:
        if not experiment.first_member:
            pass  # another worker of this run set the host up
        elif experiment.stale_marker:
            _say(
                request,
                f"lxcexp: {state.config.root} holds a stale experiment of ours "
                f"(pid {experiment.stale_marker.get('pid')}); taking it down first",
                yellow=True,
            )
            experiment.clean_stale(experiment.stale_marker)
        if experiment.first_member:
            experiment.setup_root()
    except BaseException:
        if experiment.first_member:
            takedown_root(state.config.root, TakedownReport())
            experiment.taken_down = True
        _leave(experiment, setup_failed=True)
        raise
    yield experiment
    try:
        if not state.config.keep and experiment.last_member:
            with experiment.timed_takedown():
                takedown_root(state.config.root, experiment.takedown_report)
            experiment.taken_down = True
    finally:
        _leave(experiment)  # the lock (or the share) is given up even if the unmount failed


@pytest.fixture(scope="session")
def ve_base(ve_root: Experiment) -> Experiment:
    """The base root filesystem in the tmpfs (removed with the tmpfs)."""
    try:
        if ve_root.first_member:
            ve_root.setup_base()
    except BaseException:
        _release_waiting_workers(ve_root)
        raise
    return ve_root


@pytest.fixture(scope="session")
def ve_network(ve_base: Experiment) -> Iterator[Experiment]:
    """The bridge with its address (nothing for --ve-network=none)."""
    config = ve_base.config
    try:
        if ve_base.first_member:
            ve_base.setup_network()
    except BaseException:
        _release_waiting_workers(ve_base)
        takedown_network(config.tag, config.bridge if config.network == "bridge" else None, TakedownReport())
        raise
    yield ve_base
    if not config.keep and ve_base.last_member:
        with ve_base.timed_takedown():
            takedown_network(config.tag, config.bridge if config.network == "bridge" else None, ve_base.takedown_report)


@pytest.fixture(scope="session")
def ve_clones(request: pytest.FixtureRequest, ve_network: Experiment) -> Iterator[Experiment]:
    """ve1..veN as overlay clones; at the end: the final records, then every VE stopped."""
    state = _state(request)
    experiment = ve_network
    try:
        if experiment.first_member:
            experiment.setup_clones()
            if experiment.share is not None:
                experiment.share.setup_done()  # the other workers of the run may attach now
    except BaseException:
        _release_waiting_workers(experiment)
        takedown_ves(experiment.config.root, experiment.config.tag, TakedownReport())
        raise
    yield experiment
    # Whatever fails while reading the records (a hook, a VE's files, the disk), the VEs
    # are still stopped: the takedown is in the finally, the error is raised after it.
    try:
        if experiment.starts:
            experiment.phase = "records"
            records = experiment.records(experiment.config.ve_first, experiment.created_last)
            state.round_records(records, experiment.summary(records))
    finally:
        try:
            if experiment.share is not None:
                experiment.last_member = experiment.share.leave()
        finally:
            state.kept = state.config.keep
            # Kept up on purpose, or another worker of this run still uses it: not ours to take down.
            if not state.config.keep and experiment.last_member:
                with experiment.timed_takedown():
                    takedown_ves(experiment.config.root, experiment.config.tag, experiment.takedown_report)


@pytest.fixture(scope="session")
def ve_experiment(ve_clones: Experiment) -> Experiment:
    """The whole experiment, set up: tmpfs, base, network, clones."""
    return ve_clones


@dataclass
class VERange:
    """The VEs veFIRST..veLAST of one parametrized test."""

    experiment: Experiment
    first: int
    last: int

    @property
    def indexes(self) -> range:
        return range(self.first, self.last + 1)

    def start(self) -> list[StartResult]:
        if self.experiment.share is None:
            return self._start()
        with self._range_state() as state:
            if state["started"]:
                return self._started_elsewhere()  # another worker of this run started this generation
            state["started"] = True
            return self._start()

    def _start(self) -> list[StartResult]:
        try:
            return self.experiment.start(self.first, self.last)
        except BuildProofError as error:
            # A build that did not run as asked makes every figure of the run meaningless:
            # end the session as a usage error; the fixtures' teardowns take it all down.
            pytest.exit(str(error), returncode=pytest.ExitCode.USAGE_ERROR)

    def wait(self, timeout: float | None = None) -> list[VERecord]:
        """Wait for every VE of the range to finish its workload (or fail), then report each."""
        if self.experiment.share is not None:
            # xdist: this range's start may have run (or be running) on another worker.
            with self._range_state() as state:
                if state["started"]:
                    self._started_elsewhere()
                else:
                    state["started"] = True
                    self._start()
        elif not any(index in self.experiment.starts for index in self.indexes):
            self.start()  # a test that waits on a range nobody started starts it first
        return self.experiment.wait(self.first, self.last, timeout)

    @contextlib.contextmanager
    def _range_state(self) -> Iterator[dict]:
        """One process at a time starts (or checks the start of) this range. The lock file holds
        the range's generation: each stop() begins a new one, which the next start() really starts."""
        path = os.path.join(self.experiment.layout.state_dir, f"range-{self.first}-{self.last}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                state = json.loads(handle.read() or "{}")
            except ValueError:
                state = {}
            state = {"generation": int(state.get("generation", 1)), "started": bool(state.get("started"))}
            before = dict(state)
            try:
                yield state
            finally:
                if state != before:
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(state))
                    handle.flush()

    def _started_elsewhere(self) -> list[StartResult]:
        """The range's starts as recorded in the root by any process; adopted into this one's."""
        recorded = load_starts(self.experiment.layout)
        found = [recorded[index] for index in self.indexes if index in recorded]
        for result in found:
            self.experiment.starts[result.index] = result
        return found

    def records(self) -> list[VERecord]:
        return self.experiment.records(self.first, self.last)

    def stop(self) -> set[str]:
        """Stop the range's VEs (they can be started again: churn); returns those that were running."""
        if self.experiment.share is None:
            return self.experiment.stop(self.first, self.last)
        with self._range_state() as state:
            stopped = self.experiment.stop(self.first, self.last)
            state["generation"] += 1  # the next start() starts the range again, on whichever worker
            state["started"] = False
            return stopped

    def destroy(self) -> None:
        """Remove the range's stopped VEs; create() makes them anew from the base."""
        self.experiment.destroy(self.first, self.last)

    def create(self) -> None:
        self.experiment.create(self.first, self.last)

    def __str__(self) -> str:
        return f"ve{self.first}-ve{self.last}"


def _listed(header: str, lines: list[str], limit: int) -> str:
    shown = [header, *lines[:limit]]
    if len(lines) > limit:
        shown.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(shown)


def describe_failures(records: list[VERecord], limit: int = 50) -> str:
    """One line per VE that did not complete, with the reason."""
    failed = [record for record in records if not record.completed]
    lines = [f"  {record.name}: {record.failure}{record.fields_text}" for record in failed]
    return _listed(f"{len(failed)} of {len(records)} VEs did not complete:", lines, limit)


def describe_start_failures(results: list[StartResult], limit: int = 50) -> str:
    failed = [result for result in results if not result.ok]
    lines = [f"  ve{result.index}: {result.error}" for result in failed]
    return _listed(f"{len(failed)} of {len(results)} VEs failed to start:", lines, limit)


@pytest.fixture
def ve_range(request: pytest.FixtureRequest, ve_experiment: Experiment) -> VERange:
    """The test's range of VEs (the plugin parametrizes it: ve1-ve100, ve101-ve200, ...)."""
    first, last = request.param
    return VERange(ve_experiment, first, last)


@pytest.fixture
def ve_ramp(ve_experiment: Experiment) -> Ramp:
    """--ve-count=max: the ramp over the experiment; `ve_ramp.run()` starts VEs in growing
    steps until something stops it and returns the RampResult (curve and named stop)."""
    return Ramp(ve_experiment)
