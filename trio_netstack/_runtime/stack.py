"""The stack: one nursery, one task per layer, bounded channels between them.

Theory of operation
-------------------
::

    device --(link_rx: Ethernet demux)--> ipv4 --up--> icmp / udp / tcp
                     `--ARP--> ethernet (ARP, its timers, frames the device refused)
    device <--try_send-- queue_datagrams (IPv4 output + ARP, in the sending task)

``open_stack`` starts, in its own nursery, the link's background task and one
task per layer: ``link_rx`` (drains the device and sorts frames by EtherType),
``ethernet`` (ARP and the transmit backlog), ``ipv4`` (input, reassembly),
``icmp``, ``udp`` and ``tcp``. Each layer task owns its input machine from
``proto/``, sleeps until a message arrives or the machine's next timer, feeds
the machine with the current time, and forwards what the machine produced.

Messages are ``(kind, list)`` tuples so one wake-up moves a whole batch.
Upward hops use ``send_nowait`` and count a drop when the next layer is
saturated. The transmit path is synchronous in the sender's task (see
:meth:`Stack.queue_datagrams`); only frames the device cannot take at once go
down a channel, to the ethernet task, and a sender waits for room there
(backpressure). Blocking edges only point down, so no cycle of blocking sends
exists.
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

from ..link.base import Link, LinkError
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
        self._tx_queued = 0  # frames waiting in the ethernet task for the device

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
        """Route, frame and transmit datagrams in the calling task (no hop, no yield).

        The transmit path runs in the sender's task, as Linux's ``ip_output`` and
        ``dev_queue_xmit`` run in the sending process: IPv4 output (routing,
        identification, fragmentation) and ARP resolution are synchronous calls into
        their machines, and the frames go to the device with a non-blocking write.
        Only what the device cannot take now is queued for the ethernet task, which
        waits for the device; while anything is queued there, later frames queue
        behind it so the device sees every frame in the order it was produced. The
        receive path and every timer stay in the layer tasks.
        """
        if self._closed:
            # The stack closes and cancels its tasks at once: its own tasks (a connection
            # still flushing) end with Cancelled, not with an error of their own.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.ClosedResourceError("the stack is closed")
        frames = self._frame(datagrams)
        if frames:
            await self._transmit(frames)

    def can_transmit_now(self) -> bool:
        """Whether :meth:`transmit_nowait` may be used: nothing waits for the device."""
        return not self._tx_queued and not self._closed

    def transmit_nowait(self, datagrams: list[OutDatagram]) -> None:
        """:meth:`queue_datagrams` without waiting, when :meth:`can_transmit_now`.

        What the device cannot take at once becomes one message for the ethernet task
        (which then has nothing else to send); if even that finds the mailbox full the
        frames are dropped and counted, as a full device queue drops (TCP recovers).
        """
        frames = self._frame(datagrams)
        if not frames:
            return
        done = self.link.try_send(frames)
        if done < len(frames):
            self.counters.incr("tx_device_busy")
            rest = frames[done:]
            if send_upward(self._eth_box, ("tx", rest)):
                self._tx_queued += len(rest)
            else:
                self.counters.incr("tx_queue_full", len(rest))

    def _frame(self, datagrams: list[OutDatagram]) -> list[bytes]:
        now = trio.current_time()
        ipv4 = self._ipv4
        arp = self._arp
        for datagram in datagrams:
            try:
                packets = ipv4.output(datagram, now)
            except OSError as exc:  # no route, too big: counted by reason
                self.counters.incr(f"tx_error_{exc.errno}")
                continue
            for next_hop, packet in packets:
                arp.output(next_hop, packet, now)
        if arp.unreachable or arp.timers_changed:
            # A resolution started (its retry timer) or failed: the ethernet task owns
            # ARP's timers and reports unreachable neighbours.
            self._kick_ethernet()
        frames, arp.frames_out = arp.frames_out, []
        return frames

    async def _transmit(self, frames: list[bytes]) -> None:
        if not self._tx_queued:
            done = self.link.try_send(frames)
            if done >= len(frames):
                return
            frames = frames[done:]
            self.counters.incr("tx_device_busy")
        # The device is full (or cannot send synchronously): the ethernet task waits
        # for it. Waiting here for room in its mailbox is the backpressure.
        self._tx_queued += len(frames)
        try:
            await self._eth_box.put(("tx", frames))
        except BaseException:
            self._tx_queued -= len(frames)
            raise

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
        # The device's receive task also demultiplexes by EtherType (Linux does this in
        # the driver's NAPI poll, eth_type_trans): IPv4 goes straight to the IPv4 task,
        # ARP to the ethernet task. One hop fewer for every received packet.
        link = self.link
        classify = self._ethernet.classify_untrusted
        ip_box = self._ip_box
        eth_box = self._eth_box
        counters = self.counters
        task_status.started()
        while True:
            try:
                batch = await link.receive_batch()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            while batch:
                to_ip: list[tuple[memoryview, int]] = []
                to_arp: list[memoryview] = []
                for data, flags in batch:
                    result = classify(data)
                    if result is None:
                        continue
                    if result[0] == KIND_IPV4:
                        to_ip.append((result[1], flags))
                    elif result[0] == KIND_ARP:
                        to_arp.append(result[1])
                if to_ip and not send_upward(ip_box, ("rx", to_ip)):
                    counters.incr("ipv4_queue_full", len(to_ip))
                if to_arp and not send_upward(eth_box, ("arp", to_arp)):
                    counters.incr("ethernet_queue_full", len(to_arp))
                # NAPI-style: while frames keep coming, poll once per scheduler pass
                # instead of re-arming the device's readiness (Link.receive_ready).
                await trio.lowlevel.checkpoint()
                try:
                    batch = link.receive_ready()
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return

    async def _ethernet_task(self, *, task_status: trio.TaskStatus[None]) -> None:
        """ARP (input, timers, resolutions) and the frames the device could not take."""
        arp = self._arp
        inbox = self._eth_box
        link = self.link
        task_status.started()
        while True:
            arp.timers_changed = False
            deadline = arp.get_timer()
            messages = await inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            queued: list[bytes] = []  # counted in _tx_queued by their producers
            for kind, items in messages:
                if kind == "arp":
                    for payload in items:
                        arp.input_untrusted(payload, now)
                elif kind == "tx":
                    queued.extend(items)
            arp.handle_timer(now)
            if arp.unreachable:
                failed, arp.unreachable = arp.unreachable, []
                if not send_upward(self._ip_box, ("unreachable", failed)):
                    self.counters.incr("ipv4_queue_full", len(failed))
            # Packets released by a resolution and ARP's own frames go after what
            # waited for the device (all of it is in this round's batch or later).
            frames = queued + arp.frames_out if arp.frames_out else queued
            arp.frames_out = []
            if not frames:
                continue
            self._tx_queued += len(frames) - len(queued)
            try:
                done = link.try_send(frames)
                self._tx_queued -= done
                if done < len(frames):
                    rest = frames[done:]
                    await link.send_batch(rest)
                    self._tx_queued -= len(rest)
            except BaseException:
                self._tx_queued = 0  # the stack is stopping (or the device failed)
                raise

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
                await self.queue_datagrams(out)

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
