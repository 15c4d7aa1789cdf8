"""LXC builds (--ve-lxc): which lxc-start and liblxc start each VE, and the proof that they did.

A build is a prefix an LXC was installed into (`meson install`, or `lxcexp build-lxc`), or
`system`, the distribution's. What a build is, is found from the build itself:

- its `lxc-start` is `<prefix>/bin/lxc-start` (system: the one in the system's own PATH,
  never the user's, which may lead to a prefix);
- its liblxc is the one that `lxc-start` loads with the library path the tool sets
  (meson installs no rpath: `<prefix>/lib...`, the directory holding `liblxc.so.1`);
  asked of the dynamic loader itself (LD_TRACE_LOADED_OBJECTS), not guessed;
- its global config path is the one compiled into that liblxc (LXC_GLOBAL_CONF, an
  absolute `.../lxc.conf` string in the library): `<prefix>/etc/lxc` for a meson build
  under a prefix, `/etc/lxc` for the distribution's. The starters show liblxc the tool's
  lxc.conf there (cgroups.py), so every build gets identical cgroup placement;
- `git describe` and the commit, when build-lxc wrote them into the prefix (BUILD_INFO).

A build may carry an LD_PRELOAD library (`NAME=PREFIX+preload:LIB`): the same LXC with,
say, a shim that slows mount() down on purpose, run as a build of its own.

The proof (check_first_ve): the first VE each build starts is looked at while it runs:
the liblxc its LXC monitor maps (/proc/PID/maps) must be the build's, its preload must be
mapped, and the cgroups its init got (/proc/PID/cgroup) must be those the tool asked for.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .config import LXC_OPTION as OPTION
from .config import LXC_SYSTEM as SYSTEM
from .config import BuildSpec, ConfigError, parse_build_spec

# The distribution's own PATH: a user's PATH may put a prefix build's lxc-start first.
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# Written by `lxcexp build-lxc` into the prefix it installs.
BUILD_INFO = "lxcexp-build.json"
# The loader's environment: a build sets its own, and none of the user's may leak into another build.
LOADER_VARIABLES = ("LD_LIBRARY_PATH", "LD_PRELOAD")


@dataclass(frozen=True)
class LXCBuild:
    """A resolved build: what starts its VEs, what it loads, where it reads its global config."""

    name: str
    prefix: str
    lxc_start: str
    library: str  # the liblxc the loader resolves for its lxc-start, real path
    library_path: str | None  # LD_LIBRARY_PATH its starts get (None: the system's loader defaults)
    preload: str | None
    config_dir: str  # its global config directory (LXC_GLOBAL_CONF's), where the tool's lxc.conf goes
    version: str
    sha256: str
    rpath: bool  # its lxc-start finds its own liblxc without a library path
    git_describe: str | None = None
    commit: str | None = None
    preload_sha256: str | None = None

    def environment_changes(self) -> dict[str, str | None]:
        """The loader variables its starts run with (None: unset)."""
        return {"LD_LIBRARY_PATH": self.library_path, "LD_PRELOAD": self.preload}

    def to_dict(self) -> dict:
        return asdict(self)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _environment(changes: dict[str, str | None]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LOADER_VARIABLES}
    env.update({key: value for key, value in changes.items() if value})
    return env


def loaded_liblxc(lxc_start: str, changes: dict[str, str | None]) -> str | None:
    """The liblxc.so.1 the dynamic loader resolves for `lxc_start` with these variables (its real path)."""
    env = _environment(changes) | {"LD_TRACE_LOADED_OBJECTS": "1"}
    env.pop("LD_PRELOAD", None)  # the trace is about liblxc; a preload is checked in the monitor
    try:
        done = subprocess.run([lxc_start], env=env, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in done.stdout.splitlines():
        name, arrow, rest = line.strip().partition(" => ")
        if arrow and name.startswith("liblxc.so"):
            path = rest.split(" (")[0].strip()
            return os.path.realpath(path) if path.startswith("/") else None
    return None


def global_config_dir(library: str) -> str | None:
    """The directory of the global lxc.conf compiled into liblxc (its LXC_GLOBAL_CONF string).

    The library holds it as a constant: an absolute path ending in /lxc.conf (the other
    such strings are formats for unprivileged users, with % or ~ in them)."""
    with open(library, "rb") as handle:
        data = handle.read()
    found = {
        match.group(1).decode()
        for match in re.finditer(rb"(?<=\x00)(/[\x21-\x7e]{1,4000}?/lxc\.conf)(?=\x00)", data)
        if b"%" not in match.group(1)
    }
    return os.path.dirname(found.pop()) if len(found) == 1 else None


def _lxc_start_of(spec: BuildSpec) -> str:
    if spec.prefix == SYSTEM:
        for directory in SYSTEM_PATH.split(":"):
            path = os.path.join(directory, "lxc-start")
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise ConfigError(OPTION, f"{spec.name}: the system has no lxc-start in {SYSTEM_PATH} (apt-get install lxc)")
    if not os.path.isdir(spec.prefix):
        raise ConfigError(OPTION, f"{spec.name}: the prefix {spec.prefix} is not a directory")
    path = os.path.join(spec.prefix, "bin", "lxc-start")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ConfigError(OPTION, f"{spec.name}: {path} is missing or not executable: is {spec.prefix} an LXC prefix?")
    return path


def _library_path_of(spec: BuildSpec) -> str | None:
    """The directory holding the prefix's own liblxc.so.1 (meson: lib/ or lib/<triplet>/)."""
    if spec.prefix == SYSTEM:
        return None
    found = sorted(
        {
            os.path.dirname(path)
            for pattern in ("lib*/liblxc.so.1", "lib*/*/liblxc.so.1")
            for path in glob.glob(os.path.join(glob.escape(spec.prefix), pattern))
        }
    )
    if len(found) != 1:
        what = "no liblxc.so.1" if not found else f"several liblxc.so.1 ({', '.join(found)})"
        raise ConfigError(OPTION, f"{spec.name}: {spec.prefix} holds {what} under lib*/")
    return found[0]


def _build_info(prefix: str) -> dict:
    try:
        with open(os.path.join(prefix, BUILD_INFO)) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _version(lxc_start: str, changes: dict[str, str | None]) -> str:
    try:
        done = subprocess.run(
            [lxc_start, "--version"], env=_environment(changes), capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise ConfigError(OPTION, f"{lxc_start} --version could not run: {error}") from None
    version = done.stdout.strip()
    if done.returncode != 0 or not version:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(OPTION, f"{lxc_start} --version failed: {reason}")
    return version


def resolve_build(spec: BuildSpec) -> LXCBuild:
    """Find everything about one build from the build itself; ConfigError naming --ve-lxc if it is not one."""
    lxc_start = _lxc_start_of(spec)
    library_path = _library_path_of(spec)
    if spec.preload and not os.path.isfile(spec.preload):
        raise ConfigError(OPTION, f"{spec.name}: the preload library {spec.preload} does not exist")
    changes = {"LD_LIBRARY_PATH": library_path, "LD_PRELOAD": spec.preload}
    library = loaded_liblxc(lxc_start, changes)
    if library is None:
        raise ConfigError(OPTION, f"{spec.name}: the loader finds no liblxc for {lxc_start}")
    if library_path is not None and os.path.dirname(library) != os.path.realpath(library_path):
        raise ConfigError(OPTION, f"{spec.name}: {lxc_start} loads {library}, not its own liblxc in {library_path}")
    config_dir = global_config_dir(library)
    if config_dir is None:
        raise ConfigError(OPTION, f"{spec.name}: {library} names no single global config path (.../lxc.conf)")
    if not os.path.isdir(config_dir):
        # The tool's lxc.conf is bind-mounted there: it must exist (a missing one is not made in someone's prefix).
        raise ConfigError(
            OPTION, f"{spec.name}: its global config directory {config_dir} does not exist (mkdir -p {config_dir})"
        )
    rpath = spec.prefix == SYSTEM or loaded_liblxc(lxc_start, {}) == library
    info = _build_info(spec.prefix) if spec.prefix != SYSTEM else {}
    return LXCBuild(
        name=spec.name,
        prefix=spec.prefix,
        lxc_start=lxc_start,
        library=library,
        library_path=library_path,
        preload=spec.preload,
        config_dir=config_dir,
        version=_version(lxc_start, changes),
        sha256=sha256_of(library),
        rpath=rpath,
        git_describe=info.get("describe"),
        commit=info.get("commit"),
        preload_sha256=sha256_of(spec.preload) if spec.preload else None,
    )


def resolve_builds(specs: Iterable[str]) -> list[LXCBuild]:
    """The run's builds, in --ve-lxc order (none given: the system's alone)."""
    parsed = [parse_build_spec(text) for text in specs] or [BuildSpec(SYSTEM, SYSTEM)]
    return [resolve_build(spec) for spec in parsed]


def build_index(index: int, builds: int, round_number: int = 0) -> int:
    """Which build starts veN: interleaved in blocks of one VE per build, each block's order
    rotated by one (two builds: A B, B A, A B, ...), and each round shifted by one, so the
    build that starts first alternates.

    The rotation counterbalances the order within a block: the later VE of a block started a
    little later (+0.8% start latency at the median over 10,000 A/A pairs here), and with a
    fixed order that would all land on the candidate."""
    block, position = divmod(index - 1, builds)
    return (position + block + round_number) % builds


# LXC 7 dropped cgroup v1's keys (lxc.cgroup.<controller>.<key>; lxc.cgroup2.* and the
# lxc.cgroup.dir* placement keys stay): its lxc-start refuses a config holding one
# ("Unsupported config key"), so on a host with v1 controllers every VE of it would fail.
FIRST_MAJOR_WITHOUT_V1_KEYS = 7
_V1_KEY = re.compile(r"^lxc\.cgroup\.(?!dir\b|relative\b|use\b)([a-z_]+)\.", re.MULTILINE)
# Which option put each controller's v1 key into a VE's config, and what to give instead.
_V1_KEY_OPTIONS = {
    "pids": ("--ve-pids-max", "give --ve-pids-max=max,total:N (one budget for all VEs, the same for every build)"),
    "memory": ("--ve-memory-max", "give --ve-memory-max=max,total:SIZE (one limit for all VEs)"),
    "cpu": ("--ve-nice", "leave out --ve-nice"),
    "devices": ("--ve-cgroups", "leave devices out of --ve-cgroups"),
}


def major_version(build: LXCBuild) -> int | None:
    match = re.match(r"\s*(\d+)", build.version)
    return int(match.group(1)) if match else None


def refuse_v1_keys(lxc_builds: Iterable[LXCBuild], ve_config: str) -> None:
    """A usage error, before anything is made, when a build cannot read the v1 cgroup keys
    a VE's config holds on this host."""
    keys = _V1_KEY.findall(ve_config)
    without = [b for b in lxc_builds if (major_version(b) or 0) >= FIRST_MAJOR_WITHOUT_V1_KEYS]
    if not keys or not without:
        return
    option, instead = _V1_KEY_OPTIONS.get(keys[0], ("--ve-lxc", "leave that build out"))
    names = ", ".join(f"{b.name} (LXC {b.version})" for b in without)
    raise ConfigError(
        option,
        f"{names} has no cgroup v1 keys, and this host's {keys[0]} controller is cgroup v1, so its "
        f"lxc-start would refuse every VE's lxc.cgroup.{keys[0]} line: {instead}",
    )


# -- the proof ------------------------------------------------------------------------------


class BuildProofError(ConfigError):
    """A build did not run as asked (another liblxc, other cgroups): the run means nothing."""

    def __init__(self, reason: str) -> None:
        super().__init__(OPTION, reason)


def mapped_files(pid: int) -> set[str]:
    """The files mapped into a process (its /proc/PID/maps), by real path."""
    found = set()
    with open(f"/proc/{pid}/maps") as handle:
        for line in handle:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                found.add(os.path.realpath(parts[5].strip().removesuffix(" (deleted)")))
    return found


def own_cgroup_hierarchies(pid: int, own_path: str) -> frozenset[str]:
    """The hierarchies (by their controllers, "" for the unified one) in which the process
    sits in its VE's own cgroup `own_path` (or below it), from /proc/PID/cgroup."""
    found = set()
    with open(f"/proc/{pid}/cgroup") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if path == own_path or path.startswith(own_path + "/"):
                found.add(controllers)
    return frozenset(found)


@dataclass(frozen=True)
class Proof:
    """What the first VE of a build really ran with."""

    build: str
    ve: str
    monitor: int
    init: int
    liblxc: list[str]
    preload_mapped: bool | None
    cgroups: list[str]
    ok: bool
    differs: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def check_first_ve(
    build: LXCBuild, ve: str, monitor: int, init: int, own_path: str, expected: frozenset[str] | None
) -> Proof:
    """Prove from /proc that `ve`'s monitor maps the build's liblxc (and preload) and that its
    init got its own cgroups in exactly the `expected` hierarchies (None: not checked, the
    first build's placement is what later builds must match). Raises OSError if either process is gone."""
    mapped = mapped_files(monitor)
    liblxc = sorted(path for path in mapped if os.path.basename(path).startswith("liblxc.so"))
    preload = None if build.preload is None else os.path.realpath(build.preload) in mapped
    cgroups = own_cgroup_hierarchies(init, own_path)
    differs = []
    if liblxc != [build.library]:
        differs.append(f"its monitor maps {', '.join(liblxc) or 'no liblxc'}, not {build.library}")
    if preload is False:
        differs.append(f"its monitor does not map the preload {build.preload}")
    if expected is not None and cgroups != expected:
        differs.append(
            f"its init got cgroups of its own in {_hierarchies_text(cgroups)}, not {_hierarchies_text(expected)}"
        )
    return Proof(
        build=build.name,
        ve=ve,
        monitor=monitor,
        init=init,
        liblxc=liblxc,
        preload_mapped=preload,
        cgroups=sorted(cgroups),
        ok=not differs,
        differs=f"build {build.name} ({ve}): " + "; ".join(differs) if differs else None,
    )


def _hierarchies_text(hierarchies: Iterable[str]) -> str:
    names = sorted(name or "the unified hierarchy" for name in hierarchies)
    return "{" + " ".join(names) + "}" if names else "no hierarchy"


def expected_hierarchies(use: str | None, cgroup_lines: Iterable[str]) -> frozenset[str] | None:
    """The hierarchies a VE gets its own cgroups in under liblxc's lxc.cgroup.use = `use`
    (from this process's /proc/self/cgroup lines), by liblxc's rule: every hierarchy all of
    whose controllers are listed, so the unified one (whose controllers cgroups.py lists)
    too, and no named one (name=systemd). None when liblxc chooses (no list: every
    hierarchy): then the builds must agree with each other."""
    if use is None:
        return None
    listed = set(use.split(","))
    found = set()
    for line in cgroup_lines:
        _, controllers, _ = line.rstrip("\n").split(":", 2)
        names = [name for name in controllers.split(",") if name]
        if not any(name.startswith("name=") for name in names) and set(names) <= listed:
            found.add(controllers)
    return frozenset(found)


def starter_build_args(lxc_builds: Iterable[LXCBuild]) -> list[str]:
    """The starter's --builds argument: each build's lxc-start and loader variables, in order."""
    described = [{"lxc_start": build.lxc_start, "env": build.environment_changes()} for build in lxc_builds]
    return ["--builds", json.dumps(described)]


class Prover:
    """Proves each build from the first of its VEs that is still up when its start is reported.

    `proofs` (build name -> Proof) is kept across ranges and rounds: a build is proven once.
    `expected`: the hierarchies asked for (None: liblxc's choice; then every build must get
    what the first build proven got)."""

    def __init__(
        self,
        lxc_builds: dict[str, LXCBuild],
        proofs: dict[str, Proof],
        expected: frozenset[str] | None,
        own_path: Callable[[int], str],
    ) -> None:
        self.builds = lxc_builds
        self.proofs = proofs
        self.expected = expected
        self.own_path = own_path

    def _expected(self) -> frozenset[str] | None:
        if self.expected is not None:
            return self.expected
        first = next(iter(self.proofs.values()), None)
        return frozenset(first.cgroups) if first else None

    def look_at(self, result: Any) -> None:
        """A start just reported (a fleet.StartResult): prove its build if not yet; raise
        BuildProofError if the build did not run as asked."""
        if not result.ok or result.build in self.proofs or not (result.monitor and result.pid):
            return
        build = self.builds.get(result.build)
        if build is None:
            return
        try:
            proof = check_first_ve(
                build, f"ve{result.index}", result.monitor, result.pid, self.own_path(result.index), self._expected()
            )
        except OSError:
            return  # gone already (a workload that ended at once): the build's next VE proves it
        self.proofs[build.name] = proof
        if not proof.ok:
            raise BuildProofError(f"{proof.differs}; the run was stopped")

    def finish(self, results: Iterable[Any]) -> None:
        """After a range: a build that started VEs none of which could be looked at is unproven."""
        unproven = sorted({r.build for r in results if r.ok and r.build in self.builds} - set(self.proofs))
        if unproven:
            raise BuildProofError(
                f"build {', '.join(unproven)}: none of its VEs was still up to be checked (its monitor's "
                "liblxc and its cgroups); the run was stopped"
            )
