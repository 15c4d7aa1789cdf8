"""Every base on real VEs: debian (debootstrap, systemd), a rootfs directory and tarball, an LXC container."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess

from integration_helpers import PING_SUITE, run_pytest, run_to_completion, running_experiment

from pytest_lxcexp.engine import addressing, base, takedown
from pytest_lxcexp.engine.config import ExperimentConfig, build_config

ATTACH = "lxc-attach"
SHOW_RESULT = "systemctl show -p Result -p ExecMainStatus lxcexp-workload.service"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq8b1m3l4t7lJk1qkqYbqj8V0nHqvVvJQ5q3c2y7kO1 lxcexp-test\n"


def _in_ve(pid: int, path: str) -> str:
    """A file as the VE itself sees it (through its init's root), not as the host's copy."""
    with open(f"/proc/{pid}/root{path}") as handle:
        return handle.read()


def test_debian_boots_systemd_and_runs_the_workload_as_a_service(clean_host, leftovers, tmp_path):
    names = clean_host
    key = tmp_path / "id.pub"
    key.write_text(PUBLIC_KEY)
    gateway = addressing.AddressPlan(build_config(subnet=names.subnet).subnet).gateway
    # The proxy is only written into apt's configuration (an address on our own bridge; never contacted).
    proxy = f"http://{gateway}:3142"
    with running_experiment(
        names, count=3, base="debian", init="system", tmpfs_size="1G", ssh_key=str(key), apt_proxy=proxy
    ) as experiment:
        config = experiment.config
        # The base came from the host's own release and mirror, and is cached as a tarball.
        assert config.base_release and config.mirror.startswith("http")
        assert os.path.isfile(base.debian_tarball_path(config.base_cache, config.base_release, config.mirror))
        records = run_to_completion(experiment)
        for record in records:
            assert os.path.basename(os.readlink(f"/proc/{record.pid}/exe")) == "systemd"
            assert _in_ve(record.pid, "/root/.ssh/authorized_keys") == PUBLIC_KEY
            assert proxy in _in_ve(record.pid, "/etc/apt/apt.conf.d/01lxcexp-proxy")
            # Asked inside the VE: the service's result, and the VE's own name (systemd kept LXC's).
            inside = f"{ATTACH} -P {names.root} -n {record.name} -- sh -c 'hostname; {SHOW_RESULT}'"
            shown = subprocess.run(inside, shell=True, capture_output=True, text=True, timeout=30)
            assert shown.returncode == 0, shown.stderr
            assert shown.stdout.split() == [record.name, "Result=success", "ExecMainStatus=0"]
    assert leftovers(names) == []


def _user_rootfs(tmp_path) -> str:  # noqa: ANN001
    """A root filesystem of the user's own: here, a copy of the busybox base."""
    rootfs = tmp_path / "my-rootfs"
    shutil.copytree(base.cached_busybox_base(ExperimentConfig.base_cache), rootfs, symlinks=True)
    return str(rootfs)


def test_directory_and_tarball_bases(clean_host, leftovers, tmp_path):
    names = clean_host
    rootfs = _user_rootfs(tmp_path)
    (tmp_path / "my-rootfs" / "etc" / "motd").write_text("from the user's rootfs\n")
    tarball = tmp_path / "my-rootfs.tar.gz"
    subprocess.run(["tar", "-C", rootfs, "-czf", str(tarball), "."], check=True)
    key = tmp_path / "id.pub"
    key.write_text(PUBLIC_KEY)
    for source in (rootfs, str(tarball)):
        with running_experiment(names, count=2, base=source, network="none", ssh_key=str(key)) as experiment:
            for record in run_to_completion(experiment, timeout=30):
                assert _in_ve(record.pid, "/etc/motd") == "from the user's rootfs\n"
                assert _in_ve(record.pid, "/root/.ssh/authorized_keys") == PUBLIC_KEY
        assert leftovers(names) == []
    # The user's rootfs itself is untouched: the workload went into the copy.
    assert not os.path.exists(os.path.join(rootfs, "sbin", "lxcexp-workload"))


def test_an_existing_lxc_container_as_the_base(clean_host, leftovers, tmp_path):
    names = clean_host
    lxcpath = tmp_path / "lxc"
    lxcpath.mkdir()
    created = subprocess.run(
        ["lxc-create", "-P", str(lxcpath), "-n", "source", "-t", "busybox"], capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    try:
        with running_experiment(names, count=2, base=f"lxc:source@{lxcpath}", network="none") as experiment:
            run_to_completion(experiment, timeout=30)
        assert leftovers(names) == []
    finally:
        subprocess.run(["lxc-destroy", "-P", str(lxcpath), "-n", "source"], capture_output=True)
        # liblxc's lock file for the source container, under /run/lxc/lock/<lxcpath>.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(takedown.lxc_lock_dir(str(lxcpath)), ".source"))
        takedown.remove_lxc_locks(str(lxcpath))
    assert not os.path.exists(lxcpath / "source")
    assert not os.path.exists(takedown.lxc_lock_dir(str(lxcpath)))


def test_cli_createbase_debian_reuses_the_cached_tarball(cli):
    first = cli("createbase", "--base", "debian")
    assert first.returncode == 0, first.stderr
    path = first.stdout.split("base: ", 1)[1].split()[0]
    built = os.stat(path).st_mtime_ns
    again = cli("createbase", "--base", "debian")
    assert again.returncode == 0 and path in again.stdout
    assert os.stat(path).st_mtime_ns == built  # reused, not rebuilt
    bad = cli("createbase", "--base", "debian", "--release", "Bookworm")
    assert bad.returncode == 2 and "--release: 'Bookworm' is not a release codename" in bad.stderr


def test_a_failing_debootstrap_is_reported_and_leaves_nothing(pytester, clean_host, leftovers):
    names = clean_host
    pytester.makepyfile(test_ping=PING_SUITE)
    # A mirror nobody serves (a closed port on the host itself): debootstrap fails at once.
    mirror = "http://127.0.0.1:9/debian"
    result = run_pytest(
        pytester, names, "--ve-count=2", "--ve-base=debian", f"--ve-mirror={mirror}", "--ve-tmpfs-size=1G"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*BaseError: debootstrap * from {mirror} failed*"])
    tarball = base.debian_tarball_path(ExperimentConfig.base_cache, build_config(base="debian").base_release, mirror)
    assert not os.path.exists(tarball)
    assert not glob.glob(tarball + ".building-*") and not glob.glob(tarball + ".tmp-*")
    assert leftovers(names) == []
