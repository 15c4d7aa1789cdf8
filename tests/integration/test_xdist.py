"""pytest -n 2 on one host: one set-up, ranges on both workers, one summary, one takedown."""

from __future__ import annotations

import json
import os
import re

from integration_helpers import PING_SUITE, XDIST_RUN, run_pytest

from pytest_lxcexp.engine.storage import lock_path


def test_two_workers_share_one_experiment(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    result = run_pytest(pytester, names, "-n", "2", *XDIST_RUN, f"--ve-report-dir={pytester.path / 'reports'}")
    result.assert_outcomes(passed=8)
    # Both workers started ranges of the one experiment.
    starters = set(re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED test_ping.py::test_start", result.stdout.str()))
    assert starters == {"gw0", "gw1"}
    # The controller's summary adds up both workers' VEs.
    result.stdout.fnmatch_lines(
        [
            "Total VEs        : 40",
            "3-ping VEs       : 40",
            "No log file VEs  : 0",
            "40 VEs have a PID",
            "Takedown: nothing left behind",
        ]
    )
    # The controller's results file covers every worker's VEs.
    (results_file,) = (pytester.path / "reports").glob("*/results.json")
    results = json.loads(results_file.read_text())
    assert len(results["ves"]) == 40 and results["summary"]["completed"] == 40
    assert {ve["index"] for ve in results["ves"] if ve.get("started_at")} == set(range(1, 41))
    base = lock_path(names.root)[: -len(".lock")]
    assert not [path for path in (base + ".lock", base + ".gate", base + ".share.json") if os.path.exists(path)]
    assert leftovers(names) == []
