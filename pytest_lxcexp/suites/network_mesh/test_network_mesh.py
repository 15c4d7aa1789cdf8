"""Neighbours ping each other across the bridge: veK pings ve(K+1), the last VE pings ve1.

Run:  pytest --ve-suite network_mesh --ve-count=200
Every VE waits (unlogged) until its neighbour answers, then counts --ve-pings pings.
All ranges start before any is waited on, so every neighbour is up.
"""

from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_mesh(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
    # Each VE's answers came from its own neighbour, never from elsewhere.
    wrong = [r for r in records if r.fields.get("answered_by") != r.target]
    assert not wrong, "\n".join(f"{r.name}: pinged {r.target}, answered by {r.fields['answered_by']}" for r in wrong)
