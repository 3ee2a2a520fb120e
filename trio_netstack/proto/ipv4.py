"""The IPv4 layer (RFC 791, RFC 1122 3.2.1 and 3.3, RFC 1812 for forwarding).

Input validates datagrams, reassembles fragments and decides what becomes of
each: local delivery to a protocol the stack speaks, protocol unreachable for
one it does not (RFC 1122 3.2.2.1), forwarding (off by default: a host does
not forward, RFC 1122 3.3.1), or a counted drop. Output routes, numbers and
fragments datagrams into ``(next_hop, packet)`` pairs for the neighbour layer
of the interface the route chose. Hook points (``proto/hooks.py``) sit on both
paths. Errors the layer wants reported (protocol unreachable, reassembly time
exceeded, TTL exceeded and fragmentation needed when forwarding) leave as
:class:`IcmpRequest` values through :meth:`Ipv4Machine.take_icmp_requests`.
"""

from __future__ import annotations

import errno

import attrs

from ..wire import icmp as wicmp
from ..wire import ipv4 as wip
from ..wire.addr import LIMITED_BROADCAST, is_loopback, is_multicast
from ..wire.checksum import update16
from ..wire.errors import ParseError
from .counters import Counters
from .fragment import fragment
from .hooks import Hook, HookPacket, HookPoint, HookTable, Verdict
from .pmtu import PathMtuCache, PmtuConfig
from .reassembly import Reassembler, ReassemblyConfig
from .route import NoRouteError, RouteResult, RouteTable

IDENT_BUCKETS = 2048
#: The protocols a stack speaks unless told otherwise.
DEFAULT_PROTOCOLS = frozenset({wip.PROTO_ICMP, wip.PROTO_TCP, wip.PROTO_UDP})


@attrs.frozen
class Ipv4Config:
    default_ttl: int = 64  # Linux's net.ipv4.ip_default_ttl
    reassembly: ReassemblyConfig = ReassemblyConfig()
    pmtu: PmtuConfig = PmtuConfig()
    #: route datagrams between interfaces (Linux's net.ipv4.ip_forward, off by default)
    forwarding: bool = False


@attrs.define(slots=True)
class Delivery:
    """A datagram for a local protocol."""

    header: wip.Ipv4Header
    payload: memoryview
    flags: int  # link RX flags (checksum trusted)
    broadcast: bool  # sent to a broadcast or multicast address
    ifindex: int = 0  # the interface it arrived on


@attrs.define(slots=True)
class OutDatagram:
    """A datagram a local protocol asks IPv4 to send."""

    dst: int
    protocol: int
    payload: bytes
    src: int | None = None
    ttl: int | None = None
    tos: int = 0
    dont_fragment: bool = False
    #: a TCP super-segment the device cuts into MTU-sized segments (TSO): not limited
    #: by the MTU and never fragmented
    segmented: bool = False
    #: the interface to leave by (None: the route decides)
    oif: int | None = None


@attrs.define(slots=True)
class IcmpRequest:
    """Ask ICMP to report an error about a datagram this layer received."""

    type: int
    code: int
    header: wip.Ipv4Header
    data: bytes | memoryview
    broadcast: bool = False
    rest: int = 0  # the ICMP header's second word (next-hop MTU for "frag needed")
    #: the datagram was for us: the error comes from its destination address;
    #: otherwise (forwarding) from the address of the route back to its source
    local: bool = True


#: What ``output`` returns: the interface and the ``(next_hop, packet)`` pairs for it.
Routed = tuple[int, list[tuple[int, bytes]]]


class Ipv4Machine:
    def __init__(self, routes: RouteTable, ident_secret: int, config: Ipv4Config | None = None):
        self.routes = routes
        self.config = config or Ipv4Config()
        self.counters = Counters()
        self.hooks = HookTable()
        self.protocols: set[int] = set(DEFAULT_PROTOCOLS)
        #: interfaces that take unicast datagrams to any address while they have
        #: none of their own (a DHCP client's OFFER and ACK, RFC 2131 4.1)
        self.accept_unconfigured: set[int] = set()
        self._secret = ident_secret
        # RFC 6864 / RFC 7739: identifiers from keyed per-flow counters, so that a
        # peer cannot predict the IDs we use towards others (Linux's ip_idents).
        self._idents = [(ident_secret >> (i % 48)) & 0xFFFF ^ i for i in range(IDENT_BUCKETS)]
        self.reassembler = Reassembler(self.config.reassembly)
        self.pmtu = PathMtuCache(self.config.pmtu)
        self._icmp_requests: list[IcmpRequest] = []
        self._forwarded: list[Routed] = []

    # --- outputs -------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """Whether :meth:`take_icmp_requests` or :meth:`take_forwarded` has anything."""
        return bool(self._icmp_requests or self._forwarded)

    def take_icmp_requests(self) -> list[IcmpRequest]:
        out = self._icmp_requests
        if out:  # when empty, no new list (taken every round): do not modify it
            self._icmp_requests = []
        return out

    def take_forwarded(self) -> list[Routed]:
        out = self._forwarded
        if out:  # when empty, no new list (taken every round): do not modify it
            self._forwarded = []
        return out

    def attach_hook(self, point: HookPoint, hook: Hook, priority: int = 0) -> object:
        """Attach a hook; returns a function that detaches it (see ``proto/hooks.py``)."""
        return self.hooks.attach(point, hook, priority)

    # --- timers --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self.reassembler.get_timer()

    def handle_timer(self, now: float) -> None:
        """Expire reassemblies; those whose first fragment came earn an ICMP error."""
        self.reassembler.handle_timer(now)
        expired, self.reassembler.expired = self.reassembler.expired, []
        for item in expired:
            if item.first is not None:
                # RFC 792: time exceeded, code 1 (fragment reassembly time exceeded).
                header, data = item.first
                self._icmp_requests.append(
                    IcmpRequest(wicmp.TIME_EXCEEDED, wicmp.EXCEEDED_REASSEMBLY, header, data)
                )

    # --- input ---------------------------------------------------------------------

    def input_untrusted(
        self, data: memoryview, flags: int, now: float, ifindex: int = 0
    ) -> Delivery | None:
        """Validate a received datagram; return it for local delivery or count a drop."""
        counters = self.counters
        counters.incr("rx_packets")
        try:
            header, payload = wip.parse_untrusted(data)
        except ParseError as exc:
            counters.incr(exc.reason)
            return None
        src = header.src
        dst = header.dst
        routes = self.routes
        # RFC 1122 3.2.1.3: discard a datagram whose source is broadcast or multicast.
        if src == LIMITED_BROADCAST or is_multicast(src) or routes.is_broadcast(src):
            counters.incr("bad_source")
            return None
        if is_loopback(src) or is_loopback(dst):
            counters.incr("martian")  # RFC 1122 3.2.1.3 (g): 127/8 never on a wire
            return None
        if header.ttl == 0:
            counters.incr("ttl_zero")  # RFC 791 3.2: a datagram with TTL 0 must be destroyed
            return None
        hooks = self.hooks
        if hooks.prerouting:
            hooked = self._hook(hooks.prerouting, HookPoint.PREROUTING, header, data, ifindex, None)
            if hooked is None:
                return None
            header, data = hooked
            payload = data[header.header_length : header.total_length]
            dst = header.dst
        broadcast = False
        if not routes.is_local(dst):
            if routes.is_broadcast(dst) or is_multicast(dst):
                broadcast = True
            elif ifindex in self.accept_unconfigured and not routes.interface_addresses(ifindex):
                counters.incr("rx_unconfigured")
            elif self.config.forwarding:
                self._forward(header, data, ifindex, now)
                return None
            else:
                counters.incr("not_for_us")
                return None
        if header.is_fragment:
            whole = self.reassembler.input(header, payload, now)
            if whole is None:
                return None
            header = whole[0]
            payload = memoryview(whole[1])
            flags = 0  # a checksum offload flag vouched for single frames only
            if hooks.input:
                data = memoryview(_whole_datagram(header, whole[1]))
        if hooks.input:
            hooked = self._hook(hooks.input, HookPoint.INPUT, header, data, ifindex, None)
            if hooked is None:
                return None
            header, data = hooked
            payload = data[header.header_length : header.total_length]
        if header.protocol not in self.protocols:
            # RFC 1122 3.2.2.1: a host should report a protocol it does not speak.
            counters.incr("unknown_protocol")
            self._icmp_requests.append(
                IcmpRequest(
                    wicmp.DEST_UNREACHABLE, wicmp.UNREACH_PROTOCOL, header, payload, broadcast
                )
            )
            return None
        counters.incr("delivered")
        return Delivery(header, payload, flags, broadcast, ifindex)

    def _hook(
        self,
        hooks: list[Hook],
        point: HookPoint,
        header: wip.Ipv4Header,
        data: bytes | memoryview | bytearray,
        iif: int | None,
        oif: int | None,
    ) -> tuple[wip.Ipv4Header, memoryview] | None:
        """Run the hooks of one point; None when one dropped the datagram (counted)."""
        packet = HookPacket(point, header, bytearray(data[: header.total_length]), iif, oif)
        if self.hooks.run(hooks, packet) is Verdict.DROP:
            self.counters.incr(f"hook_drop_{point.value}")
            return None
        return packet.header, memoryview(packet.data)

    # --- forwarding (RFC 1812 5.2, 5.3) --------------------------------------------

    def _forward(
        self, header: wip.Ipv4Header, data: bytes | memoryview, iif: int, now: float
    ) -> None:
        counters = self.counters
        src, dst = header.src, header.dst
        # RFC 1812 5.3.7: no martian sources (0/8); RFC 3927 2.7: link-local addresses
        # never leave their link.
        if src >> 24 == 0 or src >> 16 == 0xA9FE or dst >> 16 == 0xA9FE:
            counters.incr("forward_martian")
            return
        payload = data[header.header_length : header.total_length]
        if header.ttl <= 1:
            # RFC 1812 5.3.1: the TTL would reach zero here: time exceeded, code 0.
            counters.incr("forward_ttl_exceeded")
            self._icmp_requests.append(
                IcmpRequest(wicmp.TIME_EXCEEDED, wicmp.EXCEEDED_TTL, header, payload, local=False)
            )
            return
        try:
            route = self.routes.lookup(dst)
        except NoRouteError:
            counters.incr("forward_no_route")
            self._icmp_requests.append(
                IcmpRequest(wicmp.DEST_UNREACHABLE, wicmp.UNREACH_NET, header, payload, local=False)
            )
            return
        packet = bytearray(data[: header.total_length])
        # The TTL shares a 16-bit word with the protocol: RFC 1624's update of the sum.
        old_word = (packet[8] << 8) | packet[9]
        packet[8] -= 1
        checksum = update16(int.from_bytes(packet[10:12], "big"), old_word, old_word - 0x100)
        packet[10:12] = checksum.to_bytes(2, "big")
        header = attrs.evolve(header, ttl=header.ttl - 1, checksum=checksum)
        hooks = self.hooks
        for point, chain in (
            (HookPoint.FORWARD, hooks.forward),
            (HookPoint.POSTROUTING, hooks.postrouting),
        ):
            if chain:
                hooked = self._hook(chain, point, header, packet, iif, route.ifindex)
                if hooked is None:
                    return
                header, view = hooked
                packet = bytearray(view)
        mtu = self._mtu(route, dst, now)
        if len(packet) <= mtu:
            counters.incr("forwarded")
            self._forwarded.append((route.ifindex, [(route.next_hop, bytes(packet))]))
            return
        if header.dont_fragment:
            # RFC 1191 4: fragmentation needed, with the next-hop MTU.
            counters.incr("forward_frag_needed")
            self._icmp_requests.append(
                IcmpRequest(
                    wicmp.DEST_UNREACHABLE,
                    wicmp.UNREACH_FRAG_NEEDED,
                    header,
                    bytes(packet[header.header_length :]),
                    rest=mtu,
                    local=False,
                )
            )
            return
        pieces = fragment(
            header.src,
            header.dst,
            header.protocol,
            bytes(packet[header.header_length :]),
            header.ident,
            header.ttl,
            header.tos,
            mtu,
            header.options,
            base_offset=header.fragment_offset,
            more=header.more_fragments,
        )
        counters.incr("forwarded")
        counters.incr("forward_fragments", len(pieces))
        self._forwarded.append((route.ifindex, [(route.next_hop, p) for p in pieces]))

    # --- output --------------------------------------------------------------------

    def next_ident(self, src: int, dst: int, protocol: int) -> int:
        bucket = hash((self._secret, src, dst, protocol)) % IDENT_BUCKETS
        ident = self._idents[bucket] = (self._idents[bucket] + 1) & 0xFFFF
        return ident

    def path_mtu(self, dst: int, now: float) -> int:
        """The MTU towards ``dst``: the route's, lowered by path MTU discovery."""
        return self._mtu(self.routes.lookup(dst), dst, now)

    def _mtu(self, route: RouteResult, dst: int, now: float) -> int:
        learnt = self.pmtu.get(dst, now)
        return route.mtu if learnt is None or learnt >= route.mtu else learnt

    def icmp_error_received(
        self, mtype: int, code: int, original: wip.Ipv4Header, next_hop_mtu: int | None, now: float
    ) -> None:
        """An ICMP error about a datagram we sent: "fragmentation needed" lowers the PMTU."""
        if (mtype, code) != (wicmp.DEST_UNREACHABLE, wicmp.UNREACH_FRAG_NEEDED):
            return
        # RFC 1191: only about a datagram we sent (the quoted source is ours).
        if not self.routes.is_local(original.src):
            self.counters.incr("pmtu_report_not_ours")
            return
        try:
            current = self.path_mtu(original.dst, now)
        except NoRouteError:
            return
        self.pmtu.learn(original.dst, next_hop_mtu or 0, original.total_length, current, now)

    def output(self, datagram: OutDatagram, now: float = 0.0) -> Routed:
        """Route and build a datagram; returns the interface and ``[(next_hop, packet)]``.

        Raises :class:`NoRouteError` (ENETUNREACH) when no route exists and
        ``OSError(EMSGSIZE)`` when it cannot be sent in one piece. A datagram a hook
        dropped gives an empty list (counted).
        """
        dst = datagram.dst
        route = self.routes.lookup(dst, datagram.oif)
        src = datagram.src if datagram.src is not None else route.source
        payload = datagram.payload
        total = wip.MIN_HEADER_LEN + len(payload)
        if total > wip.MAX_PACKET:
            raise OSError(errno.EMSGSIZE, f"an IPv4 datagram of {total} bytes exceeds 65535")
        mtu = route.mtu
        learnt = self.pmtu.get(dst, now)
        if learnt is not None and learnt < mtu:
            mtu = learnt
        if total > mtu and datagram.dont_fragment and not datagram.segmented:
            self.counters.incr("tx_too_big")
            raise OSError(
                errno.EMSGSIZE,
                f"datagram of {total} bytes exceeds the path MTU {mtu} and may not be fragmented",
            )
        ttl = datagram.ttl if datagram.ttl is not None else self.config.default_ttl
        protocol = datagram.protocol
        ident = self.next_ident(src, dst, protocol)
        flags = wip.FLAG_DF if datagram.dont_fragment else 0
        hooks = self.hooks
        if hooks.output or hooks.postrouting:
            return self._output_hooked(datagram, route, src, ttl, ident, flags, now)
        if total <= mtu or datagram.segmented:
            header = wip.build_header(
                src=src,
                dst=dst,
                protocol=protocol,
                payload_length=len(payload),
                ident=ident,
                ttl=ttl,
                tos=datagram.tos,
                flags_fragment=flags,
            )
            self.counters.incr("tx_packets")
            return route.ifindex, [(route.next_hop, header + payload)]
        packets = fragment(src, dst, protocol, payload, ident, ttl, datagram.tos, mtu)
        self.counters.incr("tx_fragmented")
        self.counters.incr("tx_fragments", len(packets))
        return route.ifindex, [(route.next_hop, packet) for packet in packets]

    def _output_hooked(
        self,
        datagram: OutDatagram,
        route: RouteResult,
        src: int,
        ttl: int,
        ident: int,
        flags: int,
        now: float,
    ) -> Routed:
        """:meth:`output` with OUTPUT and POSTROUTING hooks on the whole datagram."""
        head = wip.build_header(
            src=src,
            dst=datagram.dst,
            protocol=datagram.protocol,
            payload_length=len(datagram.payload),
            ident=ident,
            ttl=ttl,
            tos=datagram.tos,
            flags_fragment=flags,
        )
        data: bytes | memoryview = head + datagram.payload
        header, _ = wip.parse_untrusted(data, verify_checksum=False)
        hooks = self.hooks
        if hooks.output:
            hooked = self._hook(hooks.output, HookPoint.OUTPUT, header, data, None, route.ifindex)
            if hooked is None:
                return route.ifindex, []
            if hooked[0].dst != header.dst:  # rewritten (DNAT): route it again
                route = self.routes.lookup(hooked[0].dst, datagram.oif)
            header, data = hooked
        if hooks.postrouting:
            hooked = self._hook(
                hooks.postrouting, HookPoint.POSTROUTING, header, data, None, route.ifindex
            )
            if hooked is None:
                return route.ifindex, []
            header, data = hooked
        mtu = self._mtu(route, header.dst, now)
        if header.total_length <= mtu or datagram.segmented:
            self.counters.incr("tx_packets")
            return route.ifindex, [(route.next_hop, bytes(data))]
        packets = fragment(
            header.src,
            header.dst,
            header.protocol,
            bytes(data[header.header_length :]),
            header.ident,
            header.ttl,
            header.tos,
            mtu,
        )
        self.counters.incr("tx_fragmented")
        self.counters.incr("tx_fragments", len(packets))
        return route.ifindex, [(route.next_hop, packet) for packet in packets]


def _whole_datagram(header: wip.Ipv4Header, payload: bytes) -> bytes:
    """A reassembled datagram as one packet again, for the INPUT hooks to see."""
    head = wip.build_header(
        src=header.src,
        dst=header.dst,
        protocol=header.protocol,
        payload_length=len(payload),
        ident=header.ident,
        ttl=header.ttl,
        tos=header.tos,
        options=header.options,
    )
    return head + payload


__all__ = [
    "Delivery",
    "IcmpRequest",
    "Ipv4Config",
    "Ipv4Machine",
    "NoRouteError",
    "OutDatagram",
    "fragment",
]
