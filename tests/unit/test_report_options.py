"""The report plugin's options seen from outside (pytester subprocesses); no test here runs VEs."""

from __future__ import annotations

import os

import pytest
from report_helpers import make_results

from pytest_lxcexp.report.results import write_results

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
        ({}, ["--ve-compare-fail=start_p90"], "ERROR: --ve-compare-fail: 'start_p90' is not METRIC:N%*"),
        ({}, ["--ve-compare-fail=start_p90:10"], "ERROR: --ve-compare-fail: 'start_p90:10' is not METRIC:N%*"),
        ({}, ["--ve-compare-fail=completed:-1%"], "ERROR: --ve-compare-fail: 'completed:-1%' is not METRIC:N%*"),
        ({}, ["--ve-compare-fail=start_p90:10%"], "ERROR: --ve-compare-fail: needs --ve-compare REF*"),
        ({}, ["--ve-compare=nowhere.json"], "ERROR: --ve-compare: nowhere.json: no such results file or run folder"),
        ({}, ["--ve-compare=latest"], "ERROR: --ve-compare: 'latest' needs --ve-report-dir*"),
        # A bad rule in the ini file names the option, as on the command line.
        (
            {"pytest.ini": "[pytest]\nve_compare_fail =\n    start_p90:10%\n    speed:5%\n"},
            [],
            "ERROR: --ve-compare-fail: 'speed:5%': unknown metric 'speed'*",
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
        (pytester.path / name).write_text(text)
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "passed" not in result.stdout.str()


def test_session_without_an_experiment_archives_nothing(pytester: pytest.Pytester) -> None:
    # A valid reference and rules, but no VE ran: the session passes, and no empty run folder stays.
    reference = pytester.path / "ref.json"
    write_results(str(reference), make_results())
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
            "*--ve-compare-fail=METRIC:N%*",
        ]
    )
    for ini in ("ve_report_dir", "ve_compare", "ve_compare_fail"):
        assert ini in result.stdout.str()
