"""The original experiment: every VE brings lo up, pings localhost, logs it.

Run:  pytest --ve-suite ping --ve-count=1000
test_start runs for every range before test_completed waits on any, so all VEs
run concurrently, as in the original shell scripts.
"""

from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_completed(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
