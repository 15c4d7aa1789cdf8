"""Boot storm: start every VE at once and record how long each start took.

Run:  pytest --ve-suite boot_storm --ve-count=1000
The VEs idle (--ve-workload=idle): a VE is up when it is running and has logged its
begin line. Start latencies are recorded per VE and summarised as percentiles (the
terminal summary, results.json with --ve-report-dir); nothing here asserts on time.
"""

from pytest_lxcexp.engine.stats import latency_stats
from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_up(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)


def test_start_latency_recorded(ve_experiment, ve_config):
    latencies = [start.latency for start in ve_experiment.starts.values() if start.ok]
    # This host's VEs (all of them, unless the run spans several hosts).
    assert len(latencies) == len(ve_config.ves), "every VE's start latency is recorded"
    stats = latency_stats(latencies)
    assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
    print("start latency (ms): " + "  ".join(f"{key} {stats[key] * 1000:.1f}" for key in ("p50", "p90", "p99", "max")))
