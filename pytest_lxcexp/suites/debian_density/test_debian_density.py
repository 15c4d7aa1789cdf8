"""Debian density: VEs of a debootstrapped Debian base, each booting its own systemd.

Run:  pytest --ve-suite debian_density --ve-count=50
The base is built once with debootstrap from the mirror the host's apt uses and cached
in /var/cache/lxcexp (--ve-base-refresh rebuilds it). systemd is each VE's PID 1 and
runs the workload as the service lxcexp-workload.service, which logs as usual.
"""

import os

from pytest_lxcexp.fixtures import describe_failures, describe_start_failures


def _program(pid: int) -> str:
    # The executable, not the comm: right after a start, systemd may still be called "init".
    return os.path.basename(os.readlink(f"/proc/{pid}/exe"))


def test_start(ve_range):
    results = ve_range.start()
    assert all(result.ok for result in results), describe_start_failures(results)


def test_systemd_is_init(ve_range):
    records = ve_range.records()
    not_systemd = {r.name: r.pid and _program(r.pid) for r in records if r.pid is None or _program(r.pid) != "systemd"}
    assert not not_systemd, f"PID 1 is not systemd in: {not_systemd}"


def test_completed(ve_range):
    records = ve_range.wait()
    assert all(record.completed for record in records), describe_failures(records)
