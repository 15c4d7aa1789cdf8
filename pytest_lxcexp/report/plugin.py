"""The reporting plugin: results JSON, run archive, compare with an earlier run, HTML (pytest-html).

Order within a session:
- configure: options parsed (usage errors name the option), the reference run loaded,
  the run folder made and pytest-html pointed at it;
- after collection: the sampler starts, if this session runs an experiment;
- ve_clones torn down (VEs stopped, tmpfs still mounted): log end times, log tails of
  failed VEs and disk use read from the tmpfs, the only moment both are final and present;
- session finish, after every fixture's teardown: results built and written, compared,
  the index rebuilt; a regression sets the exit status (nothing raises from here).
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..engine.config import ConfigError
from ..engine.experiment import Experiment
from ..engine.workload import log_tail
from ..interrupts import interruption
from ..session import WORKER_RESULTS_KEY, RunState, config_from_pytest, run_state_key
from ..xdist_support import host_identity
from . import archive, metadata
from .comparable import RunKey, host_fingerprint, shape_of
from .compare import (
    CompareError,
    FailRule,
    compare_builds,
    compare_runs,
    load_ref,
    min_effects,
    parse_fail_rules,
    regressions,
    table_lines,
    unchecked_rules,
)
from .outcome import Finished
from .results import Results, RoundTimes, StartTimes, VECapture, build_results, host_entry, write_results
from .sampler import CgroupProbe, Sampler

LOG_TAIL_LINES = 10


@dataclass
class ReportState:
    report_dir: str | None = None
    run_dir: str | None = None
    run_id: str = ""
    compare_path: str | None = None
    reference: Results | None = None
    reference_warnings: list[str] = field(default_factory=list)
    rules: list[FailRule] = field(default_factory=list)
    html_active: bool = False
    html_path_is_ours: bool = False
    copy_html_from: str | None = None
    started_at: float = field(default_factory=time.time)
    sampler: Sampler | None = None
    captures: dict[int, VECapture] = field(default_factory=dict)  # each round's, by its number
    notes: list[str] = field(default_factory=list)
    finished: Finished | None = None


report_state_key = pytest.StashKey[ReportState]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lxcexp", "container-density experiments with LXC")
    group.addoption(
        "--ve-report-dir",
        dest="ve_report_dir",
        default=None,
        metavar="DIR",
        help="archive the run in DIR/<time>-lxc<version>-<host>/ (results.json, report.html); keep DIR/index.html",
    )
    group.addoption(
        "--ve-compare",
        dest="ve_compare",
        default=None,
        metavar="REF",
        help="compare with an earlier run: a results.json, a run folder, or 'latest' in --ve-report-dir",
    )
    group.addoption(
        "--ve-compare-fail",
        dest="ve_compare_fail",
        action="append",
        default=None,
        metavar="METRIC[:N%]",
        help="fail the session when METRIC's verdict against --ve-compare's run (or the first build) is 'worse'; "
        "N%% is the minimum effect (repeatable): start_latency, start_latency:10%%, completed",
    )
    group.addoption(
        "--ve-compare-force",
        dest="ve_compare_force",
        action="store_true",
        default=None,
        help="compare with --ve-compare's run even when it is not comparable (another host, other options)",
    )
    parser.addini("ve_report_dir", "archive directory for runs (see --ve-report-dir)", default="")
    parser.addini("ve_compare", "run to compare with (see --ve-compare)", default="")
    parser.addini(
        "ve_compare_fail", "METRIC[:N%] regression rules, one a line (see --ve-compare-fail)", type="linelist"
    )
    parser.addini("ve_compare_force", "compare with runs that are not comparable (see --ve-compare-force)", type="bool")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _option_or_ini(config: pytest.Config, name: str) -> Any:
    given = config.getoption(name)
    return given if given is not None else config.getini(name)


@pytest.hookimpl(tryfirst=True)  # before pytest-html's configure reads --html
def pytest_configure(config: pytest.Config) -> None:
    state = ReportState()
    try:
        state.rules = parse_fail_rules(list(_option_or_ini(config, "ve_compare_fail") or []))
    except CompareError as error:
        raise pytest.UsageError(f"--ve-compare-fail: {error}") from None
    compare_ref = _option_or_ini(config, "ve_compare") or None
    builds = getattr(config.option, "ve_lxc", None) or []
    if state.rules and not compare_ref and len(builds) < 2:
        raise pytest.UsageError(
            "--ve-compare-fail: needs --ve-compare REF (the run to hold this one against) or two --ve-lxc builds"
        )
    state.report_dir = _option_or_ini(config, "ve_report_dir") or None
    if state.report_dir:
        state.report_dir = os.path.abspath(os.path.expanduser(state.report_dir))
        if os.path.exists(state.report_dir) and not os.path.isdir(state.report_dir):
            raise pytest.UsageError(f"--ve-report-dir: {state.report_dir} exists and is not a directory")
    config.stash[report_state_key] = state
    if _is_worker(config):
        return  # xdist: the controller archives, compares and renders; workers only measure
    if compare_ref:
        force = bool(_option_or_ini(config, "ve_compare_force"))
        try:
            current = current_key(config)
            state.compare_path, state.reference, state.reference_warnings = load_ref(
                compare_ref, state.report_dir, current, force=force
            )
        except CompareError as error:
            raise pytest.UsageError(f"--ve-compare: {error}") from None
    state.html_active = config.pluginmanager.hasplugin("html")
    lxc_version = metadata.lxc_info().get("version")
    state.run_id = archive.run_name(
        datetime.datetime.fromtimestamp(state.started_at, datetime.UTC), lxc_version, metadata.host_info()["hostname"]
    )
    if state.report_dir:
        try:
            state.run_dir = archive.new_run_dir(state.report_dir, state.run_id)
        except OSError as error:
            raise pytest.UsageError(f"--ve-report-dir: {error}") from None
        state.run_id = os.path.basename(state.run_dir)
        if state.html_active:
            if getattr(config.option, "htmlpath", None):
                state.copy_html_from = config.option.htmlpath
            else:
                config.option.htmlpath = os.path.join(state.run_dir, archive.REPORT_FILE)
                state.html_path_is_ours = True
            # An archived report must stand alone: styles and charts inside the one file.
            config.option.self_contained_html = True
    if state.html_active:
        from .html import HtmlSummary

        config.pluginmanager.register(HtmlSummary(finish), "lxcexp-report-html")


def xdist_workers(config: pytest.Config) -> int:
    """How many xdist workers this session will have (1 without xdist), as results.json counts them."""
    processes = getattr(config.option, "numprocesses", None)
    hosts = getattr(config.option, "tx", None) or []
    if isinstance(processes, int) and processes > 0:
        return processes
    return len(hosts) or 1


def current_key(config: pytest.Config) -> RunKey:
    """This run as a reference must match it: the host now, and the options given."""
    try:
        experiment = config_from_pytest(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    return RunKey(host_fingerprint(experiment.ve_controllers), shape_of(experiment.to_dict(), xdist_workers(config)))


def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(report_state_key, None)
    if state is not None:
        state.started_at = time.time()


def _run_state(config: pytest.Config) -> RunState | None:
    return config.stash.get(run_state_key, None)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Sample only sessions that run an experiment (the main plugin decided that during collection)."""
    state = session.config.stash.get(report_state_key, None)
    run = _run_state(session.config)
    if state is None or run is None or run.experiment is None or state.sampler is not None:
        return
    state.sampler = Sampler(CgroupProbe(run.config.tag)).start()


def _tree_bytes(path: str) -> int:
    """Allocated bytes under path, like du: blocks, not apparent sizes."""
    total = 0
    for directory, _, files in os.walk(path):
        for name in [".", *files]:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total


def capture_ves(experiment: Experiment, run: RunState) -> VECapture:
    """Read each VE's log end and (for failed VEs) log tail, and disk use, from the tmpfs (the
    round being run's: its VEs' logs go with its takedown)."""
    layout = experiment.layout
    capture = VECapture()
    number = experiment.round
    indexes = sorted(index for round_, index in run.records if round_ == number) or list(experiment.config.ves)
    disk = 0
    for index in indexes:
        key = (number, index)
        path = layout.ve_workload_log(index)
        log = experiment.workload_log(index)
        capture.log_began[key] = log.began
        capture.log_ended[key] = log.ended
        record = run.records.get(key)
        if record is not None and not record.completed:
            capture.log_tails[key] = log_tail(path, LOG_TAIL_LINES)
        disk += _tree_bytes(layout.ve_dir(index))
    if indexes and os.path.isdir(layout.root):
        capture.disk_per_ve = disk / len(indexes)
        capture.disk_base = _tree_bytes(os.path.dirname(layout.base_rootfs))
    return capture


def pytest_fixture_post_finalizer(fixturedef: pytest.FixtureDef, request: pytest.FixtureRequest) -> None:
    # After ve_clones' teardown the VEs are stopped and their records final, and the
    # tmpfs with their logs is still mounted (ve_root unmounts it next).
    if fixturedef.argname != "ve_clones":
        return
    state = request.config.stash.get(report_state_key, None)
    run = _run_state(request.config)
    if state is None or run is None or run.experiment is None or run.experiment.round in state.captures:
        return
    try:
        state.captures[run.experiment.round] = capture_ves(run.experiment, run)
    except OSError as error:
        state.captures[run.experiment.round] = VECapture()  # the results then lack log times and tails, and say why
        state.notes.append(f"could not read the VEs' logs: {error}")


@pytest.hookimpl(optionalhook=True)
def outcomes(config: pytest.Config) -> dict[str, int]:
    """Test outcomes as pytest counts them (on the xdist controller: all workers' tests)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(reporter, "stats", {}) if reporter is not None else {}
    known = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
    return {name: len(stats[name]) for name in known if stats.get(name)}


def own_results(config: pytest.Config, state: ReportState, session: pytest.Session) -> Results | None:
    run = _run_state(config)
    if run is None or run.experiment is None:
        return None
    experiment = run.experiment
    samples = state.sampler.stop() if state.sampler else []
    run.take_from(experiment)  # the last round's times, also if it was cut short
    starts = {
        (r.number, index): StartTimes(result.started_at, result.latency, result.ok)
        for r in run.rounds
        for index, result in r.starts.items()
    }
    if not run.rounds:  # no round began (nothing set up): what the experiment has
        starts = {(0, i): StartTimes(r.started_at, r.latency, r.ok) for i, r in experiment.starts.items()}
    capture = None
    for number in sorted(state.captures):
        capture = capture or VECapture()
        capture.add(state.captures[number])
    ended_at = time.time()
    meta = metadata.collect(run.config.to_dict(), state.started_at, ended_at, pytest.__version__)
    try:
        meta["builds"] = experiment.builds_metadata()
    except ConfigError as error:  # a build gone since the preflight: said, never fatal here
        state.notes.append(f"could not describe the LXC builds: {error}")
        meta["builds"] = []
    meta["fingerprint"] = host_fingerprint(run.config.ve_controllers)
    return build_results(
        run_id=state.run_id,
        metadata=meta,
        phases=dict(experiment.timings),
        summary=run.summary,
        records=run.records.values(),
        starts=starts,
        capture=capture,
        samples=samples,
        session={
            "exitstatus": int(session.exitstatus),
            "outcomes": outcomes(config),
            "sampler_errors": state.sampler.errors if state.sampler else [],
            "notes": list(state.notes),
            # The first SIGINT/SIGTERM (signal, phase, time) when the run was cut short: the results are partial.
            "interrupted": interrupted.to_dict() if (interrupted := interruption(config)) else None,
        },
        waited_until=experiment.waited_until,
        # Every round's (the last one's was just taken from the experiment).
        waits=[wait for r in run.rounds for wait in r.waits] or [wait.to_dict() for wait in experiment.waits],
        ramp=experiment.ramp_result.to_dict() if experiment.ramp_result is not None else None,
        rounds=[
            RoundTimes(r.number, r.timings, r.began_at, r.waited_until, r.first_build, r.left_behind, r.waits)
            for r in run.rounds
        ],
    )


def finish(session: pytest.Session) -> Finished | None:
    """Build, write, compare and index this run, once; called by whichever comes first of
    pytest-html's summary hook and this plugin's own sessionfinish (both run after teardown).
    Never raises: a failure is reported and turns the exit status into a failure.
    """
    config = session.config
    state = config.stash.get(report_state_key, None)
    if state is None:
        return None
    if state.finished is not None:
        return state.finished
    finished = state.finished = Finished(run_dir=state.run_dir, rules=state.rules, notes=list(state.notes))
    try:
        results = own_results(config, state, session)
        run = _run_state(config)
        if results is not None and run is not None:
            results["hosts"] = [host_entry(host_identity(config, run.config), results)]
        if _is_worker(config):
            if results is not None:
                config.workeroutput[WORKER_RESULTS_KEY] = results  # type: ignore[attr-defined]
            return finished
        merged = run.merged_results() if run is not None else None
        if merged is not None:
            results = merged  # the one merge, which the terminal summary reads too
            results["run_id"] = state.run_id  # workers do not name the run; the controller does
            results["session"]["outcomes"] = outcomes(config)
            results["session"]["exitstatus"] = int(session.exitstatus)
        if results is None:
            if state.report_dir or state.reference is not None:
                gone = f" ({state.run_dir} is removed again)" if state.run_dir else ""
                finished.notes.append(f"no experiment ran in this session: nothing archived or compared{gone}")
            return finished
        finished.results = results
        effects = min_effects(state.rules)
        comparisons = compare_builds(results, effects)
        if state.reference is not None:
            finished.compare_path = state.compare_path
            finished.reference = state.reference
            comparisons += compare_runs(state.reference, results, effects, state.reference_warnings)
        finished.comparisons = comparisons
        if comparisons:
            results["comparisons"] = [comparison.to_dict() for comparison in comparisons]
            if finished.compare_path:
                results["compared_with"] = finished.compare_path
        finished.regressions = regressions(comparisons, state.rules)
        finished.notes += unchecked_rules(comparisons, state.rules)
        if finished.regressions and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if state.run_dir:
            finished.results_path = os.path.join(state.run_dir, archive.RESULTS_FILE)
            write_results(finished.results_path, results)
        if state.report_dir:
            with_report = {state.run_id} if state.html_active else set()
            finished.index_path, _, _ = archive.write_index(state.report_dir, with_report=with_report)
    except Exception as error:  # noqa: BLE001 - never raise from session finish: takedown must still run
        finished.errors.append(f"{type(error).__name__}: {error}")
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
    return finished


@pytest.hookimpl(trylast=True)  # after the runner's sessionfinish has torn the fixtures down
def pytest_sessionfinish(session: pytest.Session) -> None:
    finish(session)


@pytest.hookimpl(trylast=True)  # below the main plugin's "lxcexp results"
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    state = config.stash.get(report_state_key, None)
    finished = state.finished if state else None
    if finished is None or (finished.results is None and not finished.errors and not finished.notes):
        return
    write = terminalreporter.write_line
    if finished.results_path or finished.index_path or finished.comparisons or finished.errors or finished.notes:
        terminalreporter.write_sep("=", "lxcexp report")
    if finished.results_path:
        write(f"results: {finished.results_path}")
    if finished.index_path:
        write(f"index  : {finished.index_path}")
    for comparison in finished.comparisons:
        against = f"compared with {finished.compare_path}" if comparison.kind == "runs" else "builds of this run"
        write(f"{against}:")
        for line in table_lines(comparison):
            write(line, yellow=line.startswith("WARNING"), red=line.endswith(" worse"))
    for regression in finished.regressions:
        write(f"REGRESSION: {regression}", red=True, bold=True)
    if finished.comparisons and finished.rules and not finished.regressions:
        write(f"no regression: no 'worse' verdict for {', '.join(str(rule) for rule in finished.rules)}", green=True)
    for note in finished.notes:
        write(f"note: {note}", yellow=True)
    for error in finished.errors:
        write(f"lxcexp report failed: {error}", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(report_state_key, None)
    if state is None:
        return
    if state.sampler is not None:
        state.sampler.stop()  # the session ended early (an interrupt before sessionfinish)
    if not state.run_dir or not os.path.isdir(state.run_dir):
        return
    results_path = os.path.join(state.run_dir, archive.RESULTS_FILE)
    if not os.path.exists(results_path):
        # No experiment ran: nothing to archive. Remove only what we put there.
        if state.html_path_is_ours:
            report = os.path.join(state.run_dir, archive.REPORT_FILE)
            if os.path.isfile(report):
                os.unlink(report)
        archive.remove_if_empty(state.run_dir)
        return
    if state.copy_html_from and os.path.isfile(state.copy_html_from):
        # --html went elsewhere; the archive keeps its own copy (self-contained, see configure).
        shutil.copyfile(state.copy_html_from, os.path.join(state.run_dir, archive.REPORT_FILE))
