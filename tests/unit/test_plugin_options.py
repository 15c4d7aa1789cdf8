"""The plugin seen from outside, through pytester subprocesses: options, ranges, usage errors.

Only --collect-only runs see a module that uses ve_range, so nothing here touches the host.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys

import pytest

from pytest_lxcexp import options
from pytest_lxcexp.engine.config import build_config
from pytest_lxcexp.engine.storage import lock_path

RANGE_MODULE = """
def test_x(ve_range):
    pass
"""

PLAIN_MODULE = """
def test_plain():
    assert 1 + 1 == 2

def test_config_is_available(pytestconfig):
    # The plugin is loaded, its options exist, and the default stands.
    from pytest_lxcexp.plugin import run_state_key

    assert pytestconfig.stash[run_state_key].config.count == 100
    assert pytestconfig.getoption("ve_count") is None
"""


@pytest.mark.parametrize(
    ("arg", "option", "reason"),
    [
        ("--ve-count=0", "--ve-count", "positive whole number"),
        ("--ve-count=abc", "--ve-count", "positive whole number"),
        ("--ve-parallel=0", "--ve-parallel", "positive whole number"),
        ("--ve-batch=0", "--ve-batch", "positive whole number"),
        ("--ve-bridge=averyveryverylongname", "--ve-bridge", "at most 15"),
        ("--ve-tmpfs-size=lots", "--ve-tmpfs-size", "is not a size"),
        ("--ve-root=/etc", "--ve-root", "system directory"),
        ("--ve-subnet=10.0.0.1/16", "--ve-subnet", "not an IPv4 subnet"),
        ("--ve-network=foo", "--ve-network", "not one of"),
        ("--ve-timeout=-3", "--ve-timeout", "must be more than zero"),
        ("--ve-lxc=opt/lxc", "--ve-lxc", "is not an absolute path"),
        ("--ve-repeat=0", "--ve-repeat", "positive whole number"),
        ("--ve-repeat=-1", "--ve-repeat", "positive whole number"),
        ("--ve-repeat=2.5", "--ve-repeat", "positive whole number"),
        ("--ve-repeat=1001", "--ve-repeat", "supported maximum of 1000"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, arg: str, option: str, reason: str) -> None:
    # A module without ve_ fixtures: even if the option were wrongly accepted, nothing would touch the host.
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(arg)
    assert result.ret == pytest.ExitCode.USAGE_ERROR == 4
    naming = [line for line in result.errlines + result.outlines if option in line]
    assert len(naming) == 1, result.errlines + result.outlines
    assert naming[0].startswith(f"ERROR: {option}: ")
    assert reason in naming[0]
    # Nothing was collected or run.
    assert not any("passed" in line or "test_plain" in line for line in result.outlines)


def test_bad_ini_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nve_batch = none\n")
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ve-batch: 'none' is not a positive whole number"])


def test_module_without_ve_fixtures_runs_normally(pytester: pytest.Pytester) -> None:
    existed_before = os.path.lexists("/exp")
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "lxcexp results" not in result.stdout.str()
    if not existed_before:
        assert not os.path.lexists("/exp")


def test_named_module_without_ve_fixtures_leaves_the_root_alone(pytester: pytest.Pytester) -> None:
    # Test paths named on the command line run alone: no built-in suite is added.
    root = pytester.path / "exproot"
    module = pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(str(module), f"--ve-root={root}")
    result.assert_outcomes(passed=2)
    assert not root.exists()
    # Neither the root nor its run lock (kept beside the root) was made.
    assert not os.path.lexists(lock_path(str(root)))


def test_plugin_is_registered_by_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess("--trace-config", "-q")
    result.assert_outcomes(passed=2)
    assert any("pytest_lxcexp" in line and "plugin" in line for line in result.outlines)


def test_collect_only_lists_the_ranges(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ranges=RANGE_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=250", "--ve-batch=100")
    assert result.ret == pytest.ExitCode.OK
    collected = [line for line in result.outlines if "::" in line]
    assert collected == [
        "test_ranges.py::test_x[ve1-ve100]",
        "test_ranges.py::test_x[ve101-ve200]",
        "test_ranges.py::test_x[ve201-ve250]",
    ]


ROUND_MODULE = """
def test_start(ve_range):
    pass

def test_settings(ve_config):
    pass

def test_completed(ve_range):
    pass
"""


def test_collect_only_lists_each_round_before_the_next(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rounds=ROUND_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=4", "--ve-batch=2", "--ve-repeat=2")
    assert result.ret == pytest.ExitCode.OK
    # Within a round the module's order stands; a test without the experiment (ve_config) runs once.
    assert [line for line in result.outlines if "::" in line] == [
        "test_rounds.py::test_start[round1-ve1-ve2]",
        "test_rounds.py::test_start[round1-ve3-ve4]",
        "test_rounds.py::test_completed[round1-ve1-ve2]",
        "test_rounds.py::test_completed[round1-ve3-ve4]",
        "test_rounds.py::test_start[round2-ve1-ve2]",
        "test_rounds.py::test_start[round2-ve3-ve4]",
        "test_rounds.py::test_completed[round2-ve1-ve2]",
        "test_rounds.py::test_completed[round2-ve3-ve4]",
        "test_rounds.py::test_settings",
    ]


def test_one_round_keeps_the_ids_of_before(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_rounds=ROUND_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=2", "--ve-repeat=1")
    assert [line for line in result.outlines if "::" in line] == [
        "test_rounds.py::test_start[ve1-ve2]",
        "test_rounds.py::test_settings",
        "test_rounds.py::test_completed[ve1-ve2]",
    ]


def test_collect_only_batch_larger_than_count(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_ranges=RANGE_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-count=5")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.outlines if "::" in line] == ["test_ranges.py::test_x[ve1-ve5]"]


def test_ini_options_give_the_ranges(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nve_count = 30\nve_batch = 10\n")
    pytester.makepyfile(test_ranges=RANGE_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.outlines if "::" in line] == [
        "test_ranges.py::test_x[ve1-ve10]",
        "test_ranges.py::test_x[ve11-ve20]",
        "test_ranges.py::test_x[ve21-ve30]",
    ]


def test_command_line_overrides_ini(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nve_count = 30\nve_batch = 10\n")
    pytester.makepyfile(test_ranges=RANGE_MODULE)
    result = pytester.runpytest_subprocess("--collect-only", "-q", "--ve-batch=15")
    assert result.ret == pytest.ExitCode.OK
    assert [line for line in result.outlines if "::" in line] == [
        "test_ranges.py::test_x[ve1-ve15]",
        "test_ranges.py::test_x[ve16-ve30]",
    ]


def test_help_lists_the_lxcexp_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "container-density experiments with LXC:",
            "*--ve-count=VE_COUNT*number of VEs*",
            "*--ve-batch=VE_BATCH*",
        ]
    )
    text = result.stdout.str()
    for option in ("--ve-root", "--ve-tmpfs-size", "--ve-bridge", "--ve-subnet", "--ve-timeout", "--ve-keep"):
        assert option in text
    # The ini names are listed too.
    assert "ve_count" in text
    assert "ve_batch" in text


def test_every_option_is_a_build_config_keyword() -> None:
    # options.build_config_values passes each option to build_config under its name without "ve_".
    keywords = set(inspect.signature(build_config).parameters)
    names = [name for _, name, _, _ in options.OPTIONS] + [name for _, name, _ in options.FLAGS + options.LISTS]
    assert [name for name in names if name.removeprefix("ve_") not in keywords] == []
    assert keywords - {name.removeprefix("ve_") for name in names} == {"workload_script"}  # the hook's


def _help_entries(text: str) -> dict[str, str]:
    """`--ve-x ...  help text` entries of a --help output -> {option: help with whitespace folded}."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        found = re.match(r"\s+(--ve-[a-z-]+)", line)
        if found:
            current = found.group(1)
            # "  --ve-x=VALUE, --x VALUE   help": the help begins after the first run of 2+ spaces.
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            entries[current] = parts[1] if len(parts) > 1 else ""
        elif current and line.startswith(" " * 20) and line.strip():
            entries[current] += " " + line.strip()
        else:
            current = None
    return {option: " ".join(words.split()) for option, words in entries.items()}


def test_cli_setup_and_pytest_list_the_same_options_from_one_table() -> None:
    wide = dict(os.environ, COLUMNS="400")
    pytest_help = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, env=wide, check=True
    ).stdout
    cli = [sys.executable, "-m", "pytest_lxcexp.cli", "setup", "--help"]
    cli_help = subprocess.run(cli, capture_output=True, text=True, env=wide, check=True).stdout
    from_pytest, from_cli = _help_entries(pytest_help), _help_entries(cli_help)
    table = {option: " ".join(text.split()) for option, _, _, text in options.OPTIONS}
    table |= {option: " ".join(text.split()) for option, _, text in options.FLAGS + options.LISTS}
    # The CLI takes the count as its argument N; everything else by the same name with the same help.
    assert {option: from_pytest.get(option) for option in table} == table
    assert from_cli == {option: text for option, text in table.items() if option != "--ve-count"}
