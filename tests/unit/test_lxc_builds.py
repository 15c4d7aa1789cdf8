"""--ve-lxc: parsing, what a build is found to be, interleaving, and the expected cgroups."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lxcexp.engine import builds
from pytest_lxcexp.engine.config import BuildSpec, ConfigError, build_config, parse_build_spec, parse_builds


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("system", BuildSpec("system", "system")),
        ("/opt/lxc-6.0.6", BuildSpec("lxc-6.0.6", "/opt/lxc-6.0.6")),
        ("v6=/opt/lxc-6.0.6/", BuildSpec("v6", "/opt/lxc-6.0.6")),
        ("debian=system", BuildSpec("debian", "system")),
        ("slow=system+preload:/tmp/shim.so", BuildSpec("slow", "system", "/tmp/shim.so")),
        ("/opt/x+preload:/tmp/a/../shim.so", BuildSpec("x", "/opt/x", "/tmp/shim.so")),
    ],
)
def test_good_values(text: str, spec: BuildSpec) -> None:
    assert parse_build_spec(text) == spec
    assert parse_build_spec(spec.text()) == spec  # stored in the marker as text, read back the same


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ([""], "an empty value"),
        (["opt/lxc"], "'opt/lxc' is not an absolute path (or system)"),
        (["v6="], "names no prefix"),
        (["v6=/opt/x+preload:"], "+preload: needs the path of a shared library"),
        (["v6=/opt/x+preload:shim.so"], "the preload library 'shim.so' is not an absolute path"),
        (["a b=/opt/x"], "'a b' is not a build name"),
        (["system", "system"], "two builds are named 'system' (system and system)"),
        (["/opt/a/lxc", "/opt/b/lxc"], "two builds are named 'lxc' (/opt/a/lxc and /opt/b/lxc)"),
    ],
)
def test_bad_values_name_the_option(values: list[str], reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_builds(values)
    assert caught.value.option == "--ve-lxc"
    assert reason in caught.value.reason


def test_build_config_keeps_the_builds_in_order() -> None:
    config = build_config(lxc=["/opt/b", "a=system"])
    assert config.lxc == ("b=/opt/b", "a=system")
    assert build_config().lxc == ()


def _resolve_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        builds.resolve_build(parse_build_spec(text))
    assert caught.value.option == "--ve-lxc"
    return caught.value.reason


def test_a_prefix_that_is_not_a_directory(tmp_path: Path) -> None:
    assert "the prefix" in _resolve_error(f"x={tmp_path}/missing") and "is not a directory" in _resolve_error(
        f"x={tmp_path}/missing"
    )


def test_a_prefix_without_lxc_start(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    assert _resolve_error(f"x={tmp_path}") == (
        f"x: {tmp_path}/bin/lxc-start is missing or not executable: is {tmp_path} an LXC prefix?"
    )


def test_a_prefix_without_liblxc(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "lxc-start").write_text("#!/bin/sh\n")
    (tmp_path / "bin" / "lxc-start").chmod(0o755)
    assert _resolve_error(f"x={tmp_path}") == f"x: {tmp_path} holds no liblxc.so.1 under lib*/"


def test_a_missing_preload(tmp_path: Path) -> None:
    assert _resolve_error(f"x=system+preload:{tmp_path}/none.so") == (
        f"x: the preload library {tmp_path}/none.so does not exist"
    )


def test_the_global_config_path_is_the_one_compiled_into_the_library(tmp_path: Path) -> None:
    library = tmp_path / "liblxc.so.1"
    library.write_bytes(b"\x7fELF\x00%s/.config/lxc/lxc.conf\x00/opt/v6/etc/lxc/lxc.conf\x00/opt/v6/etc/lxc\x00")
    assert builds.global_config_dir(str(library)) == "/opt/v6/etc/lxc"
    library.write_bytes(b"\x00/a/lxc.conf\x00/b/lxc.conf\x00")
    assert builds.global_config_dir(str(library)) is None  # two candidates: not guessed


def test_ves_are_interleaved_and_each_round_starts_with_the_next_build() -> None:
    assert [builds.build_index(index, 2) for index in range(1, 9)] == [0, 1, 1, 0, 0, 1, 1, 0]
    assert [builds.build_index(index, 3) for index in range(1, 10)] == [0, 1, 2, 1, 2, 0, 2, 0, 1]
    assert [builds.build_index(index, 2, round_number=1) for index in range(1, 5)] == [1, 0, 0, 1]
    # Each block holds every build once, so the k-th VE of each build sits in block k.
    for count in (2, 3, 4):
        for block in range(5):
            indexes = range(block * count + 1, block * count + count + 1)
            assert sorted(builds.build_index(index, count) for index in indexes) == list(range(count))
    assert [builds.build_index(index, 1, round_number=3) for index in range(1, 4)] == [0, 0, 0]


HYBRID = ["9:name=systemd:/", "8:pids:/", "7:blkio:/", "4:memory:/x", "2:cpu,cpuacct:/", "0::/"]


def test_expected_hierarchies_follow_liblxcs_rule() -> None:
    # Every hierarchy all of whose controllers are listed (the unified one has none), no named one.
    assert builds.expected_hierarchies("cpu,cpuacct,pids", HYBRID) == frozenset({"cpu,cpuacct", "pids", ""})
    # cpu alone does not take a hierarchy mounted together with cpuacct.
    assert builds.expected_hierarchies("cpu,pids", HYBRID) == frozenset({"pids", ""})
    assert builds.expected_hierarchies(None, HYBRID) is None  # liblxc's choice: builds must agree instead


def test_a_prefix_without_lxc_start_is_a_usage_error_before_anything_is_made(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    pytester.makepyfile("def test_x(ve_range):\n    pass\n")
    prefix, root = tmp_path / "prefix", tmp_path / "root"
    prefix.mkdir()
    result = pytester.runpytest_subprocess(
        f"--ve-root={root}",
        "--ve-count=2",  # the host's limits hold it whatever else runs here: the build is what is refused
        "--ve-bridge=veunit1",
        "--ve-subnet=10.101.250.0/24",
        "--ve-lxc=system",
        f"--ve-lxc={prefix}",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --ve-lxc: prefix: {prefix}/bin/lxc-start is missing or not executable*"])
    assert not root.exists()


def _build(name: str, version: str) -> builds.LXCBuild:
    return builds.LXCBuild(
        name=name,
        prefix=f"/opt/{name}",
        lxc_start=f"/opt/{name}/bin/lxc-start",
        library=f"/opt/{name}/lib/liblxc.so.1",
        library_path=None,
        preload=None,
        config_dir=f"/opt/{name}/etc/lxc",
        version=version,
        sha256="0" * 64,
        rpath=True,
    )


def test_a_build_without_cgroup_v1_keys_is_refused_where_a_ve_config_holds_one() -> None:
    # LXC 7's lxc-start refuses lxc.cgroup.<controller>.<key> ("Unsupported config key"):
    # found on this host when the default --ve-pids-max put lxc.cgroup.pids.max in every config.
    v1 = "lxc.cgroup.dir.container = lxcexp-x/ve1\nlxc.cgroup.dir.monitor = x.monitor/ve1\nlxc.cgroup.pids.max = 1024\n"
    with pytest.raises(
        ConfigError, match=r"v7 \(LXC 7\.0\.0\) has no cgroup v1 keys.*--ve-pids-max=max,total:N"
    ) as caught:
        builds.refuse_v1_keys([_build("debian", "5.0.2"), _build("v7", "7.0.0")], v1)
    assert caught.value.option == "--ve-pids-max"
    builds.refuse_v1_keys([_build("v6", "6.0.6"), _build("v5", "5.0.2")], v1)  # they read them
    builds.refuse_v1_keys([_build("v7", "7.0.0")], "lxc.cgroup.dir.container = x\nlxc.cgroup2.pids.max = 1024\n")
    with pytest.raises(ConfigError) as caught:
        builds.refuse_v1_keys([_build("v7", "7.0.0")], "lxc.cgroup.relative = 0\nlxc.cgroup.cpu.shares = 102\n")
    assert caught.value.option == "--ve-nice"
    with pytest.raises(ConfigError, match=r"give --ve-memory-max=max,total:SIZE") as caught:
        builds.refuse_v1_keys([_build("v7", "7.0.0")], "lxc.cgroup.memory.limit_in_bytes = 67108864\n")
    assert caught.value.option == "--ve-memory-max"
    assert (
        builds.major_version(_build("git", "7.0.0~git20250101")) == 7 and builds.major_version(_build("x", "?")) is None
    )
