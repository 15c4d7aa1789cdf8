"""Churn: repeated start/stop cycles over the same VEs, like LXC's own concurrency test.

Run:  pytest --ve-suite churn --ve-count=100 --churn-cycles=5
Each cycle starts the range, waits for every VE's workload, and stops the range again.
Every third cycle first destroys the VEs and creates them anew from the base (LXC's
destroy and create modes); the other cycles restart the same clones, whose log gains a
run each time.
"""

from pytest_lxcexp.engine.workload import read_log
from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_churn(ve_range, ve_experiment, churn_cycles):
    runs_since_create = 0
    for cycle in range(1, churn_cycles + 1):
        if cycle % 3 == 0:
            ve_range.destroy()
            ve_range.create()
            runs_since_create = 0
        results = ve_range.start()
        assert all(result.ok for result in results), f"cycle {cycle}: " + describe_start_failures(results)
        records = ve_range.wait()
        assert all(record.completed for record in records), f"cycle {cycle}: " + describe_failures(records)
        runs_since_create += 1
        stopped = ve_range.stop()
        assert stopped == {f"ve{index}" for index in ve_range.indexes}, f"cycle {cycle}: not all were running"
        states = {record.name: record.state for record in ve_range.records()}
        assert set(states.values()) == {"STOPPED"}, f"cycle {cycle}: {states}"
        logs = [read_log(ve_experiment.layout.ve_workload_log(index)) for index in ve_range.indexes]
        assert {log.runs for log in logs} == {runs_since_create}, f"cycle {cycle}: runs logged per VE"
