"""The pytest plugin: options, configuration, test generation and the results summary."""

from __future__ import annotations

import dataclasses

import pytest

from .engine.config import ConfigError, ve_ranges
from .engine.experiment import Experiment
from .engine.host import ramp_bound, require_root
from .engine.storage import RunLock
from .fixtures import (  # noqa: F401 - fixtures are found through this plugin module
    HOST_FIXTURES,
    ve_base,
    ve_clones,
    ve_config,
    ve_experiment,
    ve_network,
    ve_ramp,
    ve_range,
    ve_root,
    ve_round,
)
from .interrupts import InterruptPlugin, guard_of, interruption
from .options import FLAGS, LISTS, OPTIONS
from .session import RunState, config_from_pytest, run_state_key, suite_defaults_key
from .suite_choice import SuiteChoicePlugin, add_chosen_suite, choose, suite_choice_key, suite_defaults
from .suites import suite_names
from .summary import summary_lines
from .xdist_support import XdistSupport


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lxcexp", "container-density experiments with LXC")
    # Ini values default to None, so that a built-in suite's defaults can stand between the
    # user's ini file and the options' own defaults (see session._value).
    for option, ini, _, help_text in OPTIONS:
        group.addoption(option, dest=ini, default=None, help=help_text)
        parser.addini(ini, help_text, default=None)
    for option, ini, help_text in FLAGS:
        group.addoption(option, dest=ini, action="store_true", default=None, help=help_text)
        parser.addini(ini, help_text, type="bool", default=None)
    for option, ini, help_text in LISTS:
        group.addoption(option, dest=ini, action="append", default=None, help=help_text)
        parser.addini(ini, help_text, type="linelist", default=None)
    group.addoption(
        "--ve-suite",
        dest="ve_suite",
        default=None,
        metavar="NAME",
        help=f"run the built-in suite NAME ({', '.join(suite_names())}) instead of test paths; without test "
        "paths and with any --ve-* option, ping runs when no test of the session's own uses the experiment",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    add_chosen_suite(early_config, args)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def apply_workload_hook(config: pytest.Config, state: RunState) -> None:
    """A pytest_lxcexp_workload implementation replaces the init script, before anything is created."""
    script = config.hook.pytest_lxcexp_workload(config=config, experiment=state.config)
    if script is None:
        return
    if not isinstance(script, str) or not script.startswith("#!"):
        raise pytest.UsageError("pytest_lxcexp_workload: return the text of a script that begins with #!, or None")
    try:
        state.config = dataclasses.replace(state.config, workload="hook", workload_script=script)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None


def under_xdist(config: pytest.Config) -> bool:
    """This session is a pytest-xdist controller (-n, -d) or one of its workers."""
    return hasattr(config, "workerinput") or getattr(config.option, "dist", "no") != "no"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lxcexp: a test that runs VEs of the experiment")
    # Ctrl-C and SIGTERM end the session with a full takedown (see interrupts.py).
    if not config.pluginmanager.has_plugin("lxcexp-interrupts"):
        config.pluginmanager.register(InterruptPlugin(), "lxcexp-interrupts")
    if config.pluginmanager.hasplugin("xdist") and not config.pluginmanager.has_plugin("lxcexp-xdist"):
        config.pluginmanager.register(XdistSupport(), "lxcexp-xdist")
    config.stash[suite_choice_key] = choose(config)
    config.stash[suite_defaults_key] = suite_defaults(config)
    if not config.pluginmanager.has_plugin("lxcexp-suites"):
        config.pluginmanager.register(SuiteChoicePlugin(), "lxcexp-suites")
    try:
        experiment_config = config_from_pytest(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    if experiment_config.repeat > 1 and under_xdist(config):
        raise pytest.UsageError(
            "--ve-repeat: rounds run in one process, not under pytest-xdist (-n, -d): "
            "its workers would need a shared takedown and set up between rounds"
        )
    xdist_support = config.pluginmanager.get_plugin("lxcexp-xdist")
    if xdist_support is not None:
        # Several hosts: the controller assigns each its VEs; a worker narrows its config to them.
        experiment_config = xdist_support.configure_hosts(config, experiment_config)
    if experiment_config.ramp and under_xdist(config):
        raise pytest.UsageError("--ve-count=max: a ramp runs in one process, not under pytest-xdist (-n, -d)")
    config.stash[run_state_key] = RunState(experiment_config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    experiment_config = metafunc.config.stash[run_state_key].config
    if "ve_round" in metafunc.fixturenames and experiment_config.repeat > 1:
        # Session scope: pytest groups the items by round and tears the chain down between rounds.
        rounds = list(range(experiment_config.repeat))
        metafunc.parametrize("ve_round", rounds, ids=[f"round{n + 1}" for n in rounds], indirect=True, scope="session")
    if "ve_range" not in metafunc.fixturenames:
        return
    if experiment_config.ramp:
        return  # refused after collection (check_ramp_items), with the reason
    ranges = ve_ranges(experiment_config.count, experiment_config.batch)
    metafunc.parametrize("ve_range", ranges, ids=[f"ve{a}-ve{b}" for a, b in ranges], indirect=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the host and the root once, before anything is created, if any test needs them."""
    if not any(HOST_FIXTURES & set(getattr(item, "fixturenames", ())) for item in items):
        return
    if config.option.collectonly:
        return
    state = config.stash[run_state_key]
    apply_workload_hook(config, state)
    check_ramp_items(config, state, items)
    bound_by = None
    if state.config.ramp:
        try:
            bound, bound_by = ramp_bound(state.config)
            state.config = dataclasses.replace(state.config, count=bound, ve_last=bound)
        except (OSError, ValueError) as error:
            raise pytest.UsageError(f"--ve-count=max: cannot read the host's limits: {error}") from None
    experiment = Experiment(state.config)
    experiment.ramp_bound_by = bound_by
    try:
        require_root()
        # A live run holds the lock: its marker is not stale, and this run must not touch it.
        holder = RunLock(state.config.root).holder()
        if holder is not None:
            raise ConfigError("--ve-root", f"another lxcexp run ({holder}) is using {state.config.root}; wait for it")
        stale = experiment.check()
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    except RuntimeError as error:
        raise pytest.UsageError(f"lxcexp: {error}") from None
    experiment.stale_marker = stale
    state.experiment = experiment
    guard = guard_of(config)
    if guard is not None:
        guard.install()  # from here on, Ctrl-C and SIGTERM end in a full takedown


def check_ramp_items(config: pytest.Config, state: RunState, items: list[pytest.Item]) -> None:
    """A ramp runs in one test that takes ve_ramp, alone in its process; ranges need a count."""
    uses = {
        name: [item for item in items if name in getattr(item, "fixturenames", ())] for name in ("ve_ramp", "ve_range")
    }
    if not state.config.ramp:
        if uses["ve_ramp"]:
            raise pytest.UsageError(f"{uses['ve_ramp'][0].nodeid}: ve_ramp needs --ve-count=max")
        return
    if uses["ve_range"]:
        raise pytest.UsageError(
            f"--ve-count=max: {uses['ve_range'][0].nodeid} runs ranges of a fixed count; a ramp runs in a test "
            "that takes ve_ramp (the built-in suite ramp: pytest --ve-suite ramp)"
        )
    if not uses["ve_ramp"]:
        raise pytest.UsageError(
            "--ve-count=max: no test takes ve_ramp to run the ramp (the built-in suite ramp: pytest --ve-suite ramp)"
        )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(run_state_key, None)
    if state is None or (state.experiment is None and not state.worker_results):
        return
    if state.experiment is not None:
        state.take_from(state.experiment)
    interrupted = interruption(config)
    if state.summary is None and interrupted is None:
        return
    try:
        lines = summary_lines(state, interrupted)
    except Exception as error:  # noqa: BLE001 - never raise from the summary hook
        terminalreporter.write_line(f"lxcexp: could not build the summary: {error}", red=True)
        return
    terminalreporter.write_sep("=", "lxcexp results")
    for line in lines:
        terminalreporter.write_line(line)
