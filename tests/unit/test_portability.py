"""Hosts unlike this one, found by reading the code: no python3-lxc, no IPv6, a firewall that
drops bridged traffic (Docker), no dpkg, no static busybox or one of the user's choosing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # report_helpers sits beside this file
from report_helpers import make_results  # noqa: E402

from pytest_lxcexp.engine import base, bridgefilter, fleet, network  # noqa: E402
from pytest_lxcexp.engine.config import ConfigError, build_config  # noqa: E402
from pytest_lxcexp.engine.storage import Layout  # noqa: E402
from pytest_lxcexp.report.results import write_results  # noqa: E402

# Runs python with `import lxc` refused, as on a host without python3-lxc, then the given code.
WITHOUT_LXC = textwrap.dedent(
    """
    import sys

    class NoLxc:
        def find_spec(self, name, path=None, target=None):
            if name == "lxc" or name.startswith("lxc.") or name == "_lxc":
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoLxc())
    sys.argv = sys.argv[1:]
    """
)


def run_without_lxc(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    program = WITHOUT_LXC + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program, "prog", *args], capture_output=True, text=True, cwd=cwd)


def test_pytest_loads_and_runs_without_python3_lxc(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    code = """
    import pytest
    try:
        import lxc
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker let lxc through")
    sys.exit(pytest.main(["-p", "no:cacheprovider", "test_plain.py", "--ve-count=5"]))
    """
    result = run_without_lxc(code, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "plugins: lxcexp" in result.stdout


def test_compare_and_report_work_without_python3_lxc(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    for name, completed in (("20261101T000000Z-lxc5.0.2-a", 10), ("20261102T000000Z-lxc5.0.2-a", 0)):
        (reports / name).mkdir(parents=True)
        write_results(str(reports / name / "results.json"), make_results(completed=completed))
    code = """
    from pytest_lxcexp.cli import main
    sys.exit(main(sys.argv[1:]))
    """
    runs = sorted(str(path) for path in reports.iterdir())
    compared = run_without_lxc(code, "compare", *runs, "--fail", "completed:0%", cwd=tmp_path)
    assert compared.returncode == 1, compared.stdout + compared.stderr  # 10 -> 0 completed: a regression
    assert "completed" in compared.stdout and "Traceback" not in compared.stderr
    indexed = run_without_lxc(code, "report", str(reports), cwd=tmp_path)
    assert indexed.returncode == 0, indexed.stdout + indexed.stderr
    assert (reports / "index.html").is_file()


def test_the_engine_imports_lxc_only_in_its_helper() -> None:
    engine = Path(fleet.__file__).parent
    importing = sorted(
        path.name
        for path in engine.glob("*.py")
        if any(line.strip() == "import lxc" for line in path.read_text().splitlines())
    )
    assert importing == ["lxcquery.py"]


# -- IPv6 -----------------------------------------------------------------------------


def test_host_has_ipv6_reads_proc(tmp_path: Path) -> None:
    assert network.host_has_ipv6(str(tmp_path)) is True
    assert network.host_has_ipv6(str(tmp_path / "absent")) is False


@pytest.mark.parametrize("ipv6", [True, False])
def test_ipv6_sysctls_only_on_a_host_with_ipv6(monkeypatch: pytest.MonkeyPatch, ipv6: bool) -> None:
    monkeypatch.setattr(fleet, "host_has_ipv6", lambda: ipv6)
    text = fleet.ve_config_text(build_config(count=3), Layout("/exp"), 2)
    sysctls = [line for line in text.splitlines() if "ipv6" in line]
    if ipv6:
        assert sysctls == [
            "lxc.sysctl.net.ipv6.conf.all.disable_ipv6 = 1",
            "lxc.sysctl.net.ipv6.conf.default.disable_ipv6 = 1",
        ]
    else:
        assert sysctls == []  # ipv6.disable=1: liblxc would refuse to set what does not exist
    assert "lxc.net.0.ipv4.address = 10.213.0.3/16" in text


def test_a_ves_veth_gets_its_bridges_mtu_written_out() -> None:
    # Written out, so liblxc never dumps every link on the host to inherit it.
    with open("/sys/class/net/lo/mtu") as handle:
        assert fleet.bridge_mtu("lo") == int(handle.read())
    assert fleet.bridge_mtu("no-such-link") == fleet.DEFAULT_MTU
    config = build_config(count=3, bridge="venosuchlink")
    assert "lxc.net.0.mtu = 1500" in fleet.ve_config_text(config, Layout("/exp"), 1).splitlines()


# -- a firewall that drops bridged traffic ----------------------------------------------


def test_forward_policy_is_read_from_iptables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/sbin/iptables")
    asked: list[list[str]] = []

    def fake_run(argv: list[str], **_: object) -> subprocess.CompletedProcess:
        asked.append(argv)
        return subprocess.CompletedProcess(argv, 0, "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n", "")

    assert bridgefilter.forward_policy(fake_run) == "DROP"
    assert asked == [["/usr/sbin/iptables", "-S", "FORWARD"]]  # a listing: nothing is changed
    failing = lambda argv, **_: subprocess.CompletedProcess(argv, 1, "", "Permission denied")  # noqa: E731
    assert bridgefilter.forward_policy(failing) is None
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert bridgefilter.forward_policy(fake_run) is None  # no iptables: nothing to ask


def test_bridge_calls_iptables_reads_the_sysctl(tmp_path: Path) -> None:
    sysctl = tmp_path / "bridge-nf-call-iptables"
    sysctl.write_text("1\n")
    assert bridgefilter.bridge_calls_iptables(str(sysctl)) is True
    sysctl.write_text("0\n")
    assert bridgefilter.bridge_calls_iptables(str(sysctl)) is False
    assert bridgefilter.bridge_calls_iptables(str(tmp_path / "absent")) is False  # no br_netfilter


@pytest.mark.parametrize(
    ("calls", "policy", "warned"),
    [(True, "DROP", True), (True, "ACCEPT", False), (False, "DROP", False), (True, None, False)],
)
def test_bridge_filter_warning_names_the_fix(calls: bool, policy: str | None, warned: bool) -> None:
    warning = bridgefilter.bridge_filter_warning("vesui9", lambda: calls, lambda: policy)
    if not warned:
        assert warning is None
        return
    assert warning is not None
    assert "bridge-nf-call-iptables = 1" in warning and "FORWARD policy is DROP" in warning
    assert "iptables -I FORWARD -i vesui9 -o vesui9 -j ACCEPT" in warning
    assert "sysctl -w net.bridge.bridge-nf-call-iptables=0" in warning


# -- dpkg and busybox: usage errors, not tracebacks --------------------------------------


def test_no_dpkg_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "dpkg" else real_which(name))
    with pytest.raises(ConfigError, match="--ve-base: debian: the host has no dpkg"):
        base.host_arch()


def test_no_static_busybox_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "BUSYBOX_CANDIDATES", ())
    with pytest.raises(ConfigError, match="--ve-base: busybox: no static busybox on this host.*--ve-busybox"):
        base.check_base(build_config())


def test_ve_busybox_applies_to_the_busybox_base_only() -> None:
    with pytest.raises(ConfigError, match="--ve-busybox: applies only to --ve-base=busybox"):
        build_config(base="debian", busybox="/bin/busybox")
    assert build_config(busybox="~/bb").busybox == os.path.expanduser("~/bb")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent", "is not an executable file"),
        (lambda d: d, "is not an executable file"),  # a directory
        (lambda d: _file(d / "plain", "not executable", 0o644), "is not an executable file"),
        (lambda d: _file(d / "fails", "#!/bin/sh\nexit 1\n", 0o755), "lists no applets: is it busybox?"),
    ],
)
def test_a_bad_ve_busybox_is_a_usage_error(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError, match=f"--ve-busybox: .*{reason}") as raised:
        base.check_base(build_config(busybox=str(path)))
    assert raised.value.option == "--ve-busybox"


def test_a_dynamic_ve_busybox_is_refused() -> None:
    dynamic = shutil.which("ls")
    assert dynamic is not None
    with pytest.raises(ConfigError, match="--ve-busybox: .* is dynamically linked"):
        base.check_base(build_config(busybox=dynamic))


def test_the_hosts_static_busybox_passes_the_check() -> None:
    # make deps installs busybox-static: the check runs its --list, nothing more.
    found = base.find_static_busybox()
    assert "sh" in base.busybox_applets(found)
    base.check_base(build_config(busybox=found))


def test_createbase_with_a_bad_busybox_says_so_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_lxcexp.cli import main

    status = main(["createbase", "--busybox", "/nonexistent/busybox", "--cache", "/nonexistent/cache"])
    captured = capsys.readouterr()
    assert status == 2
    assert "--busybox: /nonexistent/busybox is not an executable file" in captured.err
    assert not os.path.exists("/nonexistent")


def _file(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path
