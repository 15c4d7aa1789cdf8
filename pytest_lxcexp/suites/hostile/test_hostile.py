"""Hostile workloads: each attack in a VE of its own; every one refused or contained.

Run:  pytest --ve-suite hostile -v   (as root; about a minute)

Each VE runs one attack (its /etc/lxcexp/attack.sh, written into its overlay before it
starts) through the ordinary command workload. An attack is *contained* when the tool
stays in charge: the VE's verdict names what it did (a log that is not a plain file is
refused by name), the attack failed inside the VE (a remount, a write, a mknod the VE
may not do), or a limit held it (the VE's default pids limit, the tmpfs size). The run ends by
itself, the host's sysctls are unchanged, and the takedown leaves nothing behind.

An attack that got through exits 1 after saying `ATTACK SUCCEEDED: ...`; its test fails
with that line. Attacks that write to the host only write back the value they read, so
even a successful one leaves the host as it was.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from pytest_lxcexp.engine.cgroups import refused_forks, ve_pids_cgroup
from pytest_lxcexp.engine.experiment import Experiment
from pytest_lxcexp.engine.stats import VERecord

LOG = "/var/log/lxcexp/workload.log"


def refused_as(words: str) -> Callable[[VERecord], bool]:
    """The tool failed this VE, naming what the VE put in place of its log."""
    return lambda record: record.failure is not None and f"its workload log is {words}" in record.failure


def completed(record: VERecord) -> bool:
    """The attack failed inside the VE (or was harmless), and the VE's command ended with 0."""
    return record.completed


def _refused_inside(action: str, what: str, undo: str = ":") -> str:
    """exit 1 only when the attack got through (after undoing it inside the VE)."""
    return f"if {action}; then echo 'ATTACK SUCCEEDED: {what}'; {undo}; exit 1; fi; echo 'refused: {what}'"


@dataclass(frozen=True)
class Attack:
    name: str
    script: str
    contained: Callable[[VERecord], bool]


ATTACKS = [
    Attack("log-fifo", f"rm -f {LOG}; mkfifo {LOG}", refused_as("a FIFO, not a regular file")),
    # Refused by name; or, where the VE may not make device nodes (a user namespace), its log is just gone.
    Attack(
        "log-device",
        f"rm -f {LOG}; mknod {LOG} c 1 5",
        lambda record: refused_as("a character device, not a regular file")(record) or not record.log_present,
    ),
    Attack("log-directory", f"rm -f {LOG}; mkdir {LOG}", refused_as("a directory, not a regular file")),
    Attack("log-symlink", f"rm -f {LOG}; ln -s /etc/shadow {LOG}", refused_as("a symlink")),
    # Sparse: 500 MiB to the host's fstat, nothing to the tmpfs.
    Attack(
        "log-500M", f"dd if=/dev/zero of={LOG} bs=1M count=0 seek=500 2>/dev/null", refused_as("a file of 500.0 MiB")
    ),
    Attack("no-newline", "printf x", lambda record: record.completed and record.output == "x"),
    Attack(
        "remount-proc-sys",
        _refused_inside(
            "mount -o remount,rw /proc/sys 2>/dev/null && "
            "(cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness) 2>/dev/null",
            "remounted /proc/sys read-write and wrote the host vm.swappiness",
            "mount -o remount,ro /proc/sys",
        ),
        completed,
    ),
    Attack(
        "remount-sys",
        "knob=$(ls /sys/block/*/queue/read_ahead_kb | head -1); "
        + _refused_inside(
            'mount -o remount,rw /sys 2>/dev/null && (cat "$knob" > "$knob") 2>/dev/null',
            "remounted /sys read-write and wrote a host block device setting",
            "mount -o remount,ro /sys",
        ),
        completed,
    ),
    Attack(
        "fresh-proc",
        "mkdir -p /tmp/p; "
        + _refused_inside(
            "mount -t proc proc /tmp/p 2>/dev/null && "
            "(cat /tmp/p/sys/vm/swappiness > /tmp/p/sys/vm/swappiness) 2>/dev/null",
            "wrote the host vm.swappiness through a fresh proc",
            "umount /tmp/p",
        ),
        completed,
    ),
    Attack(
        "mknod-host-disk",
        # The host's first block device (sysfs shows them), read one sector through a node of its own.
        "dev=$(cat $(ls -d /sys/class/block/*/dev | head -1)); "
        + _refused_inside(
            'mknod /tmp/disk b "${dev%:*}" "${dev#*:}" 2>/dev/null && '
            "dd if=/tmp/disk of=/dev/null bs=512 count=1 2>/dev/null",
            "read the host disk",
        ),
        completed,
    ),
    Attack(
        "host-sysctl",
        _refused_inside(
            "(cat /proc/sys/vm/swappiness > /proc/sys/vm/swappiness) 2>/dev/null", "wrote the host vm.swappiness"
        ),
        completed,
    ),
    Attack(
        "irq-affinity",
        # Unguarded by any capability: only the file's mode (root's) stood between a privileged
        # VE's root and the host's interrupt routing. Writes back the value it read.
        "v=$(cat /proc/irq/default_smp_affinity); "
        + _refused_inside(
            '(echo "$v" > /proc/irq/default_smp_affinity) 2>/dev/null',
            "wrote the host /proc/irq/default_smp_affinity",
        ),
        completed,
    ),
    Attack(
        "fork-bomb",
        # Forks until its VE's pids limit (the default --ve-pids-max) refuses, and the subshell
        # dies; each child waits on a FIFO, however long the bomb takes. A writer held open
        # for 2 s then lets them all read EOF and end, so the VE can fork its end line again.
        "mkfifo /tmp/hold; ( while :; do read x < /tmp/hold & done ) 2>/dev/null; "
        "sleep 2 > /tmp/hold; sleep 1; echo 'the pids limit held'",
        completed,
    ),
]
FILL = Attack(
    "fill-tmpfs",
    # Keep dd's complaint in memory: the full tmpfs may not take a log line; free it again after.
    'out=$(dd if=/dev/zero of=/fill bs=1M 2>&1); rm -f /fill; echo "$out" | grep -q "No space left" '
    '&& echo "the tmpfs held: no space left" || { echo "ATTACK SUCCEEDED: $out"; exit 1; }',
    completed,
)
ALL = [*ATTACKS, FILL]
VE_OF = {attack.name: index for index, attack in enumerate(ALL, start=1)}

# Host settings an attack reaches for, compared before and after the run.
WATCHED_SYSCTLS = ["vm/swappiness", "vm/overcommit_memory", "vm/dirty_ratio", "kernel/core_pattern"]


def _sysctls() -> dict[str, str]:
    found = {}
    for name in WATCHED_SYSCTLS:
        with open(f"/proc/sys/{name}") as handle:
            found[name] = handle.read()
    return found


@pytest.fixture(scope="module")
def host_sysctls_before() -> dict[str, str]:
    return _sysctls()


def _prepare(experiment: Experiment, index: int, attack: Attack) -> None:
    etc = os.path.join(experiment.layout.ve_upper(index), "etc", "lxcexp")
    os.makedirs(etc, exist_ok=True)
    with open(os.path.join(etc, "attack.sh"), "w") as handle:
        handle.write(attack.script + "\n")


@pytest.fixture(scope="module")
def verdicts(ve_experiment: Experiment, host_sysctls_before: dict[str, str]) -> dict[str, VERecord]:
    """Every attack run; the tmpfs filler last and alone (a full tmpfs stops every log)."""
    assert ve_experiment.config.count == len(ALL), f"this suite needs --ve-count={len(ALL)}"
    for index, attack in enumerate(ALL, start=1):
        _prepare(ve_experiment, index, attack)
    last = len(ATTACKS)
    ve_experiment.start(1, last)
    records = ve_experiment.wait(1, last)
    ve_experiment.start(last + 1, last + 1)
    records += ve_experiment.wait(last + 1, last + 1)
    return {ALL[record.index - 1].name: record for record in records}


@pytest.mark.parametrize("attack", [pytest.param(a, id=f"ve{VE_OF[a.name]}-{a.name}") for a in ALL])
def test_attack_is_contained(attack: Attack, verdicts: dict[str, VERecord]) -> None:
    record = verdicts[attack.name]
    print(f"{record.name} {attack.name}: {record.failure or 'completed'}; output: {record.output!r}")
    assert attack.contained(record), f"{record.name} ({attack.name}) not contained: {record.failure}, {record.output!r}"


def test_the_fork_bomb_met_its_pids_limit(ve_experiment: Experiment, verdicts: dict[str, VERecord]) -> None:
    # No limit set by this suite: the run's own per-VE default (--ve-pids-max) holds the bomb.
    limit = ve_experiment.config.ve_pids_max
    assert limit > 0, "--ve-pids-max=max: the VEs have no process limit to contain a fork bomb"
    directory = ve_pids_cgroup(ve_experiment.config.tag, f"ve{VE_OF['fork-bomb']}")
    assert directory is not None, "this host has no pids cgroup controller"
    with open(os.path.join(directory, "pids.max")) as handle:
        assert handle.read().strip() == str(limit)
    # cgroup v1 counts a refused fork in the cgroup that forked: with --ve-init=system that is
    # below the VE's own (veN/payload, its namespace's root), so the whole subtree is read.
    refused = sum(refused_forks(cgroup) for cgroup, _, _ in os.walk(directory))
    assert refused > 0, "the bomb never reached its pids limit"


def test_every_verdict_names_its_ve(verdicts: dict[str, VERecord]) -> None:
    # One line per VE, as the run's summary shows them: the run ended by itself with a verdict each.
    assert sorted(record.index for record in verdicts.values()) == list(range(1, len(ALL) + 1))
    for name, record in sorted(verdicts.items(), key=lambda item: item[1].index):
        print(f"{record.name:5} {name:17} {record.failure or 'completed'}")


def test_host_sysctls_unchanged(verdicts: dict[str, VERecord], host_sysctls_before: dict[str, str]) -> None:
    assert _sysctls() == host_sysctls_before
