"""The report plugin's options seen from outside (pytester subprocesses); no test here runs VEs."""

from __future__ import annotations

import os

import pytest
from report_helpers import make_results

from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.report import comparable
from pytest_lxcexp.report.results import write_results


def this_host_run(count: int = 100) -> dict:
    """A saved run that a session here with default options (and --ve-count=count) can be compared with."""
    config = build_config(count=count)
    return make_results(options=config.to_dict(), fingerprint=comparable.host_fingerprint(config.ve_controllers))


REFERENCES = {
    "OTHER_HOST": lambda: make_results(options=build_config().to_dict()),
    "OLD_FILE": lambda: make_results(options=build_config().to_dict(), fingerprint=None),
    "THIS_HOST_20_VES": lambda: this_host_run(20),
}

PLAIN_MODULE = """
def test_plain():
    assert True
"""


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        (
            {},
            ["--ve-compare-fail=start_p95:10%"],
            "ERROR: --ve-compare-fail: 'start_p95:10%': unknown metric 'start_p95'*",
        ),
        (
            {},
            ["--ve-compare-fail=start_p90:10"],
            "ERROR: --ve-compare-fail: 'start_p90:10' is not METRIC or METRIC:N%*",
        ),
        (
            {},
            ["--ve-compare-fail=completed:-1%"],
            "ERROR: --ve-compare-fail: 'completed:-1%' is not METRIC or METRIC:N%*",
        ),
        ({}, ["--ve-compare-fail=start_p90:10%"], "ERROR: --ve-compare-fail: needs --ve-compare REF*"),
        ({}, ["--ve-compare-fail=start_latency"], "ERROR: --ve-compare-fail: needs --ve-compare REF*"),
        ({}, ["--ve-compare=nowhere.json"], "ERROR: --ve-compare: nowhere.json: no such results file or run folder"),
        ({}, ["--ve-compare=latest"], "ERROR: --ve-compare: 'latest' needs --ve-report-dir*"),
        # A bad rule in the ini file names the option, as on the command line.
        (
            {"pytest.ini": "[pytest]\nve_compare_fail =\n    start_p90:10%\n    speed:5%\n"},
            [],
            "ERROR: --ve-compare-fail: 'speed:5%': unknown metric 'speed'*",
        ),
        # A reference from another host or run shape: an error, before anything is created.
        (
            {"ref.json": "OTHER_HOST"},
            ["--ve-compare=ref.json"],
            "ERROR: --ve-compare: ref.json is not comparable with this run: kernel '6.1.0' here *",
        ),
        (
            {"ref.json": "OLD_FILE"},
            ["--ve-compare=ref.json"],
            "ERROR: --ve-compare: ref.json is not comparable with this run: it has no host fingerprint*",
        ),
        (
            {"ref.json": "THIS_HOST_20_VES"},
            ["--ve-compare=ref.json", "--ve-count=30"],
            "ERROR: --ve-compare: ref.json is not comparable with this run: "
            "count 20 here 30; batch 20 here 30 (--ve-compare-force)",
        ),
        (
            {"ref.json": "THIS_HOST_20_VES", "reports/20261101T000000Z-lxc5.0.2-h/results.json": "THIS_HOST_20_VES"},
            ["--ve-compare=latest", "--ve-report-dir=reports", "--ve-count=30"],
            "ERROR: --ve-compare: 'latest': no comparable successful run in */reports: 20261101T000000Z-lxc5.0.2-h: "
            "count 20 here 30; batch 20 here 30; --ve-compare-force compares anyway",
        ),
        (
            {"other.json": '{"hello": 1}'},
            ["--ve-compare=other.json"],
            "ERROR: --ve-compare: other.json is not a pytest-lxcexp results file*",
        ),
        (
            {"afile.txt": "x"},
            ["--ve-report-dir=afile.txt"],
            "ERROR: --ve-report-dir: */afile.txt exists and is not a directory",
        ),
    ],
)
def test_bad_report_option_is_a_usage_error(
    pytester: pytest.Pytester, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if text in REFERENCES:
            write_results(str(path), REFERENCES[text]())
        else:
            path.write_text(text)
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "passed" not in result.stdout.str()


def test_session_without_an_experiment_archives_nothing(pytester: pytest.Pytester) -> None:
    # A valid reference and rules, but no VE ran: the session passes, and no empty run folder stays.
    reference = pytester.path / "ref.json"
    write_results(str(reference), this_host_run())
    module = pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(
        str(module),
        "--ve-report-dir=reports",
        f"--ve-compare={reference}",
        "--ve-compare-fail=start_p90:10%",
        "--html=r.html",
    )
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*note: no experiment ran in this session: nothing archived or compared*"])
    assert os.listdir(pytester.path / "reports") == []
    assert (pytester.path / "r.html").exists()  # the user's own --html is left alone


def test_bad_main_option_leaves_no_run_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess("--ve-report-dir=reports", "--ve-count=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not (pytester.path / "reports").exists() or os.listdir(pytester.path / "reports") == []


def test_help_lists_the_report_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "container-density experiments with LXC:",
            "*--ve-report-dir=DIR*",
            "*--ve-compare=REF*",
            "*--ve-compare-fail=METRIC?:N%?*",  # fnmatch: ? for the brackets
            "*--ve-compare-force*",
        ]
    )
    for ini in ("ve_report_dir", "ve_compare", "ve_compare_fail", "ve_compare_force"):
        assert ini in result.stdout.str()
