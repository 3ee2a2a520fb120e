"""The stack: one nursery, one task per layer, bounded channels between them.

Theory of operation
-------------------
::

    device --(link_rx)--> ethernet --up--> ipv4 --up--> icmp
           <--send_batch--         <-down--      <-down--

``open_stack`` starts, in its own nursery, the link's background task and one
task per layer: ``link_rx`` (drains the device), ``ethernet`` (Ethernet input,
ARP and framing), ``ipv4`` and ``icmp``. Each layer task owns its machine from
``proto/``, sleeps until a message arrives or the machine's next timer, feeds
the machine with the current time, and forwards what the machine produced.

Messages are ``(kind, list)`` tuples so one wake-up moves a whole batch.
Upward hops use ``send_nowait`` and count a drop when the next layer is
saturated; downward hops ``await send`` (backpressure towards the producer).
Blocking edges only point down, so no cycle of blocking sends exists.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any

import attrs
import trio

from ..link.base import Link, LinkError, RxFrame
from ..proto.arp import ArpMachine, NeighbourInfo
from ..proto.counters import Counters
from ..proto.ethernet import KIND_ARP, KIND_IPV4, EthernetInput
from ..proto.icmp import EchoReply, IcmpErrorReport, IcmpMachine
from ..proto.ipv4 import Delivery, Ipv4Machine, OutDatagram
from ..proto.route import Interface, NoRouteError, RouteTable
from ..wire import icmp as wicmp
from ..wire import ipv4 as wip
from ..wire.addr import ip_to_str, mac_to_str
from .channels import AlarmClock, Mailbox, offer, send_upward
from .config import StackConfig

_current: contextvars.ContextVar[Stack] = contextvars.ContextVar("trio_netstack_stack")

Message = tuple[str, list[Any]]


@attrs.define(slots=True)
class ErrorRequest:
    """Ask the ICMP layer to report an error about a datagram we received."""

    type: int
    code: int
    header: wip.Ipv4Header
    data: bytes | memoryview
    broadcast: bool


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
    """A frozen snapshot of every counter, by layer; drops are named by reason."""

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


class Stack:
    """A running stack. Create it with :func:`open_stack`."""

    def __init__(self, link: Link, mac: bytes, config: StackConfig, secret: int, mtu: int) -> None:
        self.link = link
        self.mac = mac
        self.config = config
        self.mtu = mtu
        self.routes = RouteTable(mtu)
        self.counters = Counters()
        self._ethernet = EthernetInput(mac)
        self._arp = ArpMachine(mac, config.arp)
        self._ipv4 = Ipv4Machine(self.routes, secret, config.ipv4)
        self._icmp = IcmpMachine(config.icmp_rate_limit)
        q = config.layer_queue
        self.clock = AlarmClock()  # delivers every layer's and connection's timer wake-ups
        self._eth_box: Mailbox[Message] = Mailbox(q, self.clock)
        self._ip_box: Mailbox[Message] = Mailbox(q, self.clock)
        self._icmp_box: Mailbox[Message] = Mailbox(q, self.clock)
        from .udp import UdpLayer

        self.udp = UdpLayer(self, secret)
        from .tcp import TcpLayer

        self.tcp = TcpLayer(self, secret)
        self._pingers: dict[int, trio.MemorySendChannel[EchoReply | IcmpErrorReport]] = {}
        self._next_echo_id = secret & 0xFFFF
        self._closed = False

    # --- public surface --------------------------------------------------------------

    @property
    def addresses(self) -> list[str]:
        return [f"{ip_to_str(i.address)}/{i.prefix_len}" for i in self.routes.interfaces]

    @property
    def mac_address(self) -> str:
        return mac_to_str(self.mac)

    def add_address(self, address: int, prefix_len: int) -> None:
        self.routes.add_interface(Interface(address, prefix_len))
        self._arp.add_address(address, trio.current_time())
        self._kick_ethernet()

    def set_gateway(self, gateway: int | None) -> None:
        self.routes.set_default_gateway(gateway)

    def neighbours(self) -> list[NeighbourInfo]:
        return self._arp.neighbours()

    def statistics(self) -> StackStatistics:
        return StackStatistics(
            link=_frozen(self.link.stats.snapshot()),
            ethernet=_frozen(self._ethernet.counters),
            arp=_frozen(self._arp.counters),
            ipv4=_frozen(self._ipv4.counters),
            pmtu=_frozen({**self._ipv4.pmtu.counters, "entries": len(self._ipv4.pmtu)}),
            reassembly=_frozen(
                {
                    **self._ipv4.reassembler.counters,
                    "bytes_held": self._ipv4.reassembler.bytes_held,  # gauges, not counts
                    "datagrams_held": len(self._ipv4.reassembler),
                }
            ),
            icmp=_frozen(self._icmp.counters),
            udp=_frozen(self.udp.demux.counters),
            tcp=_frozen(
                {
                    **self.tcp.demux.counters,
                    **self.tcp.totals(),
                    "connections": len(self.tcp.demux.connections),  # gauges
                    "time_wait": len(self.tcp.demux.time_wait),
                    "tasks": len(self.tcp.handles),
                }
            ),
            runtime=_frozen(self.counters),
        )

    # --- used by the API modules ------------------------------------------------------

    def path_mtu(self, host: str) -> int:
        """The MTU towards ``host`` (the route's, lowered by path MTU discovery)."""
        from ..wire.addr import ip_from_str

        return self._ipv4.path_mtu(ip_from_str(host), trio.current_time())

    def path_mtu_to(self, dst: int) -> int:
        return self._ipv4.path_mtu(dst, trio.current_time())

    def local_mss(self, dst: int) -> int:
        """The MSS we announce towards ``dst``: path MTU less IPv4 and TCP headers."""
        try:
            return self.path_mtu_to(dst) - 40
        except NoRouteError:
            return self.mtu - 40

    def check_route(self, dst: int) -> int:
        """Raise NoRouteError now (in the caller) rather than drop later; return the MTU."""
        return self.routes.lookup(dst).mtu

    async def send_datagrams(self, datagrams: list[OutDatagram]) -> None:
        """Hand datagrams to the IPv4 layer (waits while it is saturated).

        An application-facing send: a checkpoint like any Trio send (cancelled before
        anything is queued, a schedule point after). Layer tasks use
        :meth:`queue_datagrams`, which yields only when the IPv4 layer is full.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self.queue_datagrams(datagrams)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def queue_datagrams(self, datagrams: list[OutDatagram]) -> None:
        if self._closed:
            # The stack closes and cancels its tasks at once: its own tasks (a connection
            # still flushing) end with Cancelled, not with an error of their own.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.ClosedResourceError("the stack is closed")
        await self._ip_box.put(("tx", datagrams))

    def request_icmp_errors(self, requests: list[tuple[int, int, Delivery]]) -> None:
        """Ask the ICMP layer (without blocking) to report errors about received datagrams."""
        errors = [ErrorRequest(t, c, d.header, d.payload, d.broadcast) for t, c, d in requests]
        if not send_upward(self._icmp_box, ("rx", [[], errors, []])):
            self.counters.incr("icmp_queue_full")

    def register_pinger(self, channel: trio.MemorySendChannel[EchoReply | IcmpErrorReport]) -> int:
        for _ in range(0x10000):
            self._next_echo_id = (self._next_echo_id + 1) & 0xFFFF
            if self._next_echo_id not in self._pingers:
                self._pingers[self._next_echo_id] = channel
                return self._next_echo_id
        raise OSError("too many concurrent pingers (65536 echo identifiers in use)")

    def unregister_pinger(self, ident: int) -> None:
        self._pingers.pop(ident, None)

    def build_echo_request(
        self, dst: int, ident: int, seq: int, payload: bytes, ttl: int | None
    ) -> OutDatagram:
        return self._icmp.echo_request(dst, ident, seq, payload, ttl=ttl)

    # --- layer tasks -----------------------------------------------------------------

    def _kick_ethernet(self) -> None:
        # Wake the ethernet task so it flushes frames produced outside it (GARP).
        send_upward(self._eth_box, ("kick", []))

    async def _link_rx(self, *, task_status: trio.TaskStatus[None]) -> None:
        link = self.link
        eth = self._eth_box
        task_status.started()
        while True:
            try:
                batch = await link.receive_batch()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            if not send_upward(eth, ("rx", batch)):
                self.counters.incr("ethernet_queue_full", len(batch))

    async def _ethernet_task(self, *, task_status: trio.TaskStatus[None]) -> None:
        arp = self._arp
        classify = self._ethernet.classify_untrusted
        inbox = self._eth_box
        task_status.started()
        while True:
            deadline = arp.get_timer()
            messages = await inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            to_ip: list[tuple[memoryview, int]] = []
            for kind, items in messages:
                if kind == "rx":
                    frame: RxFrame
                    for frame in items:
                        result = classify(frame[0])
                        if result is None:
                            continue
                        if result[0] == KIND_IPV4:
                            to_ip.append((result[1], frame[1]))
                        elif result[0] == KIND_ARP:
                            arp.input_untrusted(result[1], now)
                elif kind == "tx":
                    for next_hop, packet in items:
                        arp.output(next_hop, packet, now)
            arp.handle_timer(now)
            if to_ip and not send_upward(self._ip_box, ("rx", to_ip)):
                self.counters.incr("ipv4_queue_full", len(to_ip))
            if arp.unreachable:
                failed, arp.unreachable = arp.unreachable, []
                if not send_upward(self._ip_box, ("unreachable", failed)):
                    self.counters.incr("ipv4_queue_full", len(failed))
            if arp.frames_out:
                frames, arp.frames_out = arp.frames_out, []
                await self.link.send_batch(frames)

    async def _ipv4_task(self, *, task_status: trio.TaskStatus[None]) -> None:
        ipv4 = self._ipv4
        inbox = self._ip_box
        task_status.started()
        while True:
            deadline = ipv4.get_timer()
            messages = await inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            to_icmp: list[Delivery] = []
            to_udp: list[Delivery] = []
            to_tcp: list[Delivery] = []
            down: list[tuple[int, bytes]] = []
            # Errors to send: (type, code, delivery-or-(header, data))
            errors: list[ErrorRequest] = []
            unreachable: list[bytes] = []
            for kind, items in messages:
                if kind == "rx":
                    for data, flags in items:
                        delivery = ipv4.input_untrusted(data, flags, now)
                        if delivery is None:
                            continue
                        protocol = delivery.header.protocol
                        if protocol == wip.PROTO_TCP:
                            to_tcp.append(delivery)
                        elif protocol == wip.PROTO_UDP:
                            to_udp.append(delivery)
                        elif protocol == wip.PROTO_ICMP:
                            to_icmp.append(delivery)
                        else:
                            # RFC 1122 3.2.2.1: protocol unreachable.
                            ipv4.counters.incr("unknown_protocol")
                            errors.append(
                                ErrorRequest(
                                    wicmp.DEST_UNREACHABLE,
                                    wicmp.UNREACH_PROTOCOL,
                                    delivery.header,
                                    delivery.payload,
                                    delivery.broadcast,
                                )
                            )
                elif kind == "tx":
                    for datagram in items:
                        try:
                            down.extend(ipv4.output(datagram, now))
                        except OSError as exc:  # no route, too big: counted by reason
                            self.counters.incr(f"tx_error_{exc.errno}")
                elif kind == "unreachable":
                    for _ip, packets in items:
                        unreachable.extend(packets)
            for expired in ipv4.handle_timer(now):
                if expired.first is not None:
                    # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded).
                    header, data = expired.first
                    errors.append(
                        ErrorRequest(
                            wicmp.TIME_EXCEEDED, wicmp.EXCEEDED_REASSEMBLY, header, data, False
                        )
                    )
            if to_tcp and not send_upward(self.tcp.inbox, ("rx", to_tcp)):
                self.counters.incr("tcp_queue_full", len(to_tcp))
            if to_udp and not send_upward(self.udp.inbox, ("rx", to_udp)):
                self.counters.incr("udp_queue_full", len(to_udp))
            if to_icmp or errors or unreachable:
                message = ("rx", [to_icmp, errors, unreachable])
                if not send_upward(self._icmp_box, message):
                    self.counters.incr("icmp_queue_full")
            if down:
                await self._eth_box.put(("tx", down))

    async def _icmp_task(self, *, task_status: trio.TaskStatus[None]) -> None:
        icmp = self._icmp
        inbox = self._icmp_box
        task_status.started()
        while True:
            messages = await inbox.get_batch()
            now = trio.current_time()
            for _kind, (deliveries, errors, unreachable) in messages:
                for delivery in deliveries:
                    icmp.input_untrusted(delivery, now)
                for err in errors:
                    icmp.send_error(
                        err.type, err.code, err.header, err.data, now, to_broadcast=err.broadcast
                    )
                for packet in unreachable:
                    # Packets ARP could not deliver: host unreachable (RFC 1122 3.2.2.1),
                    # reported locally as if the error had come from ourselves.
                    icmp.local_error(
                        self._own_source(packet),
                        wicmp.DEST_UNREACHABLE,
                        wicmp.UNREACH_HOST,
                        packet,
                        now,
                    )
            if icmp.echo_replies:
                replies, icmp.echo_replies = icmp.echo_replies, []
                for reply in replies:
                    self._to_pinger(reply.ident, reply)
            if icmp.errors:
                reports, icmp.errors = icmp.errors, []
                for_udp = []
                for_tcp = []
                for report in reports:
                    if (report.type, report.code) == (
                        wicmp.DEST_UNREACHABLE,
                        wicmp.UNREACH_FRAG_NEEDED,
                    ):
                        self._learn_pmtu(report, now)
                    ident = report.echo_id
                    if ident is not None:
                        self._to_pinger(ident, report)
                    elif report.original.protocol == wip.PROTO_UDP:
                        for_udp.append(report)
                    elif report.original.protocol == wip.PROTO_TCP:
                        for_tcp.append(report)
                    else:
                        self.counters.incr("icmp_error_unclaimed")
                if for_udp and not send_upward(self.udp.inbox, ("icmp", for_udp)):
                    self.counters.incr("udp_queue_full", len(for_udp))
                if for_tcp and not send_upward(self.tcp.inbox, ("icmp", for_tcp)):
                    self.counters.incr("tcp_queue_full", len(for_tcp))
            if icmp.out:
                out, icmp.out = icmp.out, []
                await self._ip_box.put(("tx", out))

    def _learn_pmtu(self, report: IcmpErrorReport, now: float) -> None:
        # RFC 1191: only about a datagram we sent (the quoted source is ours).
        original = report.original
        if not self.routes.is_local(original.src):
            self.counters.incr("pmtu_report_not_ours")
            return
        try:
            current = self._ipv4.path_mtu(original.dst, now)
        except NoRouteError:
            return
        self._ipv4.pmtu.learn(
            original.dst, report.next_hop_mtu or 0, original.total_length, current, now
        )

    def _own_source(self, packet: bytes) -> int:
        return int.from_bytes(packet[12:16], "big")

    def _to_pinger(self, ident: int, event: EchoReply | IcmpErrorReport) -> None:
        channel = self._pingers.get(ident)
        if channel is None:
            self.counters.incr("echo_unclaimed")
            return
        if not offer(channel, event):  # never blocks the ICMP layer
            self.counters.incr("pinger_queue_full")

    def _close_mailboxes(self) -> None:
        # Producers parked on a full mailbox fail instead of waiting for a dead consumer.
        for box in (self._eth_box, self._ip_box, self._icmp_box, self.udp.inbox, self.tcp.inbox):
            box.close()

    async def _run(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.link.run)
        await nursery.start(self.clock.run)
        for task in (
            self._ethernet_task,
            self._ipv4_task,
            self._icmp_task,
            self.udp.run,
            self.tcp.run,
            self._link_rx,
        ):
            await nursery.start(task)


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
    from ..link import ImpairedLink, Impairment, PcapLink, open_packet, open_tap

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
    import ipaddress

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
    from ..wire.addr import ip_from_str, mac_from_str

    own_mac = mac_from_str(mac) if isinstance(mac, str) else mac
    address = parse_interface(ip) if ip is not None else None
    gw = ip_from_str(gateway) if gateway is not None else None
    device = _open_link(link, tap, iface, netns, own_mac, pcap, impair, offload)
    try:
        own_mac = own_mac or device.hw_address or _random_mac()
        use_mtu = mtu or device.mtu
        if use_mtu > device.mtu or use_mtu < 68:
            raise ValueError(
                f"MTU {use_mtu} must be between 68 (RFC 791) and the device's {device.mtu}"
            )
        key = secret if secret is not None else int.from_bytes(os.urandom(8), "big")
        stack = Stack(device, own_mac, config or StackConfig(), key, use_mtu)
        failure: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await stack._run(nursery)
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
                stack._closed = True
                nursery.cancel_scope.cancel()
                stack._close_mailboxes()
        if failure is not None:
            raise failure
    finally:
        await device.aclose()


__all__ = ["LinkError", "NoRouteError", "Stack", "StackStatistics", "current_stack", "open_stack"]
