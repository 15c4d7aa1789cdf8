"""Hooks a suite's conftest.py (or a plugin) implements to shape the experiment.

They are added in `pytest_addhooks`; implement them with the same names and any
subset of the arguments, e.g. in the conftest.py next to the suite:

    def pytest_lxcexp_workload(experiment):
        return "#!/bin/sh\\n...\\n"

    def pytest_lxcexp_ve_fields(record):
        return {"ping_target": record.target}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .engine.config import ExperimentConfig
    from .engine.experiment import Experiment
    from .engine.stats import VERecord


@pytest.hookspec(firstresult=True)
def pytest_lxcexp_workload(config: pytest.Config, experiment: ExperimentConfig) -> str | None:
    """Return the text of a custom init script for every VE, or None to keep --ve-workload.

    Called once, before anything is created (define it in the suite's own conftest.py,
    which pytest loads before the session). The script replaces /sbin/lxcexp-workload
    in the base: it runs as the VE's init (PID 1) with --ve-init=workload, or as a
    service of the distribution's init with --ve-init=system. It may source
    /etc/lxcexp/workload.env (PINGS, INTERVAL, TARGET, POWEROFF, ...).

    The verdict reads its log, /var/log/lxcexp/workload.log, in the usual format: a VE
    has completed when the log holds `lxcexp-begin <epoch> <hostname>` and, later,
    `lxcexp-end <epoch> rc=0`. The script should not end if it is PID 1 (the VE would
    stop); with --ve-poweroff it should power off after logging its end line.

    :param config: the pytest config.
    :param experiment: the validated ExperimentConfig (workload, pings, network, ...).
    """


@pytest.hookspec
def pytest_lxcexp_ve_fields(record: VERecord, experiment: Experiment) -> dict[str, Any] | None:
    """Return extra fields for one VE's record, e.g. values read from its log or its cgroup.

    Called whenever records are read (the tests' `ve_range.wait()`/`records()`, the
    final records for the summary and the reports). The dicts of every implementation
    are merged into `record.fields`; they appear after the reason in failure
    descriptions (`describe_failures`, the terminal summary) and in the per-VE records
    of results.json. Values other than str, int, float, bool and None are stored as
    their str(). An exception is recorded as the field `ve_fields_error`.

    :param record: the VE's VERecord (index, state, pid, pings, exit_status, ...).
    :param experiment: the engine's Experiment (its `.config` and `.layout`, e.g.
        `experiment.layout.ve_upper(record.index)` holds the files the VE wrote).
    """
