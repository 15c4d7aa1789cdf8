"""`lxcexp build-lxc SOURCE [--ref REF] [--prefix DIR]`: build LXC from source into a prefix, cached per commit.

SOURCE is a git tree, a git bundle or a tarball of LXC's source. A git tree or bundle is
built at the commit REF names (default: HEAD); what is built is always a commit, never
uncommitted changes. The build is meson's, with options that work on a minimal host
(no docs, man pages, tests, examples, init files, PAM, AppArmor, SELinux, OpenSSL, D-Bus
or io_uring; each passed only if the tree declares it), `--libdir=lib`, and an rpath to
`<prefix>/lib` so the build's own tools load its own liblxc.

Cache: /var/cache/lxcexp/lxc-builds/<commit>/ is the prefix (a tarball: tar-<sha256>/),
installed through a staging directory and renamed into place, so a prefix that exists is
complete; a second call is a lookup. `lxcexp-build.json` in the prefix records the
source, ref, commit and `git describe`, which --ve-lxc reports. A bundle's objects are
kept in a bare mirror beside the builds (sources/), fetched again on each call.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .builds import BUILD_INFO, sha256_of

CACHE = "/var/cache/lxcexp/lxc-builds"
# Each is passed only if the tree's meson options declare it (they differ between 5.0 and 6.0).
MESON_OPTIONS = {
    "man": "false",
    "api-docs": "false",
    "examples": "false",
    "tests": "false",
    "init-script": "[]",
    "install-init-files": "false",
    "install-state-dirs": "false",
    "specfile": "false",
    "pam-cgroup": "false",
    "apparmor": "false",
    "selinux": "false",
    "openssl": "false",
    "dbus": "false",
    "sd-bus": "disabled",
    "io-uring-event-loop": "false",
}
# The Debian packages the build needs (the Makefile's apt list holds them too).
BUILD_PACKAGES = ("meson", "ninja-build", "pkg-config", "gcc", "libcap-dev", "libseccomp-dev")

Progress = Callable[[str], None]


class BuildError(RuntimeError):
    """A build that could not be done; the message says which step and why."""


@dataclass(frozen=True)
class Source:
    kind: str  # "git", "bundle" or "tarball"
    path: str


def classify(path: str) -> Source:
    path = os.path.abspath(path)
    if os.path.isdir(path):
        if subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
            raise BuildError(f"SOURCE: {path} is a directory but not a git tree")
        return Source("git", path)
    if not os.path.isfile(path):
        raise BuildError(f"SOURCE: {path} does not exist")
    with open(path, "rb") as handle:
        head = handle.read(32)
    if head.startswith(b"# v2 git bundle") or head.startswith(b"# v3 git bundle"):
        return Source("bundle", path)
    if tarfile.is_tarfile(path):
        return Source("tarball", path)
    raise BuildError(f"SOURCE: {path} is neither a git tree, a git bundle nor a tarball")


def _git(*args: str, cwd: str | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1] if done.stderr else 'failed'}")
    return done.stdout.strip()


def _mirror(bundle: str, cache: str) -> str:
    """A bare repository holding the bundle's objects and refs (fetched anew: the bundle may have grown)."""
    mirror = os.path.join(cache, "sources", hashlib.sha256(bundle.encode()).hexdigest()[:16] + ".git")
    if not os.path.isdir(mirror):
        os.makedirs(os.path.dirname(mirror), exist_ok=True)
        aside = f"{mirror}.{os.getpid()}"
        _git("init", "-q", "--bare", aside)
        os.replace(aside, mirror)
    _git("-C", mirror, "fetch", "-q", "--force", bundle, "+refs/*:refs/*")
    return mirror


@dataclass(frozen=True)
class Resolved:
    key: str  # the cache entry's name: the commit, or tar-<sha256> for a tarball
    commit: str | None
    describe: str | None
    repository: str | None  # where `git archive` finds the commit


def resolve(source: Source, ref: str | None, cache: str) -> Resolved:
    if source.kind == "tarball":
        if ref:
            raise BuildError("--ref: a tarball holds one tree; --ref is for a git tree or bundle")
        return Resolved(f"tar-{sha256_of(source.path)[:16]}", None, None, None)
    repository = source.path if source.kind == "git" else _mirror(source.path, cache)
    commit = _git("-C", repository, "rev-parse", "--verify", "--quiet", f"{ref or 'HEAD'}^{{commit}}")
    describe = subprocess.run(
        ["git", "-C", repository, "describe", "--tags", "--always", commit], capture_output=True, text=True
    ).stdout.strip()
    return Resolved(commit, commit, describe or None, repository)


def _unpack(source: Source, resolved: Resolved, into: str) -> str:
    """The source tree at the commit (or the tarball's), in `into`; returns its top directory.
    GNU tar extracts (it refuses members that leave the directory)."""
    os.makedirs(into)
    if resolved.repository is not None:
        archive = subprocess.Popen(["git", "-C", resolved.repository, "archive", resolved.key], stdout=subprocess.PIPE)
        untar = subprocess.run(["tar", "-x", "-C", into], stdin=archive.stdout, capture_output=True, text=True)
        if archive.wait() != 0 or untar.returncode != 0:
            raise BuildError(f"git archive {resolved.key} | tar -x failed: {untar.stderr.strip()}")
        return into
    untar = subprocess.run(["tar", "-x", "-f", source.path, "-C", into], capture_output=True, text=True)
    if untar.returncode != 0:
        raise BuildError(f"SOURCE: tar -x -f {source.path} failed: {untar.stderr.strip()}")
    tops = [os.path.join(into, name) for name in os.listdir(into)]
    for top in [into, *tops]:
        if os.path.isfile(os.path.join(top, "meson.build")):
            return top
    raise BuildError(f"SOURCE: {source.path} holds no meson.build at its top (is it LXC's source?)")


def declared_options(tree: str) -> set[str]:
    found: set[str] = set()
    for name in ("meson_options.txt", "meson.options"):
        with contextlib.suppress(OSError), open(os.path.join(tree, name)) as handle:
            found |= set(re.findall(r"option\(\s*'([^']+)'", handle.read()))
    return found


def meson_setup_args(tree: str, prefix: str) -> list[str]:
    declared = declared_options(tree)
    if not declared:
        raise BuildError(f"{tree} declares no meson options: not an LXC tree that builds with meson (LXC 5.0 or later)")
    options = [f"-D{name}={value}" for name, value in MESON_OPTIONS.items() if name in declared]
    # No LTO (faster, and the same code for every build); an rpath so its tools load their own liblxc.
    return [
        f"--prefix={prefix}",
        "--libdir=lib",
        "--buildtype=release",
        "-Db_lto=false",
        f"-Dc_link_args=-Wl,-rpath,{prefix}/lib",
        *options,
    ]


def _run(argv: list[str], cwd: str, log: str, progress: Progress, step: str) -> None:
    """Run a build step, its output to the log; ninja's [n/m] lines become progress every tenth."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        process = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert process.stdout is not None
        said = -1
        try:
            for line in process.stdout:
                out.write(line)
                if match := re.match(r"\[(\d+)/(\d+)\]", line):
                    done, total = int(match.group(1)), int(match.group(2))
                    if done * 10 // total > said:
                        said = done * 10 // total
                        progress(f"build-lxc: {step}: {done}/{total}")
        except BaseException:
            # Ctrl-C or SIGTERM: no compiler left writing into the work tree being removed.
            process.kill()
            process.wait()
            raise
        if process.wait() != 0:
            raise BuildError(f"{step} failed (exit {process.returncode}); see {log}")


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """One build per cache entry at a time: a second call waits, then finds it built."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _built(prefix: str, key: str) -> bool:
    try:
        with open(os.path.join(prefix, BUILD_INFO)) as handle:
            return json.load(handle).get("key") == key
    except (OSError, ValueError):
        return False


def require_build_tools() -> None:
    missing = [tool for tool in ("git", "meson", "ninja", "gcc", "pkg-config") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"missing {', '.join(missing)}: apt-get install {' '.join(BUILD_PACKAGES)} (or make deps)")


def build_lxc(
    source_path: str, ref: str | None = None, prefix: str | None = None, cache: str = CACHE, progress: Progress = print
) -> str:
    """Build (or find built) LXC from `source_path` at `ref`; returns the prefix."""
    require_build_tools()
    source = classify(source_path)
    os.makedirs(cache, mode=0o755, exist_ok=True)
    resolved = resolve(source, ref, cache)
    prefix = os.path.abspath(prefix) if prefix else os.path.join(cache, resolved.key)
    with _locked(os.path.join(cache, f".{hashlib.sha256(prefix.encode()).hexdigest()[:16]}.lock")):
        if _built(prefix, resolved.key):
            progress(f"build-lxc: {resolved.describe or resolved.key} is built already in {prefix}")
            return prefix
        if os.path.lexists(prefix) and os.listdir(prefix):
            raise BuildError(f"--prefix: {prefix} exists and holds something else than this build; give an empty one")
        began = time.monotonic()
        progress(f"build-lxc: building {resolved.describe or resolved.key} ({source.kind} {source.path}) into {prefix}")
        with tempfile.TemporaryDirectory(prefix="lxcexp-build-lxc-", dir=cache) as work:
            tree = _unpack(source, resolved, os.path.join(work, "src"))
            log = os.path.join(cache, f"{resolved.key}.log")
            with open(log, "w"):
                pass
            progress("build-lxc: meson setup")
            _run(
                ["meson", "setup", os.path.join(work, "build"), *meson_setup_args(tree, prefix)],
                tree,
                log,
                progress,
                "meson setup",
            )
            _run(["ninja", "-C", os.path.join(work, "build")], tree, log, progress, "compiling")
            staging = os.path.join(work, "staging")
            progress("build-lxc: installing")
            env_install = ["env", f"DESTDIR={staging}", "meson", "install", "-C", os.path.join(work, "build")]
            _run(env_install, tree, log, progress, "meson install")
            staged = os.path.join(staging, prefix.lstrip("/"))
            # Its global config directory: where the tool binds its lxc.conf for this build.
            os.makedirs(os.path.join(staged, "etc", "lxc"), exist_ok=True)
            info = {
                "key": resolved.key,
                "source": source.path,
                "kind": source.kind,
                "ref": ref,
                "commit": resolved.commit,
                "describe": resolved.describe,
                "meson_setup": meson_setup_args(tree, prefix),
                "built_at": time.time(),
                "build_seconds": round(time.monotonic() - began, 1),
            }
            with open(os.path.join(staged, BUILD_INFO), "w") as handle:
                json.dump(info, handle, indent=2)
            if os.path.isdir(prefix):
                os.rmdir(prefix)  # empty, checked above
            os.makedirs(os.path.dirname(prefix), exist_ok=True)
            shutil.move(staged, prefix)  # a rename within the cache: a prefix that exists is complete
        progress(f"build-lxc: built in {time.monotonic() - began:.0f} s; log: {log}")
    return prefix
