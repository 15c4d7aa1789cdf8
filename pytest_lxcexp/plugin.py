"""The pytest plugin: options, configuration, test generation and the results summary."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from .engine.config import ConfigError, ExperimentConfig, build_config, ve_ranges
from .engine.experiment import Experiment
from .engine.host import require_root
from .engine.stats import Summary, VERecord
from .engine.storage import RunLock
from .fixtures import (  # noqa: F401 - fixtures are found through this plugin module
    ve_base,
    ve_clones,
    ve_config,
    ve_experiment,
    ve_network,
    ve_range,
    ve_root,
)
from .interrupts import InterruptPlugin, guard_of, interruption
from .summary import summary_lines
from .xdist_support import HostFigures, XdistSupport

FIXTURES_THAT_NEED_THE_HOST = {"ve_root", "ve_base", "ve_network", "ve_clones", "ve_experiment", "ve_range"}


@dataclass
class RunState:
    """What this session's experiment produced; the terminal summary reads it."""

    config: ExperimentConfig
    experiment: Experiment | None = None
    records: dict[int, VERecord] = field(default_factory=dict)
    summary: Summary | None = None
    kept: bool = False
    # xdist controller: each host's figures, and what the hosts' own takedowns left behind.
    hosts: list[HostFigures] = field(default_factory=list)
    leftovers: list[str] | None = None


run_state_key = pytest.StashKey[RunState]()

# (option, ini name, default, help); all strings are parsed by engine.config.
OPTIONS: list[tuple[str, str, str, str]] = [
    ("--ve-count", "ve_count", "100", "number of VEs, ve1..veN (default 100)"),
    ("--ve-batch", "ve_batch", "100", "VEs per test range (default 100)"),
    ("--ve-root", "ve_root", "/exp", "experiment root; a tmpfs is mounted there (default /exp)"),
    ("--ve-tmpfs-size", "ve_tmpfs_size", "2G", "size of the tmpfs at the root (default 2G)"),
    (
        "--ve-base",
        "ve_base",
        "busybox",
        "base: busybox (default, offline), debian (debootstrap, cached), lxc:NAME[@LXCPATH] (an existing "
        "container's rootfs), or a path to a rootfs directory or tarball",
    ),
    ("--ve-base-release", "ve_base_release", "", "debian base: release codename (default: the host's)"),
    ("--ve-mirror", "ve_mirror", "", "debian base: mirror URL (default: the one the host's apt sources use)"),
    ("--ve-apt-proxy", "ve_apt_proxy", "", "apt proxy URL written into the base's apt configuration"),
    ("--ve-ssh-key", "ve_ssh_key", "", "public key file put into the base's /root/.ssh/authorized_keys"),
    (
        "--ve-init",
        "ve_init",
        "workload",
        "workload (the workload is the VE's init, default) or system (the base's own init runs it as a service)",
    ),
    (
        "--ve-workload",
        "ve_workload",
        "ping-localhost",
        "ping-localhost (default), ping-gateway, ping-neighbour, idle, or cmd:COMMAND (a shell command)",
    ),
    ("--ve-network", "ve_network", "bridge", "bridge (a veth per VE on --ve-bridge) or none (loopback only)"),
    ("--ve-bridge", "ve_bridge", "vebr", "bridge name, at most 15 characters, beginning with 've' (default vebr)"),
    ("--ve-subnet", "ve_subnet", "10.213.0.0/16", "IPv4 subnet: bridge takes the first address, veN the N+1st"),
    ("--ve-pings", "ve_pings", "180", "pings of 127.0.0.1 each VE's workload sends (default 180)"),
    ("--ve-ping-interval", "ve_ping_interval", "1", "seconds between pings (default 1)"),
    ("--ve-start-delay", "ve_start_delay", "0", "seconds to sleep between two starts (default 0)"),
    ("--ve-timeout", "ve_timeout", "auto", "seconds a range may take to complete (default: pings x interval + 60)"),
    ("--ve-parallel", "ve_parallel", "auto", "starter processes for starts and stops (default: one per CPU)"),
    (
        "--ve-cgroups",
        "ve_cgroups",
        "auto",
        "controllers each VE gets cgroups of its own in: auto (cpu,pids; all with --ve-init=system), all, "
        "or a list such as cpu,pids,memory (a cgroup v2 host takes auto or all only)",
    ),
    (
        "--ve-apparmor",
        "ve_apparmor",
        "auto",
        "AppArmor profile VEs start under: auto (lxc-container-default-cgns where AppArmor is on), "
        "a loaded profile's name, unconfined, or generated (LXC's per-VE profile, compiled at every start)",
    ),
]
FLAGS: list[tuple[str, str, str]] = [
    ("--ve-base-refresh", "ve_base_refresh", "rebuild the cached base image"),
    ("--ve-poweroff", "ve_poweroff", "power each VE off when its workload ends (its exit status is logged first)"),
    ("--ve-keep", "ve_keep", "leave the experiment up after the session (take it down with `lxcexp takedown`)"),
    ("--ve-nice", "ve_nice", "run VEs with a low CPU weight so the host stays responsive"),
    ("--ve-tune-host", "ve_tune_host", "raise host limits that are short for the run; restored at takedown"),
    (
        "--ve-unprivileged",
        "ve_unprivileged",
        "run VEs unprivileged, in user namespaces mapped to root's range in /etc/subuid and /etc/subgid",
    ),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lxcexp", "container-density experiments with LXC")
    for option, ini, default, help_text in OPTIONS:
        group.addoption(option, dest=ini, default=None, help=help_text)
        parser.addini(ini, help_text, default=default)
    for option, ini, help_text in FLAGS:
        group.addoption(option, dest=ini, action="store_true", default=None, help=help_text)
        parser.addini(ini, help_text, type="bool", default=False)


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


def _value(config: pytest.Config, name: str, overrides: Mapping[str, str]) -> str | bool:
    if name in overrides:
        return overrides[name]
    given = config.getoption(name)
    return config.getini(name) if given is None else given


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
    # Every option is build_config's keyword of the same name without "ve_" (a unit test holds this).
    values = {name.removeprefix("ve_"): _value(config, name, overrides) for _, name, _, _ in OPTIONS}
    values |= {name.removeprefix("ve_"): bool(_value(config, name, overrides)) for _, name, _ in FLAGS}
    return build_config(**values)


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lxcexp: a test that runs VEs of the experiment")
    # Ctrl-C and SIGTERM end the session with a full takedown (see interrupts.py).
    if not config.pluginmanager.has_plugin("lxcexp-interrupts"):
        config.pluginmanager.register(InterruptPlugin(), "lxcexp-interrupts")
    if config.pluginmanager.hasplugin("xdist") and not config.pluginmanager.has_plugin("lxcexp-xdist"):
        config.pluginmanager.register(XdistSupport(), "lxcexp-xdist")
    try:
        experiment_config = config_from_pytest(config)
    except ConfigError as error:
        raise pytest.UsageError(str(error)) from None
    xdist_support = config.pluginmanager.get_plugin("lxcexp-xdist")
    if xdist_support is not None:
        # Several hosts: the controller assigns each its VEs; a worker narrows its config to them.
        experiment_config = xdist_support.configure_hosts(config, experiment_config)
    config.stash[run_state_key] = RunState(experiment_config)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ve_range" not in metafunc.fixturenames:
        return
    experiment_config = metafunc.config.stash[run_state_key].config
    ranges = ve_ranges(experiment_config.count, experiment_config.batch)
    metafunc.parametrize("ve_range", ranges, ids=[f"ve{a}-ve{b}" for a, b in ranges], indirect=True)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the host and the root once, before anything is created, if any test needs them."""
    if not any(FIXTURES_THAT_NEED_THE_HOST & set(getattr(item, "fixturenames", ())) for item in items):
        return
    if config.option.collectonly:
        return
    state = config.stash[run_state_key]
    apply_workload_hook(config, state)
    experiment = Experiment(state.config)
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(run_state_key, None)
    if state is None or state.experiment is None:
        return
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
