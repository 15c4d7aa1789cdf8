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
from dataclasses import dataclass, fields
from typing import Any

import pytest

from .engine.config import ExperimentConfig, ve_ranges
from .engine.experiment import Experiment
from .engine.fleet import StartResult
from .engine.hosts import HostPlan, HostPlanError
from .engine.stats import VERecord, summarize

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
    from .plugin import config_from_pytest

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
        from .plugin import run_state_key

        state = config.stash.get(run_state_key, None)
        if state is None or state.experiment is None:
            return
        experiment = state.experiment
        # The worker that took its host down alone can tell what was left behind there.
        taken_down = experiment.taken_down
        config.workeroutput[OUTPUT_KEY] = {  # type: ignore[attr-defined]
            "host": host_identity(config, experiment.config),
            "leftovers": experiment.leftovers() if taken_down else None,
            "records": [record.to_dict() for record in state.records.values()],
            "starts": [vars(result) for result in experiment.starts.values()],
            "timings": dict(experiment.timings),
            "disk_used": state.summary.disk_used if state.summary else 0,
            "warnings": list(experiment.warnings),
            "tuned": {path: list(pair) for path, pair in experiment.tuned.items()},
            "kept": bool(state.kept),
            "last": bool(experiment.last_member),
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        data = getattr(node, "workeroutput", {}).get(OUTPUT_KEY)
        if data:
            self.parts.append(data)

    @pytest.hookimpl(tryfirst=True)
    def pytest_terminal_summary(self, config: pytest.Config) -> None:
        """Controller: turn the workers' parts into this process's RunState, for the summary."""
        if _is_worker(config) or not self.parts:
            return
        from .plugin import run_state_key

        state = config.stash.get(run_state_key, None)
        if state is None or state.experiment is not None:
            return
        merge_into(state, self.parts)


def _record(data: dict[str, Any]) -> VERecord:
    known = {f.name for f in fields(VERecord)}
    return VERecord(**{key: value for key, value in data.items() if key in known})


def _progress(record: VERecord) -> tuple[bool, bool, int, bool, bool]:
    return (record.completed, record.finished, record.pings, record.started, record.start_latency is not None)


def merge_into(state: Any, parts: list[dict[str, Any]]) -> None:
    """Merge workers' parts into one RunState (an Experiment object that touches nothing)."""
    experiment = Experiment(state.config)
    records: dict[int, VERecord] = {}
    for part in parts:
        for data in part["records"]:
            record = _record(data)
            known = records.get(record.index)
            # Records are snapshots taken as each worker left; a VE only progresses, so the
            # furthest snapshot is the latest (a worker that left early saw others' VEs mid-run).
            if known is None or _progress(record) > _progress(known):
                records[record.index] = record
        for data in part["starts"]:
            experiment.starts[data["index"]] = StartResult(**data)
        for phase, seconds in part["timings"].items():
            experiment.timings[phase] = max(experiment.timings.get(phase, 0.0), seconds)
        experiment.warnings += [w for w in part["warnings"] if w not in experiment.warnings]
        experiment.tuned.update({path: tuple(pair) for path, pair in part["tuned"].items()})
        state.kept = state.kept or part["kept"]
    ordered = [records[index] for index in sorted(records)]
    state.records = {record.index: record for record in ordered}
    state.hosts = host_figures(parts, state.records, experiment.starts)
    state.leftovers = leftovers_of(state.hosts)
    state.summary = summarize(
        ordered,
        # Workers of one host share its tmpfs; the hosts' tmpfs add up.
        disk_used=sum(host.disk_used for host in state.hosts),
        root=state.config.root if len(state.hosts) < 2 else ", ".join(host.root for host in state.hosts),
        expected_pings=state.config.pings,
        workload=state.config.workload,
    )
    state.experiment = experiment


def host_figures(
    parts: list[dict[str, Any]], records: dict[int, VERecord], starts: dict[int, StartResult]
) -> list[HostFigures]:
    """Each host's VEs, starts, completions and disk use, from its workers' parts (in host order)."""
    hosts: dict[str, HostFigures] = {}
    for part in sorted(parts, key=lambda p: p["host"]["first"]):
        host = hosts.setdefault(part["host"]["key"], HostFigures(**part["host"]))
        host.disk_used = max(host.disk_used, part["disk_used"])
        if part["timings"].get("start all") is not None:
            host.start_all = max(host.start_all or 0.0, part["timings"]["start all"])
        if part["leftovers"] is not None:
            host.leftovers = [*(host.leftovers or []), *part["leftovers"]]
    for host in hosts.values():
        own = [record for index, record in records.items() if host.first <= index <= host.last]
        host.ves = len(own)
        host.completed = sum(record.completed for record in own)
        host.started = sum(result.ok for index, result in starts.items() if host.first <= index <= host.last)
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
