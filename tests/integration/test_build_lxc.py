"""`lxcexp build-lxc` on the real LXC source bundle, and its build side by side with the
system's LXC in one real run. The first build of v6.0.6 takes minutes (about 2.5 on 2
idle cores); it is cached per commit, so later runs find it built."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from integration_helpers import PING_SUITE, Names, reported_run

# Upstream LXC's source as a git bundle (this machine's copy unless LXCEXP_LXC_BUNDLE names another).
BUNDLE = os.environ.get("LXCEXP_LXC_BUNDLE", "/work/shared/lxc-source/lxc.bundle")


def build_lxc(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest_lxcexp.cli", "build-lxc", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def v606() -> str:
    assert os.path.isfile(BUNDLE), f"the LXC source bundle is missing: {BUNDLE}"
    done = build_lxc(BUNDLE, "--ref", "v6.0.6")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_build_is_cached_per_commit_and_describes_itself(v606: str) -> None:
    with open(os.path.join(v606, "lxcexp-build.json")) as handle:
        info = json.load(handle)
    assert info["describe"] == "v6.0.6" and os.path.basename(v606) == info["commit"]
    again = build_lxc(BUNDLE, "--ref", "v6.0.6")
    assert again.returncode == 0 and again.stdout.strip() == v606
    assert "is built already" in again.stderr and "compiling" not in again.stderr
    # The rpath: its own lxc-start loads its own liblxc with no library path set.
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    version = subprocess.run([f"{v606}/bin/lxc-start", "--version"], capture_output=True, text=True, env=env)
    assert version.stdout.strip() == "6.0.6", version.stderr


def test_bad_sources_are_refused_before_anything_is_built(tmp_path) -> None:  # noqa: ANN001
    done = build_lxc(str(tmp_path / "none"))
    assert done.returncode != 0 and f"SOURCE: {tmp_path}/none does not exist" in done.stderr
    (tmp_path / "plain").write_text("not a source\n")
    done = build_lxc(str(tmp_path / "plain"))
    assert done.returncode != 0 and "neither a git tree, a git bundle nor a tarball" in done.stderr
    subprocess.run(["tar", "-cf", str(tmp_path / "src.tar"), "-C", str(tmp_path), "plain"], check=True)
    done = build_lxc(str(tmp_path / "src.tar"), "--ref", "v6.0.6")
    assert done.returncode != 0 and "--ref: a tarball holds one tree" in done.stderr


def test_the_system_and_upstream_v606_side_by_side(pytester: pytest.Pytester, clean_host: Names, v606: str) -> None:
    pytester.makepyfile(test_ping=PING_SUITE)
    result, results = reported_run(
        pytester,
        clean_host,
        "--ve-count=4",
        "--ve-pings=2",
        "--ve-ping-interval=0.2",
        "--ve-tmpfs-size=128M",
        "--ve-lxc=system",
        f"--ve-lxc=v6={v606}",
    )
    result.assert_outcomes(passed=2)
    ves = results["ves"]
    assert [ve["build"] for ve in ves] == ["system", "v6", "v6", "system"]
    assert all(ve["completed"] for ve in ves)
    # Every phase stamped, in seconds from the VE's own start request.
    for ve in ves:
        assert set(ve["phases"]) == {"lxc_start_returned", "running", "workload_began", "first_ping"}
        assert all(0 < value < 60 for value in ve["phases"].values()), ve["phases"]
        assert ve["phases"]["first_ping"] > ve["phases"]["workload_began"]
    system, v6 = results["metadata"]["builds"]
    assert v6["name"] == "v6" and v6["version"] == "6.0.6" and v6["git_describe"] == "v6.0.6"
    assert v6["library"].startswith(f"{v606}/lib/liblxc.so") and v6["rpath"] is True
    assert v6["config_dir"] == f"{v606}/etc/lxc" and system["config_dir"] == "/etc/lxc"
    # The proof: each monitor mapped its own build's liblxc, and the VEs of both got the
    # same cgroups of their own, although the two read their lxc.conf from two places.
    assert system["proof"]["ok"] and v6["proof"]["ok"]
    assert v6["proof"]["liblxc"] == [v6["library"]] and system["proof"]["liblxc"] == [system["library"]]
    assert v6["proof"]["cgroups"] == system["proof"]["cgroups"]
    assert "pids" in v6["proof"]["cgroups"] and "memory" not in v6["proof"]["cgroups"]
