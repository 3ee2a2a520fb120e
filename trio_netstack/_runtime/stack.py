"""The stack: interfaces and layers in one nursery, the current stack, statistics.

Theory of operation
-------------------
::

    device --(link_rx, per interface)--> ipv4 (ip.py) --Deliveries--> icmp / udp / tcp
                     `--ArpInput--> ethernet (per interface: ARP, its timers, TX backlog)
    device <--try_send-- IpLayer.queue_datagrams (IPv4 output + ARP, in the sending task)

``open_stack`` builds the layers (``IpLayer``, ``IcmpLayer``, ``UdpLayer``,
``TcpLayer``; each knows only the narrow ``transport.Network`` of the IP layer
below it), starts their tasks in its own nursery, attaches the device as the
first interface and configures its address. Layers exchange the typed messages
of ``events.py``, a batch per message. Upward hops never block and count a drop
when the next layer is saturated; the transmit path runs in the sender's task,
and only frames a device cannot take at once go down to its ethernet task.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import attrs
import trio

from ..link import ImpairedLink, Impairment, PcapLink, open_packet, open_tap
from ..link.base import Link, LinkError
from ..proto.arp import NeighbourInfo
from ..proto.counters import Counters
from ..proto.hooks import Hook, HookPoint
from ..proto.route import IfAddress, NoRouteError, RouteTable
from ..wire.addr import ip_from_str, mac_from_str, mac_to_str
from .channels import AlarmClock
from .config import StackConfig
from .icmp import IcmpLayer
from .interface import NetInterface
from .ip import IpLayer
from .tcp import TcpLayer
from .udp import UdpLayer

_current: contextvars.ContextVar[Stack] = contextvars.ContextVar("trio_netstack_stack")


def current_stack() -> Stack:
    """The stack opened by the innermost ``open_stack`` of this task."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError(
            "no trio_netstack stack is open here: wrap the code in "
            "`async with trio_netstack.open_stack(...)`"
        ) from None


@attrs.frozen
class StackStatistics:
    """A frozen snapshot of every counter, by layer; drops are named by reason.

    ``link``, ``ethernet`` and ``arp`` sum the stack's interfaces (see
    :meth:`Stack.interface_statistics` for one of them).
    """

    link: MappingProxyType[str, int]
    ethernet: MappingProxyType[str, int]
    arp: MappingProxyType[str, int]
    ipv4: MappingProxyType[str, int]
    pmtu: MappingProxyType[str, int]
    reassembly: MappingProxyType[str, int]
    icmp: MappingProxyType[str, int]
    udp: MappingProxyType[str, int]
    tcp: MappingProxyType[str, int]
    runtime: MappingProxyType[str, int]

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {f.name: dict(getattr(self, f.name)) for f in attrs.fields(StackStatistics)}


def _frozen(counts: dict[str, int]) -> MappingProxyType[str, int]:
    return MappingProxyType(dict(sorted(counts.items())))


def _summed(parts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0) + value
    return total


class Stack:
    """A running stack. Create it with :func:`open_stack`."""

    def __init__(self, config: StackConfig, secret: int) -> None:
        self.config = config
        self.counters = Counters()  # what the Trio shell decided (queues full, ...)
        self.clock = AlarmClock()  # delivers every layer's and connection's timer wake-ups
        self.ip = IpLayer(config, secret, self.counters, self.clock)
        self.icmp = IcmpLayer(self.ip, config, secret)
        self.udp = UdpLayer(self.ip, config, secret)
        self.tcp = TcpLayer(self.ip, config, secret)

    # --- interfaces ------------------------------------------------------------------

    @property
    def interfaces(self) -> list[NetInterface]:
        return list(self.ip.interfaces.values())

    def interface(self, which: str | int | None = None) -> NetInterface:
        """An interface by name or index (None: the first one)."""
        for iface in self.ip.interfaces.values():
            if which is None or which in (iface.name, iface.ifindex):
                return iface
        raise LookupError(f"no interface {which!r} (this stack has {self._names()})")

    def _names(self) -> str:
        return ", ".join(i.name for i in self.ip.interfaces.values()) or "none"

    async def add_interface(
        self,
        link: Link,
        *,
        ip: str | None = None,
        mac: str | bytes | None = None,
        mtu: int | None = None,
        name: str | None = None,
    ) -> NetInterface:
        """Attach another device (the caller keeps and closes it) with an optional address."""
        own_mac = mac_from_str(mac) if isinstance(mac, str) else mac
        iface = await self.ip.add_interface(
            link,
            mac=own_mac or link.hw_address or _random_mac(),
            mtu=mtu or link.mtu,
            name=name,
        )
        if ip is not None:
            self.add_address(*parse_interface(ip), interface=iface.ifindex)
        return iface

    # The first interface, as before several existed.
    @property
    def link(self) -> Link:
        return self.interface().link

    @property
    def mac(self) -> bytes:
        return self.interface().mac

    @property
    def mtu(self) -> int:
        return self.interface().mtu

    @property
    def mac_address(self) -> str:
        return mac_to_str(self.mac)

    # --- addresses and routes ----------------------------------------------------------

    @property
    def routes(self) -> RouteTable:
        return self.ip.routes

    @property
    def addresses(self) -> list[str]:
        return [str(a) for a in self.ip.routes.addresses]

    def add_address(
        self, address: int | str, prefix_len: int, *, interface: str | int | None = None
    ) -> IfAddress:
        """Configure an address (and its connected route) at run time."""
        value = ip_from_str(address) if isinstance(address, str) else address
        return self.ip.add_address(value, prefix_len, self.interface(interface).ifindex)

    def remove_address(self, address: int | str) -> IfAddress:
        """Remove an address: datagrams to it are no longer taken, nor ARP answered."""
        return self.ip.remove_address(ip_from_str(address) if isinstance(address, str) else address)

    def set_gateway(self, gateway: int | str | None) -> None:
        value = ip_from_str(gateway) if isinstance(gateway, str) else gateway
        self.ip.routes.set_default_gateway(value)

    def add_route(
        self, network: str, gateway: str | None = None, *, interface: str | int | None = None
    ) -> None:
        """A route to ``network`` ("198.51.100.0/24") via ``gateway`` or out of ``interface``."""
        net = ipaddress.IPv4Network(network)
        self.ip.routes.add_route(
            int(net.network_address),
            net.prefixlen,
            ip_from_str(gateway) if gateway is not None else None,
            self.interface(interface).ifindex if interface is not None else None,
        )

    def accept_unconfigured(self, on: bool, *, interface: str | int | None = None) -> None:
        """While ``interface`` has no address, take unicast datagrams to any address on it.

        What a DHCP client needs between DISCOVER and ACK: a server may answer by
        unicast to the address it offers (RFC 2131 4.1), before that address is ours.
        """
        ifindex = self.interface(interface).ifindex
        if on:
            self.ip.ipv4.accept_unconfigured.add(ifindex)
        else:
            self.ip.ipv4.accept_unconfigured.discard(ifindex)

    def attach_hook(self, point: HookPoint, hook: Hook, priority: int = 0) -> Callable[[], None]:
        """Attach an IPv4 hook (``proto/hooks.py``); returns a function that detaches it."""
        return self.ip.ipv4.hooks.attach(point, hook, priority)

    def neighbours(self) -> list[NeighbourInfo]:
        return [n for iface in self.ip.interfaces.values() for n in iface.arp.neighbours()]

    def path_mtu(self, host: str) -> int:
        """The MTU towards ``host`` (the route's, lowered by path MTU discovery)."""
        return self.ip.path_mtu(ip_from_str(host))

    # --- statistics --------------------------------------------------------------------

    def interface_statistics(self, which: str | int | None = None) -> dict[str, dict[str, int]]:
        iface = self.interface(which)
        return {
            "link": iface.link.stats.snapshot(),
            "ethernet": dict(iface.ethernet.counters),
            "arp": dict(iface.arp.counters),
        }

    def statistics(self) -> StackStatistics:
        ifaces = list(self.ip.interfaces.values())
        ipv4 = self.ip.ipv4
        tcp = self.tcp
        return StackStatistics(
            link=_frozen(_summed([i.link.stats.snapshot() for i in ifaces])),
            ethernet=_frozen(_summed([dict(i.ethernet.counters) for i in ifaces])),
            arp=_frozen(_summed([dict(i.arp.counters) for i in ifaces])),
            ipv4=_frozen(ipv4.counters),
            pmtu=_frozen({**ipv4.pmtu.counters, "entries": len(ipv4.pmtu)}),
            reassembly=_frozen(
                {
                    **ipv4.reassembler.counters,
                    "bytes_held": ipv4.reassembler.bytes_held,  # gauges, not counts
                    "datagrams_held": len(ipv4.reassembler),
                }
            ),
            icmp=_frozen(self.icmp.machine.counters),
            udp=_frozen(self.udp.demux.counters),
            tcp=_frozen(
                {
                    **tcp.demux.counters,
                    **tcp.totals(),
                    "connections": len(tcp.demux.connections),  # gauges
                    "time_wait": len(tcp.demux.time_wait),
                    "tasks": len(tcp.handles),
                }
            ),
            runtime=_frozen(self.counters),
        )

    # --- running -----------------------------------------------------------------------

    async def _run(self, nursery: trio.Nursery) -> None:
        self.ip.use_nursery(nursery)
        await nursery.start(self.clock.run)
        for task in (self.ip.run, self.icmp.run, self.udp.run, self.tcp.run):
            await nursery.start(task)

    def _close(self) -> None:
        # Producers parked on a full mailbox fail instead of waiting for a dead consumer.
        self.ip.close()
        for box in (self.icmp.inbox, self.udp.inbox, self.tcp.inbox):
            box.close()


def _random_mac() -> bytes:
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02  # unicast, locally administered (IEEE 802 U/L bit)
    return bytes(raw)


def _open_link(
    link: Link | None,
    tap: str | None,
    iface: str | None,
    netns: str | None,
    mac: bytes | None,
    pcap: str | None,
    impair: Any,
    offload: bool = False,
) -> Link:
    chosen = sum(x is not None for x in (link, tap, iface))
    if chosen != 1:
        raise ValueError("give exactly one of link=, tap= or iface= to open_stack()")
    if link is None:
        if tap is not None:
            link = open_tap(tap, netns=netns, offload=offload)
        elif offload:
            raise ValueError("offload=True needs a TAP device (tap=...)")
        else:
            assert iface is not None
            link = open_packet(iface, netns=netns, stack_mac=mac)
    if impair is not None:
        spec = Impairment.parse(impair) if isinstance(impair, str) else impair
        link = ImpairedLink(link, spec)
    if pcap is not None:
        link = PcapLink(link, pcap)
    return link


def parse_interface(text: str) -> tuple[int, int]:
    """'192.0.2.2/24' -> (address, prefix length); a bare address means /32."""
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise ValueError(f"not an IPv4 address with prefix: {text!r} (like 192.0.2.2/24)") from None
    return int(iface.ip), iface.network.prefixlen


@asynccontextmanager
async def open_stack(
    link: Link | None = None,
    *,
    tap: str | None = None,
    iface: str | None = None,
    netns: str | None = None,
    ip: str | None = None,
    gateway: str | None = None,
    mac: str | bytes | None = None,
    mtu: int | None = None,
    pcap: str | None = None,
    impair: Any = None,
    config: StackConfig | None = None,
    secret: int | None = None,
    offload: bool = False,
) -> AsyncIterator[Stack]:
    """Run a stack on a device for the duration of the block.

    Exactly one of ``link`` (an opened :class:`~trio_netstack.link.Link`), ``tap``
    (a TAP device name) or ``iface`` (an Ethernet interface for AF_PACKET) names
    the device; ``netns`` opens the device inside that network namespace. ``ip``
    is ``"A.B.C.D/P"``; ``gateway`` the default router. ``pcap`` records every
    frame; ``impair`` (an :class:`~trio_netstack.link.Impairment` or its string
    form) injects faults. ``offload`` opens a TAP with IFF_VNET_HDR checksum and TSO
    offload, so the kernel hands over large TCP segments. ``secret`` seeds
    identifier generation (tests).
    """
    own_mac = mac_from_str(mac) if isinstance(mac, str) else mac
    address = parse_interface(ip) if ip is not None else None
    gw = ip_from_str(gateway) if gateway is not None else None
    device = _open_link(link, tap, iface, netns, own_mac, pcap, impair, offload)
    try:
        use_mtu = mtu or device.mtu
        if use_mtu > device.mtu or use_mtu < 68:
            raise ValueError(
                f"MTU {use_mtu} must be between 68 (RFC 791) and the device's {device.mtu}"
            )
        key = secret if secret is not None else int.from_bytes(os.urandom(8), "big")
        stack = Stack(config or StackConfig(), key)
        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await stack._run(nursery)
            await stack.ip.add_interface(
                device, mac=own_mac or device.hw_address or _random_mac(), mtu=use_mtu
            )
            if address is not None:
                stack.add_address(*address)
            if gw is not None:
                stack.set_gateway(gw)
            token = _current.set(stack)
            try:
                yield stack
            except BaseException as exc:  # re-raised below, outside our nursery
                failure = exc
            finally:
                _current.reset(token)
                # Like a host shutting down: let TCP send the FINs the application
                # asked for (bounded by shutdown_linger), then stop every task.
                with trio.CancelScope(shield=True) as linger:
                    linger.deadline = trio.current_time() + stack.config.shutdown_linger
                    await stack.tcp.shutdown()
                stack.ip.closed = True
                nursery.cancel_scope.cancel()
                stack._close()
        if failure is not None:
            raise failure
    finally:
        await device.aclose()


__all__ = [
    "LinkError",
    "NoRouteError",
    "Stack",
    "StackStatistics",
    "current_stack",
    "open_stack",
]
