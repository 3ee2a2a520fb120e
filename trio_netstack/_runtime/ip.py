"""The IP layer: interfaces, the IPv4 task and the transmit path.

Receive: each interface's ``link_rx`` hands IPv4 payloads to the IPv4 task,
which feeds :class:`~trio_netstack.proto.ipv4.Ipv4Machine` (validation,
reassembly, hooks, forwarding, protocol dispatch) and passes deliveries to the
layer registered for their protocol; errors the machine wants reported go to
ICMP, forwarded datagrams out of the interface their route chose.

Transmit: :meth:`IpLayer.queue_datagrams` runs in the sender's task, as Linux's
``ip_output`` and ``dev_queue_xmit`` run in the sending process: IPv4 output and
ARP are synchronous calls, frames go to the device with a non-blocking write,
and only what the device cannot take goes to the interface's ethernet task.
Transports reach all this through the narrow ``transport.Network`` protocol.
"""

from __future__ import annotations

import math

import trio

from ..link.base import Link
from ..proto.counters import Counters
from ..proto.ipv4 import Delivery, IcmpRequest, Ipv4Machine, OutDatagram, Routed
from ..proto.route import IfAddress, NoRouteError, RouteResult, RouteTable
from .channels import AlarmClock, Mailbox, send_upward
from .config import StackConfig
from .events import Deliveries, HostUnreachable, IcmpRequests, LayerMessage, Received
from .interface import NetInterface

PROTO_ICMP = 1


class IpLayer:
    """Interfaces, routes, the IPv4 machine and its task; the ``Network`` of transports."""

    def __init__(
        self, config: StackConfig, secret: int, counters: Counters, clock: AlarmClock
    ) -> None:
        self.config = config
        self.counters = counters  # the stack's runtime counters
        self._clock = clock
        self.routes = RouteTable()
        self.ipv4 = Ipv4Machine(self.routes, secret, config.ipv4)
        self.ipv4.protocols.clear()  # filled as layers register
        self.interfaces: dict[int, NetInterface] = {}
        self._iface_list: list[NetInterface] = []
        self.inbox: Mailbox[LayerMessage] = Mailbox(config.layer_queue, clock)
        self._handlers: dict[int, tuple[str, Mailbox[LayerMessage]]] = {}
        self._nursery: trio.Nursery | None = None
        self.closed = False

    # --- the Network protocol (what transports use) --------------------------------

    @property
    def clock(self) -> AlarmClock:
        return self._clock

    @property
    def default_mtu(self) -> int:
        return self._iface_list[0].mtu if self._iface_list else 1500

    def register(self, protocol: int, name: str, inbox: Mailbox[LayerMessage]) -> None:
        self._handlers[protocol] = (name, inbox)
        self.ipv4.protocols.add(protocol)

    def handler(self, protocol: int) -> tuple[str, Mailbox[LayerMessage]] | None:
        return self._handlers.get(protocol)

    def route(self, dst: int, oif: int | None = None) -> RouteResult:
        return self.routes.lookup(dst, oif)

    def path_mtu(self, dst: int) -> int:
        return self.ipv4.path_mtu(dst, trio.current_time())

    def is_local(self, address: int) -> bool:
        return self.routes.is_local(address)

    def link_of(self, ifindex: int) -> Link:
        return self.interfaces[ifindex].link

    def request_icmp(self, requests: list[IcmpRequest]) -> None:
        found = self._handlers.get(PROTO_ICMP)
        if found is None or not send_upward(found[1], IcmpRequests(requests)):
            self.counters.incr("icmp_queue_full")

    def report_unreachable(self, message: HostUnreachable) -> None:
        found = self._handlers.get(PROTO_ICMP)
        if found is None or not send_upward(found[1], message):
            self.counters.incr("icmp_queue_full", len(message.packets))

    async def send_datagrams(self, datagrams: list[OutDatagram]) -> None:
        """Hand datagrams to the devices (waits while a backlog is full).

        An application-facing send: a checkpoint like any Trio send (cancelled before
        anything is queued, a schedule point after). Layer tasks use
        :meth:`queue_datagrams`, which yields only when a device backlog is full.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        await self.queue_datagrams(datagrams)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def queue_datagrams(self, datagrams: list[OutDatagram]) -> None:
        """Route, frame and transmit datagrams in the calling task (no hop, no yield).

        While anything waits for a device, later frames queue behind it so the device
        sees every frame in the order it was produced. The receive path and every
        timer stay in the layer tasks.
        """
        if self.closed:
            # The stack closes and cancels its tasks at once: its own tasks (a connection
            # still flushing) end with Cancelled, not with an error of their own.
            await trio.lowlevel.checkpoint_if_cancelled()
            raise trio.ClosedResourceError("the stack is closed")
        for iface, frames in self._frame(datagrams):
            await iface.transmit(frames)

    def can_transmit_now(self) -> bool:
        if self.closed:
            return False
        return all(not iface.tx_queued for iface in self._iface_list)

    def transmit_nowait(self, datagrams: list[OutDatagram]) -> None:
        """:meth:`queue_datagrams` without waiting, when :meth:`can_transmit_now`."""
        for iface, frames in self._frame(datagrams):
            iface.try_transmit(frames)

    # --- the transmit path ---------------------------------------------------------

    def _frame(self, datagrams: list[OutDatagram]) -> list[tuple[NetInterface, list[bytes]]]:
        """Route, resolve and frame datagrams, per interface in the order given."""
        now = trio.current_time()
        output = self.ipv4.output
        if len(datagrams) == 1:  # the common case, without the lists of the general one
            try:
                ifindex, packets = output(datagrams[0], now)
            except OSError as exc:  # no route, too big: counted by reason
                self.counters.incr(f"tx_error_{exc.errno}")
                return []
            iface = self.interfaces.get(ifindex)
            if iface is None:
                self.counters.incr("tx_no_interface")
                return []
            arp = iface.arp
            armed = False
            for next_hop, packet in packets:
                armed |= arp.output(next_hop, packet, now)
            if armed or arp.unreachable:
                self._timers_moved(iface)
            frames = arp.take_frames()
            return [(iface, frames)] if frames else []
        routed = []
        for datagram in datagrams:
            try:
                routed.append(output(datagram, now))
            except OSError as exc:
                self.counters.incr(f"tx_error_{exc.errno}")
        return self._resolve(routed, now)

    def _resolve(self, routed: list[Routed], now: float) -> list[tuple[NetInterface, list[bytes]]]:
        interfaces = self.interfaces
        touched: list[NetInterface] = []
        for ifindex, packets in routed:
            iface = interfaces.get(ifindex)
            if iface is None:
                self.counters.incr("tx_no_interface")
                continue
            output = iface.arp.output
            armed = False
            for next_hop, packet in packets:
                armed |= output(next_hop, packet, now)
            if armed or iface.arp.unreachable:
                self._timers_moved(iface)
            if iface not in touched:
                touched.append(iface)
        result = []
        for iface in touched:
            frames = iface.arp.take_frames()
            if frames:
                result.append((iface, frames))
        return result

    @staticmethod
    def _timers_moved(iface: NetInterface) -> None:
        """ARP armed a timer (a resolution started, a stale entry to verify) or gave up on
        a neighbour: its ethernet task, which owns ARP's timers and reports failures,
        must wake by the new deadline (aioquic's pattern: after a call, ask the machine
        for its timer)."""
        if iface.arp.unreachable:
            iface.kick()
        else:
            deadline = iface.arp.get_timer()
            if deadline is not None:
                iface.inbox.wake_by(deadline)

    # --- interfaces and addresses ----------------------------------------------------

    async def add_interface(
        self, link: Link, *, mac: bytes, mtu: int, name: str | None = None
    ) -> NetInterface:
        """Attach a device and start its tasks (the stack must be running)."""
        if self._nursery is None:
            raise RuntimeError("the stack is not running")
        if mtu > link.mtu or mtu < 68:
            raise ValueError(f"MTU {mtu} must be between 68 (RFC 791) and the device's {link.mtu}")
        ifindex = len(self.interfaces) + 1  # Linux numbers from 1; 0 means "any"
        iface = NetInterface(
            ifindex,
            name or link.name,
            link,
            mac,
            mtu,
            self.config.arp,
            self.config.layer_queue,
            self._clock,
            self.counters,
        )
        self.routes.add_link(ifindex, mtu)
        self.interfaces[ifindex] = iface
        self._iface_list.append(iface)
        await self._nursery.start(link.run)
        await self._nursery.start(iface.ethernet_task, self.report_unreachable)
        await self._nursery.start(iface.link_rx, self.inbox)
        return iface

    def add_address(self, address: int, prefix_len: int, ifindex: int) -> IfAddress:
        iface = self.interfaces.get(ifindex)
        if iface is None:
            raise ValueError(f"no interface {ifindex}")
        entry = IfAddress(ifindex, address, prefix_len)
        self.routes.add_address(entry)
        iface.arp.add_address(address, trio.current_time())
        iface.kick()  # sends the gratuitous ARP (RFC 5227 3)
        return entry

    def remove_address(self, address: int) -> IfAddress:
        entry = self.routes.remove_address(address)
        self.interfaces[entry.ifindex].arp.remove_address(address)
        return entry

    # --- the IPv4 task -------------------------------------------------------------

    def use_nursery(self, nursery: trio.Nursery) -> None:
        """Where interfaces' tasks run (the stack's nursery)."""
        self._nursery = nursery

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        """The IPv4 task (one coroutine, no wrapper: it resumes once per batch)."""
        task_status.started()
        ipv4 = self.ipv4
        inbox = self.inbox
        handlers = self._handlers
        counters = self.counters
        while True:
            deadline = ipv4.get_timer()
            messages = await inbox.get_batch(math.inf if deadline is None else deadline)
            now = trio.current_time()
            by_protocol: dict[int, list[Delivery]] = {}
            for message in messages:
                if type(message) is not Received:
                    continue
                ifindex = message.ifindex
                for data, flags in message.items:
                    delivery = ipv4.input_untrusted(data, flags, now, ifindex)
                    if delivery is not None:
                        found = by_protocol.get(delivery.header.protocol)
                        if found is None:
                            by_protocol[delivery.header.protocol] = [delivery]
                        else:
                            found.append(delivery)
            ipv4.handle_timer(now)
            for protocol, deliveries in by_protocol.items():
                name, box = handlers[protocol]  # the machine delivers registered ones only
                if not send_upward(box, Deliveries(deliveries)):
                    counters.incr(f"{name}_queue_full", len(deliveries))
            if ipv4.has_output:
                requests = ipv4.take_icmp_requests()
                if requests:
                    self.request_icmp(requests)
                forwarded = ipv4.take_forwarded()
                for iface, frames in self._resolve(forwarded, now):
                    await iface.transmit(frames)

    def close(self) -> None:
        """The stack stops: fail producers parked on any of the layer's mailboxes."""
        self.closed = True
        self.inbox.close()
        for iface in self._iface_list:
            iface.inbox.close()


__all__ = ["IpLayer", "NoRouteError"]
