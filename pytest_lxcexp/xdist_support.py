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

Registered only when pytest-xdist is present.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from .engine.experiment import Experiment
from .engine.fleet import StartResult
from .engine.stats import VERecord, summarize

OUTPUT_KEY = "lxcexp_run"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


class XdistSupport:
    """The plugin object; one per process (controller or worker)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        config = session.config
        if not _is_worker(config):
            return
        from .plugin import run_state_key

        state = config.stash.get(run_state_key, None)
        if state is None or state.experiment is None:
            return
        experiment = state.experiment
        config.workeroutput[OUTPUT_KEY] = {  # type: ignore[attr-defined]
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


def _progress(record: VERecord) -> tuple[bool, bool, int, bool]:
    return (record.completed, record.finished, record.pings, record.start_latency is not None)


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
    state.summary = summarize(
        ordered,
        disk_used=max(part["disk_used"] for part in parts),
        root=state.config.root,
        expected_pings=state.config.pings,
        workload=state.config.workload,
    )
    state.experiment = experiment
