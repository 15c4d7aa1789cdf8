"""network_mesh: show whom each VE pinged and who answered, in failures and reports (a hook example)."""

from __future__ import annotations

from pytest_lxcexp.engine.workload import read_log


def pytest_lxcexp_ve_fields(record, experiment):  # noqa: ANN001, ANN201 - a pytest hook
    log = read_log(experiment.layout.ve_workload_log(record.index))
    return {"neighbour": record.target, "answered_by": ",".join(log.repliers) or "nobody"}
