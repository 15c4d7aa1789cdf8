"""Which address and which bridge each VE gets: plain arithmetic over the subnet and the
count, so that config validation and the workload's files need no netlink."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# A Linux bridge takes at most 1023 ports (BR_MAX_PORTS 1024: the next one fails with
# EXFULL). Past that, VEs go on sub-bridges of this many each, all joined to the main one.
# Small ones: each port a VE's veth joins or leaves costs the kernel a walk of every port of
# that bridge (br_port_state_selection, br_root_selection), so a sub-bridge's VEs pay in
# proportion to its size: with 1000 a bridge, a sixth of a 10,000-VE takedown's CPU.
MAX_BRIDGE_PORTS = 1023
VES_PER_SUB_BRIDGE = 250


class NetworkError(RuntimeError):
    """A bridge or link could not be made or is not ours."""


@dataclass(frozen=True)
class AddressPlan:
    """The bridge takes the subnet's first host address; ve<N> takes the N+1st."""

    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen

    def ve_address(self, index: int) -> ipaddress.IPv4Address:
        if index < 1:
            raise NetworkError(f"VE numbers start at 1, not {index}")
        address = self.subnet.network_address + 1 + index
        if address >= self.subnet.broadcast_address:
            raise NetworkError(f"ve{index} has no address left in {self.subnet}")
        return address


@dataclass(frozen=True)
class BridgeLayout:
    """Which bridge each VE's veth joins.

    Up to 1023 VEs sit on the main bridge. Beyond that every VE sits on a sub-bridge
    `ve<tag>b<K>` of at most 1000 VEs, joined to the main bridge by a veth pair
    `ve<tag>u<K>` (main side) / `ve<tag>d<K>` (sub side): one L2 segment, one subnet,
    so every VE still reaches the host's address on the main bridge and every other VE.
    """

    main: str
    tag: str
    count: int

    @property
    def sub_bridges(self) -> int:
        if self.count <= MAX_BRIDGE_PORTS:
            return 0
        return -(-self.count // VES_PER_SUB_BRIDGE)

    def sub_bridge(self, number: int) -> str:
        return f"ve{self.tag}b{number}"

    def uplink(self, number: int) -> tuple[str, str]:
        return f"ve{self.tag}u{number}", f"ve{self.tag}d{number}"

    def bridge_for(self, index: int) -> str:
        if not self.sub_bridges:
            return self.main
        return self.sub_bridge((index - 1) // VES_PER_SUB_BRIDGE + 1)

    def sub_bridges_for(self, first: int, last: int) -> list[int]:
        """The numbers of the sub-bridges veFIRST..veLAST join (none: they join the main one)."""
        if not self.sub_bridges:
            return []
        return list(range((first - 1) // VES_PER_SUB_BRIDGE + 1, (last - 1) // VES_PER_SUB_BRIDGE + 2))

    def all_bridges(self) -> list[str]:
        return [self.main] + [self.sub_bridge(k) for k in range(1, self.sub_bridges + 1)]
