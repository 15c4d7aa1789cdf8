"""One frozen ExperimentConfig, validated once.

Every parser here is a small pure function that raises ConfigError naming the
option and the reason, so the plugin and the CLI report bad input identically
and before anything is created on the host.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import aptsources
from .errors import ConfigError
from .slo import Slo, parse_growth, parse_slos
from .workload_kinds import COMMAND_PREFIX, NETWORK_WORKLOADS, PING_WORKLOADS, REACH_TIMEOUT, WORKLOADS, workload_kind

# Beyond this the VE names, veth names and cgroup tree are untested.
MAX_VE_COUNT = 100_000
IFNAME_MAX = 15
# More starter processes than this only queue on liblxc's and the kernel's locks.
MAX_PARALLEL = 64
# Rounds of one session (--ve-repeat): each is a whole set up and takedown; more is a script's job.
MAX_REPEAT = 1000
NETWORK_MODES = ("bridge", "none")
# Named bases; besides them --ve-base takes lxc:NAME[@LXCPATH] and a rootfs directory or tarball.
BASES = ("busybox", "debian")
LXC_BASE_PREFIX = "lxc:"
TARBALL_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2", ".tar.zst")
INIT_MODES = ("workload", "system")
# Controllers --ve-cgroups may name: the kernel's, v1 and v2.
CGROUP_CONTROLLERS = (
    "cpuset", "cpu", "cpuacct", "blkio", "io", "memory", "devices", "freezer",
    "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc",
)  # fmt: skip
DEFAULT_VE_CGROUPS = ("cpu", "pids")
# Seconds one start may take before it is ended as hung (a build that deadlocks in it): a
# start takes milliseconds (p99 0.26 s at 10,000 VEs running here) and a few seconds under
# emulation (the test-hosts VMs); far enough above that a slow host is not cut short, and
# short enough that a hung start costs the VEs after it little of the range's time.
START_DEADLINE = 60.0
# Seconds one liblxc state or stop may go unanswered before its VE's monitor counts as stuck
# (a build that deadlocks; liblxc's command socket has no timeout, lxc-ls hangs on it too):
# it answers in milliseconds, and an interpreter's start with python3-lxc takes well under a second.
QUERY_DEADLINE = 30.0
# Each VE's own pids.max unless --ve-pids-max says otherwise: a fork bomb in one VE stops
# there, not at the host's pid_max. Far above what any base and init runs (benchmarks/
# per_ve_budget.py: at most a few dozen at once; docs/reliability.md).
DEFAULT_VE_PIDS_MAX = 1024
# The kernel's own bound on pid numbers (PID_MAX_LIMIT on 64-bit): pids.max takes no more.
PID_MAX_LIMIT = 4_194_304
# --ve-memory-max's default: the experiment's memory limit set at setup from the host's
# available memory, less what the host keeps for itself (engine/host.py, MEMORY_RESERVE).
MEMORY_MAX_AUTO = -1
SSH_KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-", "sk-ssh-ed25519@", "sk-ecdsa-sha2-")

# Directories no experiment may take over: mounting a tmpfs on one hides the system.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/home",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/media",
        "/mnt",
        "/opt",
        "/proc",
        "/root",
        "/run",
        "/sbin",
        "/srv",
        "/sys",
        "/tmp",
        "/usr",
        "/var",
        "/var/lib",
        "/var/log",
        "/var/tmp",
        "/usr/local",
        "/usr/bin",
        "/usr/lib",
        "/var/lib/lxc",
        "/var/cache",
    }
)
SYSTEM_TREES = ("/proc", "/sys", "/dev", "/boot", "/etc", "/usr", "/bin", "/sbin", "/lib")

_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_positive_int(option: str, text: str | int, maximum: int | None = None) -> int:
    value_text = str(text).strip()
    if not re.fullmatch(r"[0-9]+", value_text):
        raise ConfigError(option, f"{text!r} is not a positive whole number")
    value = int(value_text)
    if value < 1:
        raise ConfigError(option, f"{value} is not a positive whole number (must be at least 1)")
    if maximum is not None and value > maximum:
        raise ConfigError(option, f"{value} is more than the supported maximum of {maximum}")
    return value


def parse_pids_max(option: str, text: str | int) -> tuple[int, int]:
    """--ve-pids-max: `N` or `max` for each VE's own pids.max, `total:N` for all VEs
    together, comma-separated (`512,total:20000`); a part not given keeps its default
    (DEFAULT_VE_PIDS_MAX each, no total). `max` (or 0) is no limit, as the kernel spells it.
    Returns (each VE's, all VEs'), 0 for no limit."""
    each, total = DEFAULT_VE_PIDS_MAX, 0
    seen: set[str] = set()
    for part in (word.strip() for word in str(text).split(",")):
        if not part:
            continue
        kind, _, value = part.rpartition(":")
        kind = kind or "ve"
        if kind not in ("ve", "total"):
            raise ConfigError(option, f"{part!r} is not N, max, ve:N or total:N")
        if kind in seen:
            raise ConfigError(option, f"{part!r}: the {kind} limit is given twice")
        seen.add(kind)
        limit = 0 if value.strip() in ("max", "none", "0") else parse_positive_int(option, value, PID_MAX_LIMIT)
        if kind == "ve":
            each = limit
        else:
            total = limit
    return each, total


def parse_memory_max(option: str, text: str) -> tuple[int, int]:
    """--ve-memory-max: `SIZE` or `max` for each VE's own memory limit (default none),
    `total:SIZE`, `total:auto` (the default: the host's available memory at setup less the
    1 GiB it keeps) or `total:max` for all VEs together (the experiment's memory cgroup),
    comma-separated (`256M,total:8G`); a part not given keeps its default. `auto` alone is
    the total's; `max` alone is no limit at all. Returns (each VE's, all VEs'): bytes, 0 for
    none, MEMORY_MAX_AUTO."""
    if str(text).strip() in ("max", "none"):
        return 0, 0
    each, total = 0, MEMORY_MAX_AUTO
    seen: set[str] = set()
    for part in (word.strip() for word in str(text).split(",")):
        if not part:
            continue
        kind, _, value = part.rpartition(":")
        kind, value = kind.strip(), value.strip()
        kind = kind or ("total" if value == "auto" else "ve")
        if kind not in ("ve", "total"):
            raise ConfigError(option, f"{part!r} is not SIZE, max, total:SIZE, total:auto or total:max")
        if kind in seen:
            raise ConfigError(option, f"{part!r}: the {kind} limit is given twice")
        seen.add(kind)
        if value in ("max", "none"):
            limit = 0
        elif value == "auto" and kind == "total":
            limit = MEMORY_MAX_AUTO
        else:
            limit = parse_size(option, value)
        if kind == "ve":
            each = limit
        else:
            total = limit
    return each, total


def parse_seconds(option: str, text: str | float, allow_zero: bool = False) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ConfigError(option, f"{text!r} is not a number of seconds") from None
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(option, f"{text!r} is not a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "more than zero"
        raise ConfigError(option, f"{value:g} seconds is not allowed (must be {need})")
    return value


def parse_size(option: str, text: str | int) -> int:
    """Parse '2G', '512M', '100k' or a plain byte count into bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not match:
        raise ConfigError(option, f"{text!r} is not a size (use bytes or K, M, G, T, e.g. 2G)")
    number, unit = match.groups()
    size = int(float(number) * _SIZE_UNITS[unit.upper()])
    if size < 1024 * 1024:
        raise ConfigError(option, f"{text!r} is smaller than the minimum of 1M")
    return size


def format_size(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _SIZE_UNITS[unit] and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


def parse_ifname(option: str, text: str) -> str:
    name = str(text)
    if not name:
        raise ConfigError(option, "an interface name cannot be empty")
    if len(name) > IFNAME_MAX:
        raise ConfigError(option, f"{name!r} is {len(name)} characters; an interface name holds at most {IFNAME_MAX}")
    if not _IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise ConfigError(option, f"{name!r} holds characters an interface name cannot (use A-Z a-z 0-9 _ . -)")
    if not name.startswith("ve"):
        raise ConfigError(option, f"{name!r} must begin with 've' so that takedown can tell it is ours")
    return name


def parse_subnet(option: str, text: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.IPv4Network(str(text).strip(), strict=True)
    except ValueError as error:
        raise ConfigError(option, f"{text!r} is not an IPv4 subnet ({error})") from None
    if network.prefixlen > 30:
        raise ConfigError(option, f"{text!r} is too small to hold a bridge address and VEs")
    return network


# Characters a root's path may not hold: the VEs' LXC configs and overlay mounts are built from it.
_ROOT_BREAKERS = {
    ":": "it separates the parts of LXC's overlay rootfs spec (overlay:LOWER:UPPER)",
    ",": "it separates overlayfs mount options (lowerdir=...,upperdir=...)",
    "\\": "overlayfs mount options treat it as an escape",
}


_SPACE_WORDS = "a space or control character: LXC's config lines are split at newlines and trimmed of spaces"


def parse_root(option: str, text: str) -> str:
    """Validate the experiment root's path text; what is on disk is checked by storage."""
    raw = str(text)
    if not raw or not raw.startswith("/"):
        raise ConfigError(option, f"{raw!r} is not an absolute path")
    for char in raw:
        if char in _ROOT_BREAKERS or not char.isprintable() or char.isspace():
            why = _ROOT_BREAKERS.get(char, _SPACE_WORDS)
            raise ConfigError(option, f"{raw!r} contains {char!r}: {why}")
    path = os.path.normpath(raw)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    if path in SYSTEM_DIRS:
        raise ConfigError(option, f"{path} is a system directory; use a directory of its own, e.g. /exp")
    for tree in SYSTEM_TREES:
        if path.startswith(tree + "/"):
            raise ConfigError(option, f"{path} lies inside the system directory {tree}")
    return path


def parse_choice(option: str, text: str, choices: tuple[str, ...]) -> str:
    if text not in choices:
        raise ConfigError(option, f"{text!r} is not one of {', '.join(choices)}")
    return text


def parse_cgroups(option: str, text: str) -> str:
    """auto, all, or a comma-separated list of cgroup controllers (normalized, no repeats)."""
    value = str(text).strip()
    if value in ("auto", "all"):
        return value
    names = [name.strip() for name in value.split(",")]
    unknown = [name for name in names if name not in CGROUP_CONTROLLERS]
    if not value or unknown:
        raise ConfigError(
            option,
            f"{', '.join(map(repr, unknown or [value]))} is not a cgroup controller "
            f"(use auto, all, or a list from {', '.join(CGROUP_CONTROLLERS)})",
        )
    return ",".join(dict.fromkeys(names))


def parse_apparmor(option: str, text: str) -> str:
    """auto, unconfined, generated, or the name of an AppArmor profile (checked to be loaded
    in the preflight, which knows the host)."""
    value = str(text).strip()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,199}", value) or "//" in value:
        raise ConfigError(option, f"{text!r} is not auto, unconfined, generated or an AppArmor profile name")
    return value


def parse_workload(option: str, text: str) -> str:
    """A named workload, or cmd:COMMAND (kept byte for byte: it is shell text)."""
    value = str(text)
    if value.startswith(COMMAND_PREFIX):
        command = value[len(COMMAND_PREFIX) :]
        if not command.strip():
            raise ConfigError(option, "cmd: needs a shell command after it, e.g. 'cmd:echo hi; exit 3'")
        if "\0" in command:
            raise ConfigError(option, "the command holds a NUL byte")
        return value
    value = value.strip()
    if value == "ping-neighbor":
        return "ping-neighbour"
    if value not in WORKLOADS:
        raise ConfigError(option, f"{text!r} is not one of {', '.join(WORKLOADS)} or cmd:COMMAND")
    return value


def parse_base(option: str, text: str) -> str:
    """busybox, debian, lxc:NAME[@LXCPATH], or an existing rootfs directory or tarball (made absolute)."""
    value = str(text).strip()
    if value in BASES:
        return value
    if value.startswith(LXC_BASE_PREFIX):
        name, _, lxcpath = value[len(LXC_BASE_PREFIX) :].partition("@")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise ConfigError(option, f"{name!r} is not an LXC container name (use lxc:NAME or lxc:NAME@LXCPATH)")
        if not lxcpath:
            return f"{LXC_BASE_PREFIX}{name}"
        if not lxcpath.startswith("/"):
            raise ConfigError(option, f"the lxc path {lxcpath!r} is not absolute")
        return f"{LXC_BASE_PREFIX}{name}@{os.path.normpath(lxcpath)}"
    if "/" not in value:
        raise ConfigError(
            option,
            f"{text!r} is not one of {', '.join(BASES)}, lxc:NAME[@LXCPATH], or a path to a root filesystem "
            "directory or tarball",
        )
    path = os.path.abspath(value)
    if os.path.isdir(path):
        if path == "/":
            raise ConfigError(option, "/ is the host's own root filesystem, not a base")
        return path
    if os.path.isfile(path):
        if not path.endswith(TARBALL_SUFFIXES):
            raise ConfigError(option, f"{path} is a file but not a tarball ({', '.join(TARBALL_SUFFIXES)})")
        return path
    raise ConfigError(option, f"{path} does not exist (give a root filesystem directory or tarball)")


def parse_release(option: str, text: str) -> str:
    value = str(text).strip()
    if not re.fullmatch(r"[a-z][a-z0-9-]{1,31}", value):
        raise ConfigError(option, f"{text!r} is not a release codename (e.g. bookworm)")
    return value


def parse_url(option: str, text: str, schemes: tuple[str, ...]) -> str:
    """A URL that can go into apt's and debootstrap's configuration unquoted and unescaped."""
    value = str(text).strip()
    pattern = r"(?:" + "|".join(schemes) + r")://[^\s\"';<>\\]+"
    if not re.fullmatch(pattern, value):
        raise ConfigError(option, f"{text!r} is not a {' or '.join(schemes)} URL (e.g. http://host:3142/)")
    return value


def parse_ssh_key(option: str, text: str) -> str:
    """A readable public key file (one or more keys); its absolute path."""
    path = os.path.abspath(str(text))
    try:
        with open(path, errors="replace") as handle:
            content = handle.read(65537)
    except OSError as error:
        raise ConfigError(option, f"{path} cannot be read: {error.strerror}") from None
    if "PRIVATE KEY" in content:
        raise ConfigError(option, f"{path} is a private key; give the public one (.pub)")
    keys = [line for line in content.splitlines() if line.strip() and not line.startswith("#")]
    if not keys or len(content) > 65536:
        raise ConfigError(option, f"{path} holds no public key")
    for line in keys:
        if not any(word.startswith(SSH_KEY_TYPES) for word in line.split()):
            raise ConfigError(option, f"{path}: {line[:40]!r} is not an OpenSSH public key line")
    return path


# --ve-lxc: [NAME=]PREFIX[+preload:LIB]; `system` is the distribution's LXC (see builds.py).
LXC_OPTION = "--ve-lxc"
LXC_SYSTEM = "system"
LXC_PRELOAD_MARK = "+preload:"
_BUILD_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")


@dataclass(frozen=True)
class BuildSpec:
    """One --ve-lxc value, parsed without looking at the host."""

    name: str
    prefix: str  # "system" or an absolute path
    preload: str | None = None

    def text(self) -> str:
        preload = f"{LXC_PRELOAD_MARK}{self.preload}" if self.preload else ""
        return f"{self.name}={self.prefix}{preload}"


def parse_build_spec(text: str) -> BuildSpec:
    """[NAME=]PREFIX[+preload:LIB]; NAME defaults to `system` or the prefix's last component."""
    value = str(text).strip()
    if not value:
        raise ConfigError(LXC_OPTION, "an empty value; give [NAME=]PREFIX or system")
    rest, mark, preload = value.partition(LXC_PRELOAD_MARK)
    if mark and not preload:
        raise ConfigError(LXC_OPTION, f"{value!r}: +preload: needs the path of a shared library after it")
    name, equals, prefix = rest.partition("=")
    if not equals:
        name, prefix = "", rest
    if not prefix:
        raise ConfigError(LXC_OPTION, f"{value!r} names no prefix (use NAME=PREFIX or NAME=system)")
    if prefix != LXC_SYSTEM:
        if not prefix.startswith("/"):
            raise ConfigError(LXC_OPTION, f"{value!r}: the prefix {prefix!r} is not an absolute path (or system)")
        prefix = os.path.normpath(prefix)
    if not name:
        name = LXC_SYSTEM if prefix == LXC_SYSTEM else os.path.basename(prefix) or "root"
    if not _BUILD_NAME_RE.fullmatch(name):
        raise ConfigError(LXC_OPTION, f"{name!r} is not a build name (letters, digits, _ . -; at most 40)")
    if preload and not preload.startswith("/"):
        raise ConfigError(LXC_OPTION, f"{value!r}: the preload library {preload!r} is not an absolute path")
    return BuildSpec(name, prefix, os.path.normpath(preload) if preload else None)


def parse_builds(values: Iterable[str]) -> tuple[str, ...]:
    """Every --ve-lxc value, normalized; duplicate names refused. Empty: the system's LXC alone."""
    specs = [parse_build_spec(value) for value in values]
    seen: dict[str, BuildSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise ConfigError(
                LXC_OPTION,
                f"two builds are named {spec.name!r} ({seen[spec.name].prefix} and {spec.prefix}); "
                "name them apart with NAME=PREFIX",
            )
        seen[spec.name] = spec
    return tuple(spec.text() for spec in specs)


def root_tag(root: str) -> str:
    """A short stable tag for a root: names our veths and cgroups so takedown can prove them ours."""
    return hashlib.sha1(root.encode()).hexdigest()[:5]


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one experiment needs, validated; the single source of truth."""

    count: int = 100
    batch: int = 100
    root: str = "/exp"
    tmpfs_size: int = 2 * 1024**3
    base: str = "busybox"
    base_refresh: bool = False
    network: str = "bridge"
    bridge: str = "vebr"
    subnet: ipaddress.IPv4Network = field(default_factory=lambda: ipaddress.IPv4Network("10.213.0.0/16"))
    pings: int = 180
    ping_interval: float = 1.0
    start_delay: float = 0.0
    timeout: float | None = None
    keep: bool = False
    parallel: int = field(default_factory=lambda: os.cpu_count() or 1)
    nice: bool = False
    tune_host: bool = False
    unprivileged: bool = False  # VEs in user namespaces (lxc.idmap from root's /etc/subuid range)
    base_cache: str = "/var/cache/lxcexp"
    workload: str = "ping-localhost"
    workload_script: str | None = None  # from the pytest_lxcexp_workload hook: replaces the init script
    poweroff: bool = False
    init: str = "workload"
    # The controllers each VE gets cgroups of its own in: auto (cpu,pids; all for a system
    # init, which manages its own), all (liblxc's default) or a list.
    cgroups: str = "auto"
    # The AppArmor profile VEs start under (engine/apparmor.py): auto is a fixed, shipped one.
    apparmor: str = "auto"
    busybox: str = ""  # busybox base only: the binary to build it from ("": the host's busybox-static)
    base_release: str = ""  # debian base only, resolved from the host when not given
    mirror: str = ""
    apt_proxy: str = ""
    ssh_key: str = ""
    # The VEs this host runs, ve<ve_first>..ve<ve_last> of ve1..veN (0: up to veN). Only a
    # run over several hosts narrows it: VE numbers stay unique across the run's hosts.
    ve_first: int = 1
    ve_last: int = 0
    # --ve-count=max: a ramp (engine/ramp.py) starts VEs in growing steps until something
    # stops it; `count` is then its upper bound (the subnet's, narrowed by the host's limits).
    ramp: bool = False
    ramp_step: int = 50
    ramp_growth: float = 1.5
    slo: tuple[Slo, ...] = ()  # start-latency objectives a ramp stops at
    pids_max: int = 0  # pids.max on the experiment's cgroup subtree (all VEs together); 0: none
    ve_pids_max: int = DEFAULT_VE_PIDS_MAX  # each VE's own pids.max; 0: none
    # The experiment's memory limit in bytes, all VEs together (--ve-memory-max); 0: none.
    memory_max: int = MEMORY_MAX_AUTO
    ve_memory_max: int = 0  # each VE's own memory limit in bytes; 0: none
    # --ve-lxc: the LXC builds that start the VEs, interleaved (normalized specs; none: the system's).
    lxc: tuple[str, ...] = ()
    # --ve-repeat: rounds of set up, start, complete, take down in one pytest session.
    repeat: int = 1

    def __post_init__(self) -> None:
        if self.ve_last == 0:
            object.__setattr__(self, "ve_last", self.count)
        object.__setattr__(self, "lxc", tuple(self.lxc))
        if not 1 <= self.ve_first <= self.ve_last <= self.count:
            raise ValueError(f"this host's VEs ve{self.ve_first}-ve{self.ve_last} lie outside ve1-ve{self.count}")
        if self.batch > self.count:
            # A batch larger than the count is one range of all VEs: not an error.
            object.__setattr__(self, "batch", self.count)
        if self.network == "bridge":
            hosts = self.subnet.num_addresses - 2
            if hosts < self.count + 1:
                raise ConfigError(
                    "--ve-subnet",
                    f"{self.subnet} holds {hosts} addresses, too few for a bridge and {self.count} VEs",
                )
        if workload_kind(self.workload) in NETWORK_WORKLOADS and self.network != "bridge":
            raise ConfigError("--ve-workload", f"{self.workload} pings across the bridge: it needs --ve-network=bridge")
        if self.poweroff and workload_kind(self.workload) == "idle":
            raise ConfigError("--ve-poweroff", "an idle workload never ends, so there is no end to power off after")
        if self.apt_proxy and self.base == "busybox":
            raise ConfigError("--ve-apt-proxy", "the busybox base has no apt to configure")
        if self.slo and not self.ramp:
            raise ConfigError("--ve-slo", "applies to a ramp only: use it with --ve-count=max")
        if self.repeat > 1 and self.ramp:
            raise ConfigError("--ve-repeat", "a ramp runs once, up to what stops it: repeat it in separate runs")
        if self.repeat > 1 and self.keep:
            raise ConfigError("--ve-repeat", "each round takes its VEs down before the next; --ve-keep keeps them up")
        if self.cgroups not in ("auto", "all"):
            listed = self.cgroups.split(",")
            if self.init == "system":
                raise ConfigError("--ve-cgroups", "a system init needs every hierarchy: use auto or all with it")
            if "pids" not in listed:
                raise ConfigError("--ve-cgroups", "the list must hold pids: the tool counts each VE's processes there")
            if self.nice and "cpu" not in listed:
                raise ConfigError("--ve-cgroups", "--ve-nice sets a CPU weight: the list must hold cpu")

    @property
    def tag(self) -> str:
        return root_tag(self.root)

    @property
    def ve_controllers(self) -> tuple[str, ...] | None:
        """The controllers for each VE's own cgroups; None for every hierarchy (liblxc's default)."""
        if self.cgroups == "all" or (self.cgroups == "auto" and self.init == "system"):
            return None
        return DEFAULT_VE_CGROUPS if self.cgroups == "auto" else tuple(self.cgroups.split(","))

    @property
    def ves(self) -> range:
        """The indexes of the VEs this host creates and runs."""
        return range(self.ve_first, self.ve_last + 1)

    @property
    def start_deadline(self) -> float:
        """How long one start may take before it is ended: START_DEADLINE, or the range's
        whole timeout when that is shorter."""
        return min(START_DEADLINE, self.effective_timeout)

    @property
    def effective_timeout(self) -> float:
        """How long one range may take to complete: the pings' own time plus a margin."""
        if self.timeout is not None:
            return self.timeout
        kind = workload_kind(self.workload)
        seconds = 60.0
        if kind in PING_WORKLOADS or kind == "hook":
            seconds += self.pings * self.ping_interval
        if kind in NETWORK_WORKLOADS:
            seconds += REACH_TIMEOUT  # the target may answer only once it has started
        if self.init == "system":
            seconds += 60.0  # the distribution's init boots before it starts the workload
        return seconds

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["subnet"] = str(self.subnet)
        data["slo"] = [str(slo) for slo in self.slo]
        data["lxc"] = list(self.lxc)  # as JSON gives it back: a saved run's options compare equal
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        # A root set up before --ve-cgroups existed: its VEs got liblxc's default, every hierarchy.
        values.setdefault("cgroups", "all")
        # ... and before --ve-pids-max had a per-VE part: no limit of their own.
        values.setdefault("ve_pids_max", 0)
        # ... and before --ve-memory-max: no memory limit.
        values.setdefault("memory_max", 0)
        values.setdefault("ve_memory_max", 0)
        if "subnet" in values:
            values["subnet"] = ipaddress.IPv4Network(values["subnet"])
        if "slo" in values:
            values["slo"] = parse_slos("--ve-slo", ",".join(values["slo"]))
        return cls(**values)


def build_config(
    *,
    count: str | int = 100,
    batch: str | int = 100,
    root: str = "/exp",
    tmpfs_size: str | int = "2G",
    base: str = "busybox",
    base_refresh: bool = False,
    network: str = "bridge",
    bridge: str = "vebr",
    subnet: str = "10.213.0.0/16",
    pings: str | int = 180,
    ping_interval: str | float = 1.0,
    start_delay: str | float = 0,
    timeout: str | float | None = None,
    keep: bool = False,
    parallel: str | int | None = None,
    nice: bool = False,
    tune_host: bool = False,
    unprivileged: bool = False,
    workload: str = "ping-localhost",
    workload_script: str | None = None,
    poweroff: bool = False,
    init: str = "workload",
    cgroups: str = "auto",
    apparmor: str = "auto",
    base_release: str = "",
    mirror: str = "",
    apt_proxy: str = "",
    ssh_key: str = "",
    busybox: str = "",
    ramp_step: str | int = 50,
    ramp_growth: str | float = 1.5,
    slo: str = "",
    pids_max: str | int = "",
    memory_max: str = "total:auto",
    lxc: Iterable[str] | str | None = None,
    repeat: str | int = 1,
) -> ExperimentConfig:
    """Parse raw option values (strings from the command line) into a validated config."""
    base_value = parse_base("--ve-base", base)
    root_value = parse_root("--ve-root", root)
    if base_value.startswith("/") and (base_value + "/").startswith(root_value.rstrip("/") + "/"):
        raise ConfigError("--ve-base", f"{base_value} lies inside --ve-root {root_value}, which the tmpfs will cover")
    release_value = parse_release("--ve-base-release", base_release) if base_release else ""
    mirror_value = parse_url("--ve-mirror", mirror, ("http", "https", "file")).rstrip("/") if mirror else ""
    busybox_value = os.path.abspath(os.path.expanduser(busybox)) if busybox else ""
    if busybox_value and base_value != "busybox":
        raise ConfigError("--ve-busybox", f"applies only to --ve-base=busybox, not {base_value}")
    if base_value != "debian":
        for option, given in (("--ve-base-release", release_value), ("--ve-mirror", mirror_value)):
            if given:
                raise ConfigError(option, f"applies only to --ve-base=debian, not {base_value}")
    else:
        # Defaults from the host: its own release, from the mirror its apt already uses.
        release_value = release_value or aptsources.host_codename() or ""
        if not release_value:
            raise ConfigError("--ve-base-release", "the host's /etc/os-release names no codename; give one")
        mirror_value = mirror_value or aptsources.host_mirror(release_value) or ""
        if not mirror_value:
            raise ConfigError("--ve-mirror", "the host's apt sources name no mirror; give one")
    network_value = parse_choice("--ve-network", network, NETWORK_MODES)
    subnet_value = parse_subnet("--ve-subnet", subnet)
    ramp = str(count).strip() == "max"
    ve_pids_max_value, pids_max_value = parse_pids_max("--ve-pids-max", pids_max)
    ve_memory_max_value, memory_max_value = parse_memory_max("--ve-memory-max", memory_max)
    return ExperimentConfig(
        count=ramp_ceiling(network_value, subnet_value) if ramp else parse_count("--ve-count", count),
        batch=parse_positive_int("--ve-batch", batch),
        root=root_value,
        tmpfs_size=parse_size("--ve-tmpfs-size", tmpfs_size),
        base=base_value,
        base_refresh=bool(base_refresh),
        network=network_value,
        bridge=parse_ifname("--ve-bridge", bridge),
        subnet=subnet_value,
        pings=parse_positive_int("--ve-pings", pings, 1_000_000),
        ping_interval=parse_seconds("--ve-ping-interval", ping_interval),
        start_delay=parse_seconds("--ve-start-delay", start_delay, allow_zero=True),
        timeout=None if timeout in (None, "", "auto") else parse_seconds("--ve-timeout", timeout),
        keep=bool(keep),
        parallel=(os.cpu_count() or 1)
        if parallel in (None, "", "auto")
        else parse_positive_int("--ve-parallel", parallel, MAX_PARALLEL),
        nice=bool(nice),
        tune_host=bool(tune_host),
        unprivileged=bool(unprivileged),
        workload="hook" if workload_script else parse_workload("--ve-workload", workload),
        workload_script=workload_script or None,
        poweroff=bool(poweroff),
        init=parse_choice("--ve-init", init, INIT_MODES),
        cgroups=parse_cgroups("--ve-cgroups", cgroups),
        apparmor=parse_apparmor("--ve-apparmor", apparmor),
        base_release=release_value,
        mirror=mirror_value,
        apt_proxy=parse_url("--ve-apt-proxy", apt_proxy, ("http", "https")) if apt_proxy else "",
        ssh_key=parse_ssh_key("--ve-ssh-key", ssh_key) if ssh_key else "",
        busybox=busybox_value,
        ramp=ramp,
        ramp_step=parse_positive_int("--ve-ramp-step", ramp_step, MAX_VE_COUNT),
        ramp_growth=parse_growth("--ve-ramp-growth", ramp_growth),
        slo=parse_slos("--ve-slo", slo),
        pids_max=pids_max_value,
        ve_pids_max=ve_pids_max_value,
        memory_max=memory_max_value,
        ve_memory_max=ve_memory_max_value,
        lxc=parse_builds([lxc] if isinstance(lxc, str) else lxc or ()),
        repeat=parse_positive_int("--ve-repeat", repeat, MAX_REPEAT),
    )


def parse_count(option: str, text: str | int) -> int:
    try:
        return parse_positive_int(option, text, MAX_VE_COUNT)
    except ConfigError as error:
        raise ConfigError(option, f"{error.reason}; or max, to ramp up until the host stops") from None


def ramp_ceiling(network: str, subnet: ipaddress.IPv4Network) -> int:
    """The most VEs a ramp may reach before the host is asked: the supported maximum, and
    with a bridge the addresses the subnet holds (the bridge takes one). The host's own
    limits narrow it further (host.ramp_bound)."""
    if network != "bridge":
        return MAX_VE_COUNT
    return max(1, min(MAX_VE_COUNT, subnet.num_addresses - 3))


def ve_ranges(count: int, batch: int) -> list[tuple[int, int]]:
    """Split ve1..veN into consecutive inclusive ranges of at most `batch` VEs."""
    if count < 1 or batch < 1:
        raise ValueError("count and batch must be positive")
    return [(first, min(first + batch - 1, count)) for first in range(1, count + 1, batch)]


def parse_range(
    option: str, first: str | int | None, last: str | int | None, count: int, lowest: int = 1
) -> tuple[int, int]:
    """Resolve the CLI's optional [S] [E] against the root's VEs, ve<lowest>..ve<count>
    (lowest > 1: one host's part of a run over several hosts)."""
    start = lowest if first is None else parse_positive_int(option, first)
    end = count if last is None else parse_positive_int(option, last)
    if lowest > 1 and (start < lowest or end > count):
        raise ConfigError(option, f"range {start}-{end} lies outside this root's VEs ve{lowest}-ve{count}")
    if start > count or end > count:
        raise ConfigError(option, f"range {start}-{end} lies outside the experiment's {count} VEs")
    if start > end:
        raise ConfigError(option, f"range start {start} is after its end {end}")
    return start, end
