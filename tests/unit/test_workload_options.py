"""The workload, base and init options and the hook specs, seen through pytester subprocesses.

Nothing here touches the host: usage errors stop the session before anything is created.
"""

from __future__ import annotations

import pytest

PLAIN_MODULE = """
def test_plain():
    assert True
"""

RANGE_MODULE = """
def test_x(ve_range):
    pass
"""


@pytest.mark.parametrize(
    ("args", "option", "reason"),
    [
        (["--ve-workload=pong"], "--ve-workload", "is not one of ping-localhost"),
        (["--ve-workload=cmd:"], "--ve-workload", "cmd: needs a shell command"),
        (["--ve-workload=ping-gateway", "--ve-network=none"], "--ve-workload", "needs --ve-network=bridge"),
        (["--ve-workload=ping-neighbour", "--ve-network=none"], "--ve-workload", "needs --ve-network=bridge"),
        (["--ve-workload=idle", "--ve-poweroff"], "--ve-poweroff", "idle workload never ends"),
        (["--ve-init=upstart"], "--ve-init", "is not one of workload, system"),
        (["--ve-base=alpine"], "--ve-base", "is not one of busybox, debian"),
        (["--ve-base=/nonexistent/rootfs"], "--ve-base", "does not exist"),
        (["--ve-base=lxc:"], "--ve-base", "not an LXC container name"),
        (["--ve-base-release=bookworm"], "--ve-base-release", "applies only to --ve-base=debian"),
        (["--ve-mirror=http://deb.debian.org/debian"], "--ve-mirror", "applies only to --ve-base=debian"),
        (["--ve-base=debian", "--ve-base-release=Bookworm"], "--ve-base-release", "not a release codename"),
        (["--ve-base=debian", "--ve-mirror=deb.debian.org"], "--ve-mirror", "is not a http or https or file URL"),
        (["--ve-apt-proxy=http://10.0.0.1:3142"], "--ve-apt-proxy", "busybox base has no apt"),
        (["--ve-base=debian", "--ve-apt-proxy=proxy:3142"], "--ve-apt-proxy", "is not a http or https URL"),
        (["--ve-ssh-key=/nonexistent/id.pub"], "--ve-ssh-key", "cannot be read"),
    ],
)
def test_bad_option_is_a_usage_error(pytester: pytest.Pytester, args: list[str], option: str, reason: str) -> None:
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    naming = [line for line in result.errlines if line.startswith(f"ERROR: {option}: ")]
    assert len(naming) == 1, result.errlines
    assert reason in naming[0]
    assert not any("passed" in line for line in result.outlines)


def test_ini_workload(pytester: pytest.Pytester) -> None:
    pytester.makefile(".ini", pytest="[pytest]\nve_workload = ping-gateway\nve_network = none\n")
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --ve-workload: ping-gateway pings across the bridge*"])


def test_help_lists_the_new_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    text = result.stdout.str()
    for option in (
        "--ve-workload",
        "--ve-poweroff",
        "--ve-init",
        "--ve-base-release",
        "--ve-mirror",
        "--ve-apt-proxy",
        "--ve-ssh-key",
    ):
        assert option in text


def test_hook_specs_are_registered(pytester: pytest.Pytester) -> None:
    # pytest refuses implementations of unknown pytest_* hooks: these load only with our specs.
    pytester.makeconftest(
        """
        def pytest_lxcexp_workload(config, experiment):
            return None

        def pytest_lxcexp_ve_fields(record, experiment):
            return {}
        """
    )
    pytester.makepyfile(PLAIN_MODULE)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_hook_implementation_with_an_unknown_argument_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_lxcexp_ve_fields(record, experiment, colour):
            return {}
        """
    )
    pytester.makepyfile(PLAIN_MODULE)
    result = pytester.runpytest_subprocess()
    assert result.ret != pytest.ExitCode.OK
    assert "colour" in result.stdout.str() + result.stderr.str()


def test_workload_hook_must_return_a_script(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        def pytest_lxcexp_workload(experiment):
            return "echo no interpreter line"
        """
    )
    pytester.makepyfile(RANGE_MODULE)
    result = pytester.runpytest_subprocess(f"--ve-root={pytester.path / 'exproot'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest_lxcexp_workload: return the text of a script that begins with #!*"])
    assert not (pytester.path / "exproot").exists()
