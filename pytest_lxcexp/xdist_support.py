"""pytest-xdist: ranges spread over the workers of one host, one set-up and one takedown.

- Scheduling: any (`-n N` gives dist=load). A range's start and its wait may run on
  different workers: Experiment.start is once-only per range across processes (a lock
  and the shared start log in the root), and a wait on a range nobody started starts
  it. (`xdist_group`/loadgroup would pin them together, but pytest-xdist 3.8 cannot
  rename node ids on pytest 9.2, so it is not relied on.)
- Host set-up and takedown: see engine/shared.py (first worker in, last worker out).
- Results: every worker sends its records and timings through `config.workeroutput`;
  the controller merges them (a VE's record from the worker that started it wins) and
  prints one summary for all workers' VEs.
- Several hosts (`-d --tx ssh=root@a//... --tx ssh=root@b//...`): each host runs one
  consecutive block of the ranges (engine/hosts.py), with its own root and network; the
  controller hands each worker its host's VEs and schedules each range's tests on that
  host (host_scheduling.py). A host is named by its spec's `env:LXCEXP_HOST=NAME`, else
  its ssh or socket address; two `popen` specs with different names simulate two hosts
  on one machine (each then needs its own LXCEXP_VE_ROOT, LXCEXP_VE_BRIDGE, LXCEXP_VE_SUBNET).

Registered only when pytest-xdist is present.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any

import pytest

from .engine.config import ExperimentConfig, ve_ranges
from .engine.hosts import HostPlan, HostPlanError
from .report.results import records_of, summary_of
from .session import WORKER_RESULTS_KEY, HostFigures, RunState, config_from_pytest, run_state_key

OUTPUT_KEY = "lxcexp_run"
HOST_ENV = "LXCEXP_HOST"
LOCAL_HOST = "local"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def host_key(spec: Any) -> str:
    """Which host an xdist --tx spec (text or XSpec) runs on: its LXCEXP_HOST, else its ssh or socket address."""
    import execnet  # pytest-xdist's own dependency: only there when xdist is

    xspec = execnet.XSpec(spec) if isinstance(spec, str) else spec
    return xspec.env.get(HOST_ENV) or xspec.ssh or xspec.socket or LOCAL_HOST


def host_identity(config: pytest.Config, ran: ExperimentConfig) -> dict[str, Any]:
    """Which host this process ran on, and that host's root, network and VEs."""
    workerinput = getattr(config, "workerinput", {})
    return {
        "key": workerinput.get("lxcexp_host", LOCAL_HOST),
        # LXCEXP_HOST names a simulated host; a real one goes by its hostname.
        "name": os.environ.get(HOST_ENV) or socket.gethostname(),
        "root": ran.root,
        "bridge": ran.bridge if ran.network == "bridge" else "",
        "subnet": str(ran.subnet) if ran.network == "bridge" else "",
        "first": ran.ve_first,
        "last": ran.ve_last,
    }


def check_host_settings(config: pytest.Config, specs: list[str]) -> None:
    """Every host's own settings (its spec's LXCEXP_* env over the command line) valid, and
    hosts simulated on this machine (popen specs) sharing no root, bridge or subnet."""
    import execnet

    from .engine.config import ConfigError

    local: dict[str, ExperimentConfig] = {}
    for spec in specs:
        xspec = execnet.XSpec(spec)
        host = host_key(xspec)
        try:
            ran = config_from_pytest(config, environ=xspec.env)
        except ConfigError as error:
            raise pytest.UsageError(f"--tx {spec}: {error}") from None
        if xspec.popen:
            local.setdefault(host, ran)
    hosts = list(local.items())
    for at, (host, ran) in enumerate(hosts):
        for other, seen in hosts[:at]:
            clash = _clash(seen, ran)
            if clash:
                raise pytest.UsageError(
                    f"--tx: hosts {other} and {host} both run on this machine with {clash}; give each its own "
                    "LXCEXP_VE_ROOT, LXCEXP_VE_BRIDGE and LXCEXP_VE_SUBNET in its spec"
                )


def _clash(one: ExperimentConfig, two: ExperimentConfig) -> str | None:
    """What two experiments on one machine would share, in words; None if nothing."""
    roots = sorted((one.root.rstrip("/") + "/", two.root.rstrip("/") + "/"), key=len)
    if roots[1].startswith(roots[0]):
        return f"root {one.root} and {two.root} (one inside the other)" if one.root != two.root else f"root {one.root}"
    if one.network == two.network == "bridge":
        if one.bridge == two.bridge:
            return f"bridge {one.bridge}"
        if one.subnet.overlaps(two.subnet):
            return f"overlapping subnets {one.subnet} and {two.subnet}"
    return None


class XdistSupport:
    """The plugin object; one per process (controller or worker)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []
        self.plan: HostPlan | None = None  # controller of a run over several hosts

    def configure_hosts(self, config: pytest.Config, experiment: ExperimentConfig) -> ExperimentConfig:
        """Worker: narrow the config to its host's VEs. Controller: plan the hosts, refusing what cannot work."""
        if _is_worker(config):
            ves = config.workerinput.get("lxcexp_ves")  # type: ignore[attr-defined]
            return dataclasses.replace(experiment, ve_first=ves[0], ve_last=ves[1]) if ves else experiment
        if config.getoption("dist", "no") == "no" or not config.getoption("tx", None):
            return experiment
        from xdist.workermanage import parse_tx_spec_config

        keys = [host_key(spec) for spec in parse_tx_spec_config(config)]
        hosts = len(set(keys))
        if hosts < 2:
            return experiment  # one host: its workers share one experiment (-n N)
        if config.getoption("dist") != "load":
            raise pytest.UsageError(
                f"--dist: a run over {hosts} hosts needs --dist load (-d), which keeps each range on its host"
            )
        try:
            self.plan = HostPlan(keys, ve_ranges(experiment.count, experiment.batch))
        except HostPlanError as error:
            raise pytest.UsageError(f"--tx: {error}") from None
        check_host_settings(config, parse_tx_spec_config(config))
        return experiment

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        if self.plan is not None:
            key = host_key(node.gateway.spec)
            node.workerinput["lxcexp_host"] = key
            node.workerinput["lxcexp_ves"] = list(self.plan.ves_of(key))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        if self.plan is None:
            return None
        from .host_scheduling import HostScheduling

        return HostScheduling(config, log, self.plan.owner_of_test, lambda node: host_key(node.gateway.spec))

    @pytest.hookimpl(trylast=True)  # after the session fixtures' teardown
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        config = session.config
        if not _is_worker(config):
            return

        state = config.stash.get(run_state_key, None)
        if state is None or state.experiment is None:
            return
        experiment = state.experiment
        # The worker that took its host down alone can tell what was left behind there.
        taken_down = experiment.taken_down
        # What only the worker knows; its VEs, timings and disk are in its results file
        # (WORKER_RESULTS_KEY), which the controller merges once for summary and report.
        config.workeroutput[OUTPUT_KEY] = {  # type: ignore[attr-defined]
            "host": host_identity(config, experiment.config),
            "leftovers": experiment.leftovers() if taken_down else None,
            "warnings": list(experiment.warnings),
            "tuned": {path: list(pair) for path, pair in experiment.tuned.items()},
            "kept": bool(state.kept),
            "last": bool(experiment.last_member),
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        output = getattr(node, "workeroutput", {})
        if output.get(OUTPUT_KEY):
            self.parts.append(output[OUTPUT_KEY])
        state = node.config.stash.get(run_state_key, None)
        if state is not None and output.get(WORKER_RESULTS_KEY):
            state.worker_results.append(output[WORKER_RESULTS_KEY])

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, config: pytest.Config) -> None:
        """Controller: turn the workers' parts into this process's RunState, for the summary."""
        if _is_worker(config) or not self.parts:
            return

        state = config.stash.get(run_state_key, None)
        if state is None or state.experiment is not None:
            return
        merge_into(state, self.parts)


def merge_into(state: RunState, parts: list[dict[str, Any]]) -> None:
    """The controller's RunState from the workers: VEs, timings and per-host figures from the
    one merge of their results files; warnings, tuning, --ve-keep and leftovers from their parts."""
    merged = state.merged_results()
    if merged is not None:
        records = records_of(merged)
        state.records = {(record.round, record.index): record for record in records}
        state.summary = summary_of(merged, records)
        state.timings = {name: seconds for name, seconds in merged["timings"]["phases"].items() if seconds is not None}
        state.started = {
            (ve.get("round") or 0, ve["index"]) for ve in merged["ves"] if ve.get("started_at") is not None
        }
    for part in parts:
        state.warnings += [warning for warning in part["warnings"] if warning not in state.warnings]
        state.tuned.update({path: (old, new) for path, (old, new) in part["tuned"].items()})
        state.kept = state.kept or part["kept"]
    state.hosts = host_figures(parts, merged["hosts"] if merged else [])
    state.leftovers = leftovers_of(state.hosts)


def host_figures(parts: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[HostFigures]:
    """Each host's line: its figures as results.host_entry computed them, and what its own
    takedown left behind (None: no worker of it took it down)."""
    hosts: dict[str, HostFigures] = {}
    for part in sorted(parts, key=lambda p: p["host"]["first"]):
        host = hosts.setdefault(part["host"]["key"], HostFigures(**part["host"]))
        if part["leftovers"] is not None:
            host.leftovers = [*(host.leftovers or []), *part["leftovers"]]
    for entry in entries:
        host = hosts.get(entry["key"])
        if host is not None:
            host.ves, host.started, host.completed = entry["ves"], entry["started"], entry["completed"]
            host.start_all, host.disk_used = entry.get("start_all_s"), entry.get("disk_used") or 0
    return list(hosts.values())


def leftovers_of(hosts: list[HostFigures]) -> list[str]:
    """What the hosts' takedowns left behind, and every host that no worker took down
    (one whose workers crashed, or never finished: its experiment may still be up)."""
    found = []
    for host in hosts:
        if host.leftovers is None:
            found.append(f"host {host.name} was not taken down (run `lxcexp takedown --root {host.root}` on it)")
        else:
            found += host.leftovers
    return found
