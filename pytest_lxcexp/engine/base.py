"""Base root filesystems, and how one is installed into the experiment root.

    busybox              built offline from the host's busybox-static; cached as a directory
    debian               debootstrap (minbase + systemd, iproute2, iputils-ping) from --ve-mirror,
                         cached as a tarball in the cache directory, reused until --ve-base-refresh
    PATH                 a root filesystem directory or tarball of the user's, copied
    lxc:NAME[@LXCPATH]   the root filesystem of an existing, stopped LXC container, copied

The cache holds only what does not depend on the run. The workload script, its
parameters, the init's service files, an ssh key and an apt proxy go into the copy
in the experiment root. Every write into a base goes through `resolve_in_root`: a
base's absolute symlinks point into the base, never at the host's own files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator

from .config import LXC_BASE_PREFIX, ConfigError, ExperimentConfig
from .storage import Layout, lock_file, mounts, umount
from .workload import (
    BUSYBOX_INITTAB,
    ENV_PATH,
    INIT_PATH,
    INIT_SCRIPT,
    SYSTEM_INIT_PATH,
    SYSTEMD_UNIT,
    SYSTEMD_UNIT_TEXT,
    env_for,
)

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
BUSYBOX_BASE_VERSION = 2  # v2: the workload is installed per run, not cached
ROOTFS_DIRS = ("bin", "sbin", "etc/lxcexp", "proc", "sys", "dev", "tmp", "run", "root", "var/log/lxcexp")

# Bump when the debian recipe changes: the cached tarball's name carries it.
DEBIAN_RECIPE = 1
DEBIAN_INCLUDE = ("systemd", "systemd-sysv", "iproute2", "iputils-ping")
# apt's daily timers fetch from the mirror; VEs talk only to the project's own bridges.
DEBIAN_MASKED_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer")
DEBOOTSTRAP_SCRIPTS = "/usr/share/debootstrap/scripts"
APT_PROXY_FILE = "etc/apt/apt.conf.d/01lxcexp-proxy"
MAX_SYMLINK_HOPS = 40

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class BaseError(RuntimeError):
    """The base image cannot be built, found or prepared; the message says why."""


# -- writing inside a root filesystem -----------------------------------------------


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def resolve_in_root(root: str, path: str, create: bool = False) -> str:
    """The host path of `path` as a process chrooted into `root` would see it.

    Symlinks are followed with `root` as "/" and `..` stops at `root`, so the result
    always lies inside `root`. With create=True, missing directories are made (0755).
    """
    root = os.path.abspath(root)
    parts = _split(path)
    resolved = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = root if resolved == root else os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, part)
        if os.path.islink(candidate):
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise BaseError(f"too many symlinks resolving {path} inside {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = root
            parts = _split(target) + parts
            continue
        if create and not os.path.lexists(candidate):
            os.mkdir(candidate, 0o755)
        resolved = candidate
    return resolved


def _parent_in_root(root: str, path: str) -> tuple[str, str]:
    directory, name = os.path.split(path.rstrip("/"))
    return resolve_in_root(root, directory, create=True), name


def write_in_root(root: str, path: str, content: str, mode: int = 0o644) -> str:
    """Write a regular file at `path` inside `root`, replacing a symlink there rather than following it."""
    parent, name = _parent_in_root(root, path)
    target = os.path.join(parent, name)
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)
    os.chmod(target, mode)  # not subject to the umask
    return target


def symlink_in_root(root: str, path: str, points_to: str) -> None:
    parent, name = _parent_in_root(root, path)
    target = os.path.join(parent, name)
    if os.path.islink(target) or os.path.isfile(target):
        os.unlink(target)
    os.symlink(points_to, target)


def remove_in_root(root: str, path: str) -> None:
    parent = resolve_in_root(root, os.path.dirname(path.rstrip("/")))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(parent, os.path.basename(path.rstrip("/"))))


def exists_in_root(root: str, path: str) -> bool:
    return os.path.lexists(resolve_in_root(root, path))


def init_flavour(root: str) -> str | None:
    """'systemd', 'busybox' or None: what the base's /sbin/init is."""
    path = resolve_in_root(root, SYSTEM_INIT_PATH)
    if not os.path.isfile(path):
        return None
    name = os.path.basename(path)
    if name == "systemd":
        return "systemd"
    if name == "busybox":
        return "busybox"
    return "other"


# -- busybox ------------------------------------------------------------------------


def find_static_busybox(given: str = "") -> str:
    """The busybox to build the base from: `given` (--ve-busybox), else the host's busybox-static.
    Raises ConfigError naming the option: it is checked before anything is created."""
    if given:
        if not os.path.isfile(given) or not os.access(given, os.X_OK):
            raise ConfigError("--ve-busybox", f"{given} is not an executable file")
        if not _is_static(given):
            raise ConfigError("--ve-busybox", f"{given} is dynamically linked; a VE has none of the host's libraries")
        return given
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path) and _is_static(path):
            return path
    raise ConfigError(
        "--ve-base", "busybox: no static busybox on this host (apt-get install busybox-static, or give --ve-busybox)"
    )


def busybox_applets(busybox: str) -> list[str]:
    try:
        listed = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError("--ve-busybox", f"{busybox} --list failed: {error}") from None
    if listed.returncode != 0 or not listed.stdout.split():
        raise ConfigError("--ve-busybox", f"{busybox} --list lists no applets: is it busybox?")
    return listed.stdout.split()


def _is_static(path: str) -> bool:
    # A dynamic busybox would need the host's libraries inside the VE.
    with open(path, "rb") as handle:
        head = handle.read(4096)  # PT_INTERP, if any, sits near the start
    return b"ld-linux" not in head and b"ld-musl" not in head


def _cache_key(busybox: str) -> str:
    digest = hashlib.sha256()
    with open(busybox, "rb") as handle:
        digest.update(handle.read())
    return f"busybox-v{BUSYBOX_BASE_VERSION}-{digest.hexdigest()[:12]}"


def build_busybox_rootfs(target: str, busybox: str) -> None:
    """Write a minimal root filesystem: busybox, its applets, a few files in /etc."""
    for directory in ROOTFS_DIRS:
        os.makedirs(os.path.join(target, directory), exist_ok=True)
    os.chmod(os.path.join(target, "tmp"), 0o1777)
    shutil.copy2(busybox, os.path.join(target, "bin", "busybox"))
    for applet in busybox_applets(busybox):
        if applet in ("busybox", "[[", "linuxrc") or "/" in applet:
            continue
        link = os.path.join(target, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    files = {
        "etc/passwd": "root:x:0:0:root:/root:/bin/sh\n",
        "etc/group": "root:x:0:\n",
        "etc/hosts": "127.0.0.1 localhost\n",
        "etc/hostname": "ve\n",
    }
    for name, content in files.items():
        with open(os.path.join(target, name), "w") as handle:
            handle.write(content)


def cached_busybox_base(cache_dir: str, refresh: bool = False, busybox: str = "") -> str:
    """Return the cached rootfs directory, building it once (or again on refresh), from `busybox`
    (default: the host's busybox-static); a cache entry per binary."""
    busybox = find_static_busybox(busybox)
    final = os.path.join(cache_dir, _cache_key(busybox), "rootfs")
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    # One build (or refresh) at a time across runs: a refresh must not remove the rootfs
    # another run is building, nor two runs rename over each other.
    with _cache_lock(os.path.dirname(final) + ".lock"):
        if refresh and os.path.isdir(os.path.dirname(final)):
            shutil.rmtree(os.path.dirname(final))
        if os.path.isdir(final):
            return final
        building = final + f".building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        os.makedirs(os.path.dirname(final), mode=0o755, exist_ok=True)
        try:
            build_busybox_rootfs(building, busybox)
            os.rename(building, final)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
    return final


# -- debian (debootstrap) -----------------------------------------------------------


def host_arch() -> str:
    """The host's Debian architecture (the debian base's); checked before anything is created."""
    dpkg = shutil.which("dpkg")
    if dpkg is None:
        raise ConfigError("--ve-base", "debian: the host has no dpkg (the debian base needs a Debian-family host)")
    result = subprocess.run([dpkg, "--print-architecture"], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        raise ConfigError("--ve-base", "debian: dpkg --print-architecture failed (it needs a Debian-family host)")
    return result.stdout.strip()


def debian_tarball_path(cache_dir: str, release: str, mirror: str, arch: str | None = None) -> str:
    """The cached tarball's path: named by release and architecture, keyed by mirror and recipe."""
    recipe = f"{DEBIAN_RECIPE} {release} {mirror} {','.join(DEBIAN_INCLUDE)}"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f"debian-{release}-{arch or host_arch()}-{digest}.tar")


@contextlib.contextmanager
def _cache_lock(path: str) -> Iterator[None]:
    """One build per tarball at a time, across processes (xdist workers, parallel runs)."""
    handle = lock_file(path, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if handle is not None:
            handle.close()


def _unmount_under(path: str) -> list[str]:
    """Unmount whatever a (failed) debootstrap left mounted under path; returns what stayed."""
    prefix = path.rstrip("/") + "/"
    for entry in sorted(mounts(), key=lambda m: len(m["target"]), reverse=True):
        if entry["target"].startswith(prefix):
            with contextlib.suppress(Exception):
                umount(entry["target"], lazy=True)
    return [entry["target"] for entry in mounts() if entry["target"].startswith(prefix)]


def _remove_build_dir(path: str) -> None:
    if not os.path.lexists(path):
        return
    # Never delete across a mount: a bind-mounted /dev or /proc would take the host's with it.
    stuck = _unmount_under(path)
    if stuck:
        raise BaseError(f"cannot remove {path}: still mounted: {', '.join(stuck)}")
    shutil.rmtree(path)


def _prepare_debian_tree(root: str) -> None:
    """Make a fresh debootstrap tree a VE base: small, keeps the VE's name, reaches nothing outside."""
    # Without /etc/hostname systemd keeps the name LXC gives each VE (lxc.uts.name).
    remove_in_root(root, "/etc/hostname")
    # No name service: nothing in a VE should look beyond the project's bridges.
    write_in_root(root, "/etc/resolv.conf", "")
    for unit in DEBIAN_MASKED_UNITS:
        symlink_in_root(root, f"/etc/systemd/system/{unit}", "/dev/null")
    archives = resolve_in_root(root, "/var/cache/apt/archives")
    if os.path.isdir(archives):
        for name in os.listdir(archives):
            if name.endswith(".deb"):
                os.unlink(os.path.join(archives, name))


def build_debian_tarball(target: str, release: str, mirror: str, progress: Progress = _quiet) -> None:
    """debootstrap into a directory beside the target, prepare it, tar it up as `target`."""
    build_dir = target + f".building-{os.getpid()}"
    tmp = target + f".tmp-{os.getpid()}"
    log_path = target + ".debootstrap.log"
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_INCLUDE)}",
        "--components=main",
        release,
        build_dir,
        mirror,
    ]
    progress(f"lxcexp: building the debian {release} base from {mirror} (debootstrap; cached afterwards)")
    try:
        _remove_build_dir(build_dir)
        with open(log_path, "w") as log:
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
            result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            with open(log_path, errors="replace") as log:
                tail = " | ".join(log.read().splitlines()[-3:])
            raise BaseError(
                f"debootstrap {release} from {mirror} failed ({result.returncode}): {tail} (see {log_path})"
            )
        stuck = _unmount_under(build_dir)
        if stuck:
            raise BaseError(f"debootstrap left mounts behind: {', '.join(stuck)}")
        _prepare_debian_tree(build_dir)
        tar = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-C", build_dir, "-cf", tmp, "."]
        result = subprocess.run(tar, capture_output=True, text=True)
        if result.returncode != 0:
            raise BaseError(f"packing the debian base failed: {result.stderr.strip()[-300:]}")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        _remove_build_dir(build_dir)
    progress(f"lxcexp: debian base cached in {target}")


def cached_debian_tarball(
    cache_dir: str, release: str, mirror: str, refresh: bool = False, progress: Progress = _quiet
) -> str:
    """The cached debian tarball, built once (or again with refresh)."""
    os.makedirs(cache_dir, mode=0o755, exist_ok=True)
    target = debian_tarball_path(cache_dir, release, mirror)
    with _cache_lock(target + ".lock"):
        if refresh or not os.path.isfile(target):
            build_debian_tarball(target, release, mirror, progress)
    return target


# -- an existing LXC container --------------------------------------------------------


def split_lxc_base(base: str) -> tuple[str, str]:
    """'lxc:NAME[@LXCPATH]' -> (NAME, LXCPATH), LXCPATH defaulting to LXC's own (lxc-config lxc.lxcpath)."""
    name, _, lxcpath = base[len(LXC_BASE_PREFIX) :].partition("@")
    if not lxcpath:
        result = subprocess.run(["lxc-config", "lxc.lxcpath"], capture_output=True, text=True)
        lxcpath = result.stdout.strip() or "/var/lib/lxc"
    return name, lxcpath


# Seconds lxc-info may take to tell a base container's state: milliseconds, unless its monitor is stuck.
LXC_INFO_TIMEOUT = 30.0


def lxc_container_rootfs(base: str) -> str:
    """The root filesystem directory of an existing, stopped container; ConfigError naming --ve-base otherwise."""
    name, lxcpath = split_lxc_base(base)
    config_path = os.path.join(lxcpath, name, "config")
    try:
        with open(config_path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        raise ConfigError("--ve-base", f"no LXC container {name} in {lxcpath} ({config_path} cannot be read)") from None
    rootfs = None
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() in ("lxc.rootfs.path", "lxc.rootfs"):
            rootfs = value.strip()
    if not rootfs:
        raise ConfigError("--ve-base", f"container {name} sets no lxc.rootfs.path")
    if rootfs.startswith("dir:"):
        rootfs = rootfs[len("dir:") :]
    if not rootfs.startswith("/"):
        raise ConfigError("--ve-base", f"container {name}'s rootfs {rootfs!r} is not a directory (only dir:)")
    if not os.path.isdir(rootfs):
        raise ConfigError("--ve-base", f"container {name}'s rootfs {rootfs} does not exist")
    try:
        state = subprocess.run(
            ["lxc-info", "-P", lxcpath, "-n", name, "-s", "-H"],
            capture_output=True,
            text=True,
            timeout=LXC_INFO_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        # liblxc asks a running container's monitor, and waits on it without a deadline.
        raise ConfigError(
            "--ve-base",
            f"container {name}: lxc-info had no answer in {LXC_INFO_TIMEOUT:g} s (its LXC monitor may be stuck); "
            "stop it first",
        ) from None
    if "STOPPED" not in state.stdout:
        # A running container's files change under the copy: the base would be inconsistent.
        raise ConfigError("--ve-base", f"container {name} is {state.stdout.strip() or 'not stopped'}; stop it first")
    return rootfs


# -- checks before anything is created ------------------------------------------------


def base_kind(base: str) -> str:
    """busybox, debian, lxc, directory or tarball."""
    if base in ("busybox", "debian"):
        return base
    if base.startswith(LXC_BASE_PREFIX):
        return "lxc"
    return "directory" if os.path.isdir(base) else "tarball"


def _check_tree(root: str, config: ExperimentConfig) -> None:
    if not exists_in_root(root, "/bin/sh"):
        raise ConfigError("--ve-base", f"{root} has no /bin/sh to run the workload with")
    if config.init == "system" and init_flavour(root) not in ("systemd", "busybox"):
        raise ConfigError("--ve-init", f"system: {root}'s /sbin/init is neither systemd nor busybox")


def check_base(config: ExperimentConfig) -> None:
    """Read-only: can this base be had? Raises ConfigError naming the option."""
    kind = base_kind(config.base)
    if kind == "busybox":
        busybox_applets(find_static_busybox(config.busybox))
    elif kind == "debian":
        tarball = debian_tarball_path(config.base_cache, config.base_release, config.mirror)
        cached = os.path.isfile(tarball)
        # An uncompressed tarball is about the size of the tree it holds, which must fit the tmpfs.
        if cached and os.path.getsize(tarball) > config.tmpfs_size * 0.8:
            raise ConfigError(
                "--ve-tmpfs-size",
                f"the debian base takes about {os.path.getsize(tarball) // 2**20}M; the tmpfs needs more room",
            )
        if config.base_refresh or not cached:
            if shutil.which("debootstrap") is None:
                raise ConfigError("--ve-base", "debian is built with debootstrap: apt-get install debootstrap")
            if not os.path.exists(os.path.join(DEBOOTSTRAP_SCRIPTS, config.base_release)):
                raise ConfigError("--ve-base-release", f"debootstrap knows no release {config.base_release!r}")
    elif kind == "lxc":
        _check_tree(lxc_container_rootfs(config.base), config)
    elif kind == "directory":
        _check_tree(config.base, config)
    elif kind == "tarball" and not os.path.isfile(config.base):
        raise ConfigError("--ve-base", f"{config.base} does not exist")
    if config.ssh_key and not os.path.isfile(config.ssh_key):
        raise ConfigError("--ve-ssh-key", f"{config.ssh_key} does not exist")


# -- installing into the experiment root ----------------------------------------------


def _extract(tarball: str, target: str) -> None:
    os.makedirs(target, mode=0o755)
    # GNU tar detects the compression itself, keeps owners by number and refuses `..` members.
    command = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball, "-C", target]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BaseError(f"extracting {tarball} failed: {result.stderr.strip()[-300:]}")


def _copy_tree(source: str, target: str) -> None:
    # cp -a keeps owners, modes, hard links, device nodes and xattrs, which copytree does not.
    result = subprocess.run(["cp", "-a", "--no-target-directory", source, target], capture_output=True, text=True)
    if result.returncode != 0:
        raise BaseError(f"copying {source} failed: {result.stderr.strip()[-300:]}")


def configure_base(root: str, config: ExperimentConfig) -> None:
    """Put the run's workload, its parameters and the chosen extras into an installed base."""
    write_in_root(root, INIT_PATH, config.workload_script or INIT_SCRIPT, 0o755)
    write_in_root(root, "/" + ENV_PATH, env_for(config))
    resolve_in_root(root, "/var/log/lxcexp", create=True)
    if not exists_in_root(root, "/bin/sh"):
        raise BaseError(f"the base has no /bin/sh to run {INIT_PATH} with")
    if config.init == "system":
        if config.base == "busybox":
            symlink_in_root(root, SYSTEM_INIT_PATH, "/bin/busybox")
        flavour = init_flavour(root)
        if flavour == "systemd":
            write_in_root(root, f"/etc/systemd/system/{SYSTEMD_UNIT}", SYSTEMD_UNIT_TEXT)
            symlink_in_root(root, f"/etc/systemd/system/multi-user.target.wants/{SYSTEMD_UNIT}", f"../{SYSTEMD_UNIT}")
        elif flavour == "busybox":
            write_in_root(root, "/etc/inittab", BUSYBOX_INITTAB)
        else:
            raise BaseError("--ve-init=system: the base's /sbin/init is neither systemd nor busybox")
        # The distribution's init would name every VE after /etc/hostname; LXC names each.
        remove_in_root(root, "/etc/hostname")
    if config.ssh_key:
        with open(config.ssh_key) as handle:
            keys = handle.read()
        ssh_dir = resolve_in_root(root, "/root/.ssh", create=True)
        os.chmod(ssh_dir, 0o700)  # sshd refuses keys in a directory others can write
        write_in_root(root, "/root/.ssh/authorized_keys", keys if keys.endswith("\n") else keys + "\n", 0o600)
    if config.apt_proxy:
        if not os.path.isdir(resolve_in_root(root, "/etc/apt")):
            raise BaseError("--ve-apt-proxy: the base has no /etc/apt")
        write_in_root(root, "/" + APT_PROXY_FILE, f'Acquire::http::Proxy "{config.apt_proxy}";\n')


def install_base(layout: Layout, config: ExperimentConfig, progress: Progress = _quiet) -> str:
    """Copy the (cached) base into the experiment root and configure the run's workload in it."""
    target = layout.base_rootfs
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    kind = base_kind(config.base)
    if kind == "busybox":
        busybox = cached_busybox_base(config.base_cache, config.base_refresh, config.busybox)
        shutil.copytree(busybox, target, symlinks=True)
    elif kind == "debian":
        tarball = cached_debian_tarball(
            config.base_cache, config.base_release, config.mirror, config.base_refresh, progress
        )
        _extract(tarball, target)
    elif kind == "tarball":
        _extract(config.base, target)
    elif kind == "lxc":
        _copy_tree(lxc_container_rootfs(config.base), target)
    else:
        _copy_tree(config.base, target)
    configure_base(target, config)
    return target
