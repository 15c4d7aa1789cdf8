"""The workloads `--ve-workload` names and their kinds: plain data, so that validating an
option (config.py) needs neither the workload's files nor netlink."""

from __future__ import annotations

PING_WORKLOADS = ("ping-localhost", "ping-gateway", "ping-neighbour")
NETWORK_WORKLOADS = ("ping-gateway", "ping-neighbour")
WORKLOADS = (*PING_WORKLOADS, "idle")
COMMAND_PREFIX = "cmd:"
# Seconds a network workload waits for its target's first answer (a neighbour may start later).
REACH_TIMEOUT = 60


def workload_kind(workload: str) -> str:
    """'cmd:echo hi' -> 'command'; the named workloads and 'hook' are their own kind."""
    return "command" if workload.startswith(COMMAND_PREFIX) else workload
