"""Whether the host's firewall drops traffic between VEs on the bridge (read only, changes nothing).

With br_netfilter loaded and net.bridge.bridge-nf-call-iptables = 1, frames crossing a Linux
bridge go through iptables' FORWARD chain. Docker sets that sysctl and a FORWARD policy of
DROP: VEs then reach the host (INPUT) but not each other.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

BRIDGE_NF_CALL_IPTABLES = "/proc/sys/net/bridge/bridge-nf-call-iptables"


def bridge_calls_iptables(path: str = BRIDGE_NF_CALL_IPTABLES) -> bool:
    try:
        with open(path) as handle:
            return handle.read().strip() == "1"
    except OSError:
        return False  # br_netfilter not loaded: bridged frames skip iptables


def forward_policy(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str | None:
    """iptables' FORWARD policy (ACCEPT, DROP), or None when there is no iptables to ask."""
    iptables = shutil.which("iptables")
    if iptables is None:
        return None
    try:
        listed = run([iptables, "-S", "FORWARD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if listed.returncode != 0:
        return None
    for line in listed.stdout.splitlines():
        words = line.split()
        if words[:2] == ["-P", "FORWARD"] and len(words) > 2:
            return words[2]
    return None


def bridge_filter_warning(
    bridge: str,
    calls_iptables: Callable[[], bool] = bridge_calls_iptables,
    policy: Callable[[], str | None] = forward_policy,
) -> str | None:
    """A warning naming the fix when bridged traffic between VEs is dropped by iptables."""
    if not calls_iptables() or policy() != "DROP":
        return None
    return (
        "bridged traffic is filtered by iptables and dropped: net.bridge.bridge-nf-call-iptables = 1 and the "
        "FORWARD policy is DROP (a Docker host?), so VEs cannot reach each other (ping-neighbour fails); fix: "
        f"iptables -I FORWARD -i {bridge} -o {bridge} -j ACCEPT, or sysctl -w net.bridge.bridge-nf-call-iptables=0"
    )
