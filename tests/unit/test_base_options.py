"""Bases: --ve-base and its companions' parsing, the host's apt defaults, and writing inside a base safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_lxcexp.engine import aptsources, base
from pytest_lxcexp.engine.base import (
    APT_PROXY_FILE,
    base_kind,
    check_base,
    configure_base,
    debian_tarball_path,
    init_flavour,
    resolve_in_root,
    write_in_root,
)
from pytest_lxcexp.engine.config import (
    ConfigError,
    ExperimentConfig,
    build_config,
    parse_base,
    parse_release,
    parse_ssh_key,
    parse_url,
)
from pytest_lxcexp.engine.workload import INIT_PATH, INIT_SCRIPT, SYSTEMD_UNIT

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8b1m3l4t7lJk1qkqYbqj8V0nHqvVvJQ5q3c2y7kO1 tester@host\n"


def fails(func, *args: object) -> ConfigError:  # noqa: ANN001
    with pytest.raises(ConfigError) as caught:
        func(*args)
    return caught.value


# -- --ve-base ------------------------------------------------------------------------------


def test_named_and_lxc_bases() -> None:
    assert parse_base("--ve-base", "busybox") == "busybox"
    assert parse_base("--ve-base", "debian") == "debian"
    assert parse_base("--ve-base", "lxc:web1") == "lxc:web1"
    assert parse_base("--ve-base", "lxc:web1@/srv/lxc/") == "lxc:web1@/srv/lxc"


def test_path_bases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(b"")
    assert parse_base("--ve-base", str(rootfs)) == str(rootfs)
    assert parse_base("--ve-base", str(tarball)) == str(tarball)
    monkeypatch.chdir(tmp_path)
    assert parse_base("--ve-base", "./rootfs") == str(rootfs)  # made absolute
    assert base_kind(str(rootfs)) == "directory"
    assert base_kind(str(tarball)) == "tarball"
    assert base_kind("lxc:x") == "lxc"


def test_an_lxc_base_whose_monitor_never_answers_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # lxc-info asks a running container's monitor and waits on it without a deadline: a stuck
    # monitor (a build that deadlocks) kept the run's checks waiting for good. A stand-in
    # lxc-info that never answers; the real one hangs the same way on a stopped monitor.
    (tmp_path / "web1" / "rootfs").mkdir(parents=True)
    (tmp_path / "web1" / "config").write_text(f"lxc.rootfs.path = dir:{tmp_path}/web1/rootfs\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "lxc-info").write_text("#!/bin/sh\nexec sleep 600\n")
    (tools / "lxc-info").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setattr(base, "LXC_INFO_TIMEOUT", 0.5)
    with pytest.raises(ConfigError, match="lxc-info had no answer in 0.5 s"):
        base.lxc_container_rootfs(f"lxc:web1@{tmp_path}")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ubuntu", "is not one of busybox, debian, lxc:NAME[@LXCPATH], or a path"),
        ("lxc:", "is not an LXC container name"),
        ("lxc:bad name", "is not an LXC container name"),
        ("lxc:web@relative/path", "is not absolute"),
        ("/nonexistent/rootfs", "does not exist"),
        ("/", "the host's own root filesystem"),
    ],
)
def test_bad_bases(text: str, reason: str) -> None:
    error = fails(parse_base, "--ve-base", text)
    assert error.option == "--ve-base"
    assert reason in error.reason


def test_a_file_that_is_no_tarball(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert "not a tarball" in fails(parse_base, "--ve-base", str(notes)).reason


def test_a_base_inside_the_root_is_refused(tmp_path: Path) -> None:
    inside = tmp_path / "exp" / "rootfs"
    inside.mkdir(parents=True)
    error = fails(lambda: build_config(root=str(tmp_path / "exp"), base=str(inside)))
    assert error.option == "--ve-base"
    assert "lies inside --ve-root" in error.reason


# -- debian: release, mirror, proxy -----------------------------------------------------------


def test_debian_defaults_come_from_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aptsources, "host_codename", lambda: "bookworm")
    monkeypatch.setattr(aptsources, "host_mirror", lambda release: f"http://mirror.example/debian-for-{release}")
    config = build_config(base="debian")
    assert (config.base_release, config.mirror) == ("bookworm", "http://mirror.example/debian-for-bookworm")
    given = build_config(base="debian", base_release="trixie", mirror="http://other.example/debian/")
    assert (given.base_release, given.mirror) == ("trixie", "http://other.example/debian")


def test_debian_without_host_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aptsources, "host_codename", lambda: None)
    assert fails(lambda: build_config(base="debian")).option == "--ve-base-release"
    monkeypatch.setattr(aptsources, "host_codename", lambda: "bookworm")
    monkeypatch.setattr(aptsources, "host_mirror", lambda release: None)
    assert fails(lambda: build_config(base="debian")).option == "--ve-mirror"


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"base_release": "bookworm"}, "--ve-base-release"),
        ({"mirror": "http://deb.debian.org/debian"}, "--ve-mirror"),
        ({"apt_proxy": "http://proxy:3142"}, "--ve-apt-proxy"),
    ],
)
def test_debian_options_on_busybox_are_refused(kwargs: dict, option: str) -> None:
    assert fails(lambda: build_config(**kwargs)).option == option


@pytest.mark.parametrize("text", ["Bookworm", "b", "bookworm;rm", "../x"])
def test_bad_release(text: str) -> None:
    assert "not a release codename" in fails(parse_release, "--ve-base-release", text).reason


@pytest.mark.parametrize("text", ["deb.debian.org/debian", "ftp://x/y", "http://a b", 'http://x/"y', "http://"])
def test_bad_urls(text: str) -> None:
    error = fails(parse_url, "--ve-mirror", text, ("http", "https", "file"))
    assert error.option == "--ve-mirror"


def test_good_urls() -> None:
    assert parse_url("--ve-apt-proxy", " http://10.0.0.1:3142/ ", ("http", "https")) == "http://10.0.0.1:3142/"
    assert parse_url("--ve-mirror", "file:///srv/mirror", ("http", "https", "file")) == "file:///srv/mirror"


def test_tarball_name_carries_release_arch_and_mirror(tmp_path: Path) -> None:
    one = debian_tarball_path(str(tmp_path), "bookworm", "http://a/debian", arch="amd64")
    two = debian_tarball_path(str(tmp_path), "bookworm", "http://b/debian", arch="amd64")
    assert os.path.basename(one).startswith("debian-bookworm-amd64-") and one.endswith(".tar")
    assert one != two


# -- the host's apt sources ---------------------------------------------------------------------

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""


def test_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "debian.sources").write_text(DEB822)
    (tmp_path / "other.sources").write_text("Types: deb-src\nURIs: http://src.example/\nSuites: bookworm\n")
    none = str(tmp_path / "no-sources.list")
    assert aptsources.host_mirror("bookworm", none, str(tmp_path)) == "http://deb.debian.org/debian"
    # Another release: the plain-suite mirror still serves it.
    assert aptsources.host_mirror("trixie", none, str(tmp_path)) == "http://deb.debian.org/debian"


def test_one_line_sources(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text(
        "# comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
        "deb http://security.example/debian-security bookworm-security main\n"
    )
    assert aptsources.host_mirror("bookworm", str(sources), str(tmp_path / "d")) == "http://mirror.example/debian"


def test_no_sources(tmp_path: Path) -> None:
    assert aptsources.host_mirror("bookworm", str(tmp_path / "x"), str(tmp_path / "y")) is None


def test_codename(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert aptsources.host_codename(str(release)) == "bookworm"
    release.write_text('NAME="Something"\n')
    assert aptsources.host_codename(str(release)) is None


# -- --ve-ssh-key -----------------------------------------------------------------------------------


def test_ssh_key(tmp_path: Path) -> None:
    key = tmp_path / "id.pub"
    key.write_text(PUBLIC_KEY)
    assert parse_ssh_key("--ve-ssh-key", str(key)) == str(key)
    private = tmp_path / "id"
    private.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    assert "private key" in fails(parse_ssh_key, "--ve-ssh-key", str(private)).reason
    junk = tmp_path / "junk.pub"
    junk.write_text("hello world\n")
    assert "not an OpenSSH public key" in fails(parse_ssh_key, "--ve-ssh-key", str(junk)).reason
    empty = tmp_path / "empty.pub"
    empty.write_text("\n")
    assert "holds no public key" in fails(parse_ssh_key, "--ve-ssh-key", str(empty)).reason
    assert "cannot be read" in fails(parse_ssh_key, "--ve-ssh-key", str(tmp_path / "missing.pub")).reason


# -- writing inside a base --------------------------------------------------------------------------


def test_absolute_symlinks_stay_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "usr" / "sbin").mkdir(parents=True)
    os.symlink("/usr/sbin", root / "sbin")  # absolute: on the host it would be the host's /usr/sbin
    os.symlink("../../../../../../etc", root / "usr" / "up")
    assert resolve_in_root(str(root), "/sbin/x") == str(root / "usr" / "sbin" / "x")
    assert resolve_in_root(str(root), "/usr/up/passwd") == str(root / "etc" / "passwd")
    write_in_root(str(root), "/sbin/lxcexp-workload", "#!/bin/sh\n", 0o755)
    assert (root / "usr" / "sbin" / "lxcexp-workload").read_text() == "#!/bin/sh\n"
    assert os.stat(root / "usr" / "sbin" / "lxcexp-workload").st_mode & 0o777 == 0o755


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_text("keep")
    os.symlink(str(outside), root / "etc" / "resolv.conf")
    write_in_root(str(root), "/etc/resolv.conf", "")
    assert outside.read_text() == "keep"
    assert not os.path.islink(root / "etc" / "resolv.conf")


def test_symlink_loops_are_an_error(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    os.symlink("/a", root / "b")
    os.symlink("/b", root / "a")
    with pytest.raises(RuntimeError, match="too many symlinks"):
        resolve_in_root(str(root), "/a/x")


def _debian_like(root: Path) -> None:
    """A merged-/usr tree whose /sbin/init is systemd, as debootstrap makes it."""
    for directory in ("usr/bin", "usr/sbin", "usr/lib/systemd", "etc/apt"):
        (root / directory).mkdir(parents=True)
    for name in ("bin", "sbin", "lib"):
        os.symlink(f"usr/{name}", root / name)
    (root / "usr" / "bin" / "dash").write_text("")
    os.symlink("dash", root / "usr" / "bin" / "sh")
    (root / "usr" / "lib" / "systemd" / "systemd").write_text("")
    os.symlink("/lib/systemd/systemd", root / "usr" / "sbin" / "init")
    (root / "etc" / "hostname").write_text("builder\n")


def test_configure_a_systemd_base(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    _debian_like(root)
    key = tmp_path / "id.pub"
    key.write_text(PUBLIC_KEY)
    assert init_flavour(str(root)) == "systemd"
    config = ExperimentConfig(
        base="debian", init="system", ssh_key=str(key), apt_proxy="http://10.0.0.1:3142", workload="cmd:true"
    )
    configure_base(str(root), config)
    assert (root / "usr" / "sbin" / "lxcexp-workload").read_text() == INIT_SCRIPT
    assert "WORKLOAD=command" in (root / "etc" / "lxcexp" / "workload.env").read_text()
    unit = root / "etc" / "systemd" / "system" / SYSTEMD_UNIT
    assert f"ExecStart={INIT_PATH}" in unit.read_text()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / SYSTEMD_UNIT
    assert os.readlink(wants) == f"../{SYSTEMD_UNIT}"
    assert not (root / "etc" / "hostname").exists()  # each VE keeps the name LXC gives it
    assert (root / "root" / ".ssh" / "authorized_keys").read_text() == PUBLIC_KEY
    assert os.stat(root / "root" / ".ssh").st_mode & 0o777 == 0o700
    assert os.stat(root / "root" / ".ssh" / "authorized_keys").st_mode & 0o777 == 0o600
    assert (root / APT_PROXY_FILE).read_text() == 'Acquire::http::Proxy "http://10.0.0.1:3142";\n'
    assert (root / "var" / "log" / "lxcexp").is_dir()


def test_configure_a_busybox_base_with_its_own_init(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_text("")
    os.symlink("busybox", root / "bin" / "sh")
    configure_base(str(root), ExperimentConfig(init="system"))
    assert os.readlink(root / "sbin" / "init") == "/bin/busybox"
    assert init_flavour(str(root)) == "busybox"
    assert (root / "etc" / "inittab").read_text() == f"::once:{INIT_PATH}\n"


def test_hook_script_replaces_the_init_script(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "sh").write_text("")
    configure_base(str(root), ExperimentConfig(workload="hook", workload_script="#!/bin/sh\necho mine\n"))
    assert (root / "sbin" / "lxcexp-workload").read_text() == "#!/bin/sh\necho mine\n"


def test_check_base_on_directories(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    error = fails(check_base, ExperimentConfig(base=str(empty)))
    assert (error.option, "has no /bin/sh" in error.reason) == ("--ve-base", True)
    debianish = tmp_path / "deb"
    _debian_like(debianish)
    check_base(ExperimentConfig(base=str(debianish), init="system"))
    (debianish / "usr" / "lib" / "systemd" / "systemd").unlink()
    assert fails(check_base, ExperimentConfig(base=str(debianish), init="system")).option == "--ve-init"


def test_check_base_on_a_missing_container(tmp_path: Path) -> None:
    error = fails(check_base, ExperimentConfig(base=f"lxc:nosuch@{tmp_path}"))
    assert error.option == "--ve-base"
    assert f"no LXC container nosuch in {tmp_path}" in error.reason


def test_check_base_on_a_container_with_another_backing_store(tmp_path: Path) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "config").write_text("lxc.rootfs.path = overlay:/a:/b\n")
    assert "only dir:" in fails(check_base, ExperimentConfig(base=f"lxc:c1@{tmp_path}")).reason
