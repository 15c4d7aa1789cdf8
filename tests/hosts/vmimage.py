"""VM images for the host matrix: a Debian release debootstrapped from the host's mirror,
booted by qemu with its own kernel (-kernel/-initrd), ssh for root with the harness key.

Built once per (release, recipe) into /var/cache/lxcexp/vm-images/<release>-<hash>/:
rootfs.img (raw ext4, sparse), vmlinuz, initrd.img, build.log. A build works in a
temporary directory beside it, renamed into place only when complete, removed otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

from pytest_lxcexp.engine import aptsources
from pytest_lxcexp.engine.base import _unmount_under, write_in_root

CACHE_DIR = "/var/cache/lxcexp/vm-images"
KEY_NAME = "harness_ed25519"
# Bump when the recipe changes in a way the hashed text below does not show.
RECIPE = 1
# What the README's `make deps` installs (so `make venv` in the guest needs no apt), the
# kernel and its initramfs, systemd, ssh and AppArmor (Debian's default LSM; `apparmor`
# loads LXC's shipped profiles at boot).
PACKAGES = (
    *("linux-image-amd64", "initramfs-tools", "systemd", "systemd-sysv", "udev", "kmod", "dbus"),
    *("openssh-server", "apparmor", "iproute2", "iputils-ping", "procps", "ca-certificates", "make"),
    *("lxc", "python3-lxc", "python3-venv", "busybox-static", "chromium", "debootstrap"),
)
# The guest's own address on qemu's user network; no DHCP client needed.
GUEST_NETWORK_UNIT = """[Unit]
Description=Static address on qemu's user network
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link set lo up
ExecStart=/sbin/ip link set eth0 up
ExecStart=/sbin/ip addr add 10.0.2.15/24 dev eth0
ExecStart=/sbin/ip route add default via 10.0.2.2

[Install]
WantedBy=multi-user.target
"""
IMAGE_HEADROOM_BYTES = 4 << 30  # the venv, pip's cache, logs: the disk is sparse
# panic=1: a guest kernel that panics reboots, which -no-reboot turns into qemu exiting, so a
# boot that died says so at once (Vm.start boots once more) instead of waiting out ssh.
KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0 apparmor=1 security=apparmor panic=1"


@dataclass(frozen=True)
class Image:
    release: str
    directory: str
    mirror: str

    @property
    def rootfs(self) -> str:
        return os.path.join(self.directory, "rootfs.img")

    @property
    def kernel(self) -> str:
        return os.path.join(self.directory, "vmlinuz")

    @property
    def initrd(self) -> str:
        return os.path.join(self.directory, "initrd.img")


class ImageError(RuntimeError):
    pass


def harness_key(cache_dir: str = CACHE_DIR) -> str:
    """The harness's own ssh key (private key path), made once beside the images."""
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    path = os.path.join(cache_dir, KEY_NAME)
    if not os.path.isfile(path):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lxcexp-test-hosts", "-f", path], check=True
        )
    return path


def host_apt_settings() -> str:
    """The host's apt settings a guest needs to fetch from the same mirror (a snapshot
    mirror's old Release files, a proxy), as apt.conf text."""
    result = subprocess.run(["apt-config", "dump"], capture_output=True, text=True)
    keep = ("Acquire::Check-Valid-Until ", "Acquire::Check-Date ", "Acquire::http::Proxy ", "Acquire::https::Proxy ")
    return "".join(line + "\n" for line in result.stdout.splitlines() if line.startswith(keep))


def sources_for(release: str, mirror: str) -> str:
    security = mirror.rsplit("/", 1)[0] + "/debian-security" if mirror.endswith("/debian") else None
    lines = [f"deb {mirror} {release} main", f"deb {mirror} {release}-updates main"]
    if security:
        lines.append(f"deb {security} {release}-security main")
    return "\n".join(lines) + "\n"


def recipe_text(release: str, mirror: str, public_key: str, apt_settings: str) -> str:
    """Everything an image is made of; its hash names the image in the cache."""
    parts = [str(RECIPE), release, mirror, public_key, apt_settings, " ".join(PACKAGES), GUEST_NETWORK_UNIT]
    return "\n".join([*parts, str(IMAGE_HEADROOM_BYTES)])


def image_for(release: str, cache_dir: str = CACHE_DIR) -> tuple[Image, str]:
    """The image's cache entry (maybe not built yet) and its recipe text."""
    mirror = aptsources.host_mirror(release)
    if mirror is None:
        raise ImageError("the host has no apt source to debootstrap from (/etc/apt/sources.list*)")
    with open(harness_key(cache_dir) + ".pub") as handle:
        public_key = handle.read().strip()
    recipe = recipe_text(release, mirror, public_key, host_apt_settings())
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return Image(release, os.path.join(cache_dir, f"{release}-{digest}"), mirror), recipe


def _run(command: list[str], log, **kwargs) -> None:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode != 0:
        raise ImageError(f"{' '.join(command[:3])} ... failed ({result.returncode}); see the build log")


@contextlib.contextmanager
def _proc_mounted(root: str):
    """/proc, /sys and /dev/pts in the chroot while packages install; always unmounted."""
    try:
        for fstype, target in (("proc", "proc"), ("sysfs", "sys"), ("devpts", "dev/pts")):
            os.makedirs(os.path.join(root, target), exist_ok=True)
            subprocess.run(["mount", "-t", fstype, fstype, os.path.join(root, target)], check=True)
        yield
    finally:
        stuck = _unmount_under(root)
        if stuck:
            raise ImageError(f"could not unmount {', '.join(stuck)}")


def _configure(root: str, release: str, mirror: str, public_key: str, apt_settings: str) -> None:
    write_in_root(root, "/etc/hostname", f"lxcexp-{release}\n")
    write_in_root(root, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 lxcexp-{release}\n")
    write_in_root(root, "/etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    write_in_root(root, "/etc/apt/sources.list", sources_for(release, mirror))
    write_in_root(root, "/etc/apt/apt.conf.d/99lxcexp-host", apt_settings)
    write_in_root(root, "/root/.ssh/authorized_keys", public_key + "\n", mode=0o600)
    os.chmod(os.path.join(root, "root/.ssh"), 0o700)
    write_in_root(root, "/etc/systemd/system/lxcexp-net.service", GUEST_NETWORK_UNIT)
    wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants")
    os.makedirs(wants, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.symlink("/etc/systemd/system/lxcexp-net.service", os.path.join(wants, "lxcexp-net.service"))
    # apt's timers would fetch on their own while tests run.
    for unit in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        with contextlib.suppress(FileExistsError):
            os.symlink("/dev/null", os.path.join(root, "etc/systemd/system", unit))


def _extract_boot_files(root: str, target: str) -> None:
    boot = os.path.join(root, "boot")
    kernels = sorted(name for name in os.listdir(boot) if name.startswith("vmlinuz-"))
    if not kernels:
        raise ImageError("no kernel in the image's /boot")
    version = kernels[-1].removeprefix("vmlinuz-")
    shutil.copy(os.path.join(boot, f"vmlinuz-{version}"), os.path.join(target, "vmlinuz"))
    shutil.copy(os.path.join(boot, f"initrd.img-{version}"), os.path.join(target, "initrd.img"))


def _tree_bytes(root: str) -> int:
    result = subprocess.run(["du", "-sxb", root], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[0])


def build(image: Image, recipe: str, progress=print) -> float:
    """Build `image` (debootstrap, packages, configuration, ext4); returns the seconds it took."""
    started = time.monotonic()
    mirror = image.mirror
    cache_dir = os.path.dirname(image.directory)
    work = tempfile.mkdtemp(prefix=f".build-{image.release}-", dir=cache_dir)
    root = os.path.join(work, "root")
    log_path = os.path.join(work, "build.log")
    try:
        with open(log_path, "w") as log:
            progress(f"test-hosts: building the {image.release} VM image from {mirror} (log: {log_path})")
            _run(["debootstrap", "--variant=minbase", "--components=main", image.release, root, mirror], log)
            apt_settings = host_apt_settings()
            with open(harness_key(cache_dir) + ".pub") as handle:
                public_key = handle.read().strip()
            _configure(root, image.release, mirror, public_key, apt_settings)
            # No service starts inside the chroot on the host.
            write_in_root(root, "/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", mode=0o755)
            shutil.copy("/etc/resolv.conf", os.path.join(root, "etc/resolv.conf"))
            with _proc_mounted(root):
                _run(["chroot", root, "apt-get", "update", "-q"], log)
                install = ["chroot", root, "apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
                _run(install, log)
                _run(["chroot", root, "apt-get", "clean"], log)
            os.unlink(os.path.join(root, "usr/sbin/policy-rc.d"))
            write_in_root(root, "/etc/resolv.conf", "")
            _extract_boot_files(root, work)
            size = _tree_bytes(root) + IMAGE_HEADROOM_BYTES
            rootfs = os.path.join(work, "rootfs.img")
            with open(rootfs, "wb") as handle:
                handle.truncate(size)
            _run(["mkfs.ext4", "-q", "-F", "-L", "lxcexp-root", "-d", root, rootfs], log)
            shutil.rmtree(root)
            with open(os.path.join(work, "recipe.txt"), "w") as handle:
                handle.write(recipe)
        os.rename(work, image.directory)
    except BaseException:
        with contextlib.suppress(ImageError):
            _unmount_under(root)
        if not _unmount_under(work):
            kept = os.path.join(cache_dir, f"failed-{image.release}-build.log")
            with contextlib.suppress(OSError):
                shutil.copy(log_path, kept)
                progress(f"test-hosts: the failed build's log is kept in {kept}")
            shutil.rmtree(work, ignore_errors=True)
        raise
    return time.monotonic() - started


def cached_image(release: str, progress=print) -> tuple[Image, float | None]:
    """The release's image, built if the cache has none for this recipe; and the build's
    seconds (None when it came from the cache)."""
    image, recipe = image_for(release)
    if os.path.isfile(image.rootfs):
        return image, None
    return image, build(image, recipe, progress)
