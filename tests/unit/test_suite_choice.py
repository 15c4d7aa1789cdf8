"""The built-in suites and which tests a session runs (suite_choice), seen through pytester.

Every session here is --collect-only or stops at a usage error: nothing touches the host.
"""

from __future__ import annotations

import json

import pytest

from pytest_lxcexp.options import FLAGS, OPTIONS
from pytest_lxcexp.suites import SUITES_DIR, UnknownSuite, suite_defaults, suite_names, suite_of, suite_path

PLAIN_MODULE = """
def test_plain():
    assert True
"""

RANGE_MODULE = """
def test_mine(ve_range):
    pass
"""

NOTE = "lxcexp: no test of this session uses the experiment's fixtures: running the built-in suite ping*"


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_the_suites_are_packages_in_the_plugin() -> None:
    assert suite_names() == ["boot_storm", "churn", "debian_density", "hostile", "network_mesh", "ping", "ramp"]
    for name in suite_names():
        assert (suite_path(name) / "__init__.py").is_file()
        assert (suite_path(name) / "README.md").is_file()
        assert list(suite_path(name).glob("test_*.py")), name
    assert suite_of(suite_path("churn") / "test_churn.py") == "churn"
    assert suite_of(SUITES_DIR) is None
    assert suite_of(SUITES_DIR.parent / "plugin.py") is None
    with pytest.raises(UnknownSuite, match="no built-in suite 'nope'; there are: boot_storm, churn"):
        suite_path("nope")


def test_suite_defaults_are_settings_the_plugin_knows() -> None:
    options, flags = {name for _, name, _, _ in OPTIONS}, {name for _, name, _ in FLAGS}
    for name in suite_names():
        defaults = suite_defaults(name)
        assert set(defaults) <= options | flags, name
        assert all(isinstance(value, bool) == (key in flags) for key, value in defaults.items()), name
    assert suite_defaults("boot_storm")["ve_workload"] == "idle"
    assert suite_defaults("ping") == {}


def test_an_option_and_no_tests_collects_the_ping_suite(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=250", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    assert result.outlines[0].startswith("lxcexp: no test of this session uses the experiment's fixtures")
    assert collected(result) == [
        "test_ping.py::test_start[ve1-ve100]",
        "test_ping.py::test_start[ve101-ve200]",
        "test_ping.py::test_start[ve201-ve250]",
        "test_ping.py::test_completed[ve1-ve100]",
        "test_ping.py::test_completed[ve101-ve200]",
        "test_ping.py::test_completed[ve201-ve250]",
    ]


def test_no_option_collects_nothing_of_ours(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "lxcexp" not in result.stdout.str()


def test_own_tests_without_the_fixtures_give_way_to_the_ping_suite(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain=PLAIN_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=5")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([NOTE])
    assert collected(result) == ["test_ping.py::test_start[ve1-ve5]", "test_ping.py::test_completed[ve1-ve5]"]
    result.stdout.fnmatch_lines(["*2/3 tests collected (1 deselected)*"])


def test_own_tests_using_the_fixtures_run_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine=RANGE_MODULE, test_plain=PLAIN_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=5")
    assert result.ret == pytest.ExitCode.OK
    assert collected(result) == ["test_mine.py::test_mine[ve1-ve5]", "test_plain.py::test_plain"]
    result.stdout.fnmatch_lines(["lxcexp: this session's own tests use the experiment; the built-in suite ping is*"])


def test_named_test_paths_get_no_suite_added(pytester: pytest.Pytester) -> None:
    module = pytester.makepyfile(test_plain=PLAIN_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=5", str(module))
    assert collected(result) == ["test_plain.py::test_plain"]
    assert "lxcexp" not in result.stdout.str()


def test_k_selects_among_the_suite_tests(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=200", "-k", "completed")
    assert collected(result) == ["test_ping.py::test_completed[ve1-ve100]", "test_ping.py::test_completed[ve101-ve200]"]


def test_last_failed_selects_among_the_suite_tests(pytester: pytest.Pytester) -> None:
    # The cache a failed run leaves: --lf must find the suite's node ids among what is collected.
    cache = pytester.path / ".pytest_cache" / "v" / "cache"
    cache.mkdir(parents=True)
    (cache / "lastfailed").write_text(json.dumps({"test_ping.py::test_completed[ve101-ve200]": True}))
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=200", "--lf")
    assert collected(result) == ["test_ping.py::test_completed[ve101-ve200]"]


def test_ve_suite_runs_a_suite_with_its_defaults(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-suite", "boot_storm")
    assert result.ret == pytest.ExitCode.OK
    # boot_storm's defaults: 200 VEs in one range.
    assert collected(result) == [
        "test_boot_storm.py::test_start[ve1-ve200]",
        "test_boot_storm.py::test_up[ve1-ve200]",
        "test_boot_storm.py::test_start_latency_recorded",
    ]


def test_the_users_ini_and_command_line_win_over_a_suites_defaults(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nve_count = 30\n")
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-suite=boot_storm")
    assert collected(result)[0] == "test_boot_storm.py::test_start[ve1-ve30]"
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-suite=boot_storm", "--ve-batch=10")
    assert collected(result)[:3] == [
        "test_boot_storm.py::test_start[ve1-ve10]",
        "test_boot_storm.py::test_start[ve11-ve20]",
        "test_boot_storm.py::test_start[ve21-ve30]",
    ]


def test_a_suites_own_option_parses_with_ve_suite(pytester: pytest.Pytester) -> None:
    # churn's conftest adds --churn-cycles: it must be known when the command line is parsed.
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-suite", "churn", "--churn-cycles", "6")
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert collected(result) == ["test_churn.py::test_churn[ve1-ve20]"]


def test_pyargs_runs_a_suite_with_its_defaults(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--pyargs", "pytest_lxcexp.suites.network_mesh")
    assert result.ret == pytest.ExitCode.OK
    # network_mesh's defaults: 50 VEs.
    assert "test_network_mesh.py::test_mesh[ve1-ve50]" in collected(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ve-suite=nope"], "ERROR: --ve-suite: no built-in suite 'nope'; there are: boot_storm, churn, *"),
        (["--ve-suite=ping", "."], "ERROR: --ve-suite: runs the built-in suite ping by itself; test paths outside it*"),
        (
            ["--pyargs", "pytest_lxcexp.suites.ping", "pytest_lxcexp.suites.churn"],
            "ERROR: --ve-suite: the built-in suites churn and ping share one experiment*",
        ),
    ],
)
def test_bad_suite_choice_is_a_usage_error(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest_subprocess("--collect-only", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
