"""The experiment's bridge and addresses, made with pyroute2 (no shelling out to `ip`).

Our links carry the root's tag: the bridge in its alias (`lxcexp:<tag>`), the host
side of each VE's veth in its name (`ve<tag>-<N>`), so a takedown can prove them ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkDumpInterrupted, NetlinkError

from .addressing import AddressPlan, BridgeLayout, NetworkError
from .signals import signals_deferred

T = TypeVar("T")
ALIAS_PREFIX = "lxcexp:"


def veth_name(tag: str, index: int) -> str:
    return f"ve{tag}-{index}"


def veth_prefix(tag: str) -> str:
    return f"ve{tag}-"


def _dump(request: Callable[[], Iterable[T]], attempts: int = 20) -> list[T]:
    """A netlink dump, retried: the kernel interrupts a dump when links change meanwhile
    (other experiments, VEs starting or stopping), which is routine on a busy host."""
    for attempt in range(attempts):
        try:
            return list(request())
        except NetlinkDumpInterrupted:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    return []


def _link_name(link: dict) -> str:
    return link.get_attr("IFLA_IFNAME")


def _link_alias(link: dict) -> str | None:
    return link.get_attr("IFLA_IFALIAS")


def find_link(ip: IPRoute, name: str) -> dict | None:
    found = ip.link("get", ifname=name) if ip.link_lookup(ifname=name) else []
    return found[0] if found else None


def overlapping_routes(subnet: ipaddress.IPv4Network, ignore: str | None = None) -> list[str]:
    """Host addresses that overlap the subnet (read-only check, before anything is made)."""
    clashes = []
    with IPRoute() as ip:
        for addr in _dump(lambda: ip.get_addr(family=2)):
            network = ipaddress.IPv4Network(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}", strict=False)
            label = addr.get_attr("IFA_LABEL")
            if network.overlaps(subnet) and not network.is_loopback and label != ignore:
                clashes.append(f"{network} on {label}")
    return clashes


def bridge_owner(name: str) -> str | None:
    """'ours:<tag>' / 'foreign' / None when no link has that name."""
    with IPRoute() as ip:
        link = find_link(ip, name)
        if link is None:
            return None
        alias = _link_alias(link) or ""
        return alias[len(ALIAS_PREFIX) :] if alias.startswith(ALIAS_PREFIX) else "foreign"


IPV6_PROC = "/proc/sys/net/ipv6"


def host_has_ipv6(proc: str = IPV6_PROC) -> bool:
    """False on a kernel booted with ipv6.disable=1 (or built without IPv6): no net.ipv6 sysctls."""
    return os.path.isdir(proc)


def _disable_ipv6(name: str) -> None:
    """The experiment is IPv4; IPv6 would add link-local chatter on every port."""
    path = f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"
    if os.path.exists(path):
        with open(path, "w") as handle:
            handle.write("1")


def _add_bridge(ip: IPRoute, name: str, tag: str) -> int:
    if ip.link_lookup(ifname=name):
        raise NetworkError(f"an interface named {name} already exists and is not this experiment's")
    # Signals wait until the alias is set: a bridge cut off before it carries our alias
    # could never be proven ours, and takedown would leave it behind.
    with signals_deferred():
        try:
            # No IGMP snooping: VEs use no multicast, and each port would cost timers and
            # a walk of the bridge's multicast state as it joins and leaves.
            ip.link("add", ifname=name, kind="bridge", br_mcast_snooping=0)
        except NetlinkError as error:
            raise NetworkError(f"creating bridge {name} failed: {error}") from None
        index = ip.link_lookup(ifname=name)[0]
        ip.link("set", index=index, ifalias=f"{ALIAS_PREFIX}{tag}")
    # A fixed MAC: a bridge otherwise takes its lowest port's, which changes as VEs join,
    # and VEs that had resolved the gateway then send to a MAC nobody answers (seen:
    # ping-gateway losing every ping after the first).
    ip.link("set", index=index, address=bridge_mac(name))
    _disable_ipv6(name)
    return index


def bridge_mac(name: str) -> str:
    """A stable, locally administered unicast MAC for our bridge `name`."""
    digest = hashlib.sha1(name.encode()).hexdigest()
    return "02:" + ":".join(digest[i : i + 2] for i in range(0, 10, 2))


def create_bridge(name: str, tag: str, plan: AddressPlan) -> None:
    with IPRoute() as ip:
        index = _add_bridge(ip, name, tag)
        try:
            ip.addr("add", index=index, address=str(plan.gateway), prefixlen=plan.prefixlen)
            ip.link("set", index=index, state="up")
        except BaseException:
            ip.link("del", index=index)
            raise


def create_network(layout: BridgeLayout, plan: AddressPlan, sub_bridges: Iterable[int] | None = None) -> None:
    """The main bridge with the host's address, then the sub-bridges joined to it (all the
    layout has, unless `sub_bridges` names which)."""
    create_bridge(layout.main, layout.tag, plan)
    add_sub_bridges(layout, range(1, layout.sub_bridges + 1) if sub_bridges is None else sub_bridges)


def add_sub_bridges(layout: BridgeLayout, numbers: Iterable[int]) -> None:
    """Sub-bridges `numbers` of the layout, each joined to the main bridge by its uplink."""
    numbers = list(numbers)
    if not numbers:
        return
    with IPRoute() as ip:
        main_index = ip.link_lookup(ifname=layout.main)[0]
        for number in numbers:
            sub_index = _add_bridge(ip, layout.sub_bridge(number), layout.tag)
            up_name, down_name = layout.uplink(number)
            ip.link("add", ifname=up_name, kind="veth", peer=down_name)
            for name, master in ((up_name, main_index), (down_name, sub_index)):
                _disable_ipv6(name)
                ip.link("set", index=ip.link_lookup(ifname=name)[0], master=master, state="up")
            ip.link("set", index=sub_index, state="up")


def delete_bridge(name: str, tag: str) -> bool:
    """Delete the bridge if it is ours; True if it was deleted."""
    with IPRoute() as ip:
        link = find_link(ip, name)
        if link is None or _link_alias(link) != f"{ALIAS_PREFIX}{tag}":
            return False
        try:
            ip.link("del", index=link["index"])
        except NetlinkError as error:
            if error.code != 19:  # ENODEV: gone meanwhile
                raise
        return True


def bridge_ports(name: str) -> list[str]:
    if "/" not in name:
        # sysfs, not a netlink dump a busy host keeps interrupting (see our_veths).
        with contextlib.suppress(FileNotFoundError):
            return sorted(os.listdir(f"/sys/class/net/{name}/brif"))
        if os.path.isdir("/sys/class/net"):
            return []  # no such bridge
    with IPRoute() as ip:
        indexes = ip.link_lookup(ifname=name)
        if not indexes:
            return []
        links = _dump(ip.get_links)
        return [_link_name(link) for link in links if link.get_attr("IFLA_MASTER") == indexes[0]]


def our_veths(tag: str) -> list[str]:
    """Every link named with the root's tag: VE veths, sub-bridges, uplinks."""
    prefix = f"ve{tag}"
    try:
        # sysfs lists the host's links without a netlink dump, which a host with many
        # VEs starting and stopping interrupts over and over (seen: 20 retries failing).
        return sorted(name for name in os.listdir("/sys/class/net") if name.startswith(prefix))
    except OSError:
        pass
    with IPRoute() as ip:
        return [_link_name(link) for link in _dump(ip.get_links) if _link_name(link).startswith(prefix)]


def wait_for_ve_veths_to_go(tag: str, quiet_for: float = 5.0, few: int = 16) -> int:
    """Wait while the host ends of the VEs' veths are going, until `few` are left; returns
    how many are left.

    Each goes with its VE's network namespace, which the kernel frees in batches once the VE
    is dead. Deleting them one by one meanwhile (5000 of 10,000 VEs' still there) took 8 s,
    each deletion an unregistration of its own under RTNL against the kernel's batches; a
    few are quicker deleted than waited for. Gives up when none went for `quiet_for`
    seconds (a veth something else keeps alive).
    """
    prefix = veth_prefix(tag)

    def count() -> int:
        return sum(name.startswith(prefix) for name in our_veths(tag))

    left, moved = count(), time.monotonic()
    while left > few and time.monotonic() - moved < quiet_for:
        time.sleep(0.2)
        now = count()
        if now < left:
            moved = time.monotonic()
        left = now
    return left


def delete_links(names: list[str]) -> None:
    with IPRoute() as ip:
        for name in names:
            for index in ip.link_lookup(ifname=name):
                try:
                    ip.link("del", index=index)
                except NetlinkError as error:
                    if error.code != 19:
                        raise
