"""The IPv4 layer of a host (RFC 791, RFC 1122 3.2.1 and 3.3).

Input validates and classifies datagrams for local delivery; output routes,
numbers and frames datagrams into ``(next_hop, packet)`` pairs for ARP. The
stack is a host: datagrams not addressed to it are dropped (RFC 1122 3.3.1,
hosts do not forward).
"""

from __future__ import annotations

import errno

import attrs

from ..wire import ipv4 as wip
from ..wire.addr import LIMITED_BROADCAST, is_loopback, is_multicast
from ..wire.errors import ParseError
from .counters import Counters
from .pmtu import PathMtuCache, PmtuConfig
from .reassembly import Expired, Reassembler, ReassemblyConfig
from .route import NoRouteError, RouteTable

IDENT_BUCKETS = 2048


@attrs.frozen
class Ipv4Config:
    default_ttl: int = 64  # Linux's net.ipv4.ip_default_ttl
    reassembly: ReassemblyConfig = ReassemblyConfig()
    pmtu: PmtuConfig = PmtuConfig()


@attrs.define(slots=True)
class Delivery:
    """A datagram for a local protocol."""

    header: wip.Ipv4Header
    payload: memoryview
    flags: int  # link RX flags (checksum trusted)
    broadcast: bool  # sent to a broadcast or multicast address


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


class Ipv4Machine:
    def __init__(self, routes: RouteTable, ident_secret: int, config: Ipv4Config | None = None):
        self.routes = routes
        self.config = config or Ipv4Config()
        self.counters = Counters()
        self._secret = ident_secret
        # RFC 6864 / RFC 7739: identifiers from keyed per-flow counters, so that a
        # peer cannot predict the IDs we use towards others (Linux's ip_idents).
        self._idents = [(ident_secret >> (i % 48)) & 0xFFFF ^ i for i in range(IDENT_BUCKETS)]
        self.reassembler = Reassembler(self.config.reassembly)
        self.pmtu = PathMtuCache(self.config.pmtu)

    # --- timers --------------------------------------------------------------------

    def get_timer(self) -> float | None:
        return self.reassembler.get_timer()

    def handle_timer(self, now: float) -> list[Expired]:
        """Expire reassemblies; returns those that deserve ICMP time exceeded."""
        self.reassembler.handle_timer(now)
        expired, self.reassembler.expired = self.reassembler.expired, []
        return expired

    # --- input ---------------------------------------------------------------------

    def input_untrusted(self, data: memoryview, flags: int, now: float) -> Delivery | None:
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
        # RFC 1122 3.2.1.3: discard a datagram whose source is broadcast or multicast.
        if src == LIMITED_BROADCAST or is_multicast(src) or self.routes.is_broadcast(src):
            counters.incr("bad_source")
            return None
        if is_loopback(src) or is_loopback(dst):
            counters.incr("martian")  # RFC 1122 3.2.1.3 (g): 127/8 never on a wire
            return None
        broadcast = False
        if not self.routes.is_local(dst):
            if self.routes.is_broadcast(dst) or is_multicast(dst):
                broadcast = True
            else:
                counters.incr("not_for_us")
                return None
        if header.ttl == 0:
            counters.incr("ttl_zero")  # RFC 791 3.2: a datagram with TTL 0 must be destroyed
            return None
        if header.is_fragment:
            whole = self.reassembler.input(header, payload, now)
            if whole is None:
                return None
            header = whole[0]
            payload = memoryview(whole[1])
            flags = 0  # a checksum offload flag vouched for single frames only
        counters.incr("delivered")
        return Delivery(header, payload, flags, broadcast)

    # --- output --------------------------------------------------------------------

    def next_ident(self, src: int, dst: int, protocol: int) -> int:
        bucket = hash((self._secret, src, dst, protocol)) % IDENT_BUCKETS
        ident = self._idents[bucket] = (self._idents[bucket] + 1) & 0xFFFF
        return ident

    def path_mtu(self, dst: int, now: float) -> int:
        """The MTU towards ``dst``: the route's, lowered by path MTU discovery."""
        mtu = self.routes.lookup(dst).mtu
        learnt = self.pmtu.get(dst, now)
        return mtu if learnt is None else min(mtu, learnt)

    def output(self, datagram: OutDatagram, now: float = 0.0) -> list[tuple[int, bytes]]:
        """Route and build a datagram; returns ``[(next_hop, packet), ...]``.

        Raises :class:`NoRouteError` (ENETUNREACH) when no route exists and
        ``OSError(EMSGSIZE)`` when it cannot be sent in one piece.
        """
        route = self.routes.lookup(datagram.dst)
        src = datagram.src if datagram.src is not None else route.source
        payload = datagram.payload
        total = wip.MIN_HEADER_LEN + len(payload)
        if total > wip.MAX_PACKET:
            raise OSError(errno.EMSGSIZE, f"an IPv4 datagram of {total} bytes exceeds 65535")
        mtu = route.mtu
        learnt = self.pmtu.get(datagram.dst, now)
        if learnt is not None and learnt < mtu:
            mtu = learnt
        if total > mtu and datagram.dont_fragment and not datagram.segmented:
            self.counters.incr("tx_too_big")
            raise OSError(
                errno.EMSGSIZE,
                f"datagram of {total} bytes exceeds the path MTU {mtu} and may not be fragmented",
            )
        ttl = datagram.ttl if datagram.ttl is not None else self.config.default_ttl
        ident = self.next_ident(src, datagram.dst, datagram.protocol)
        if total <= mtu or datagram.segmented:
            header = wip.build_header(
                src=src,
                dst=datagram.dst,
                protocol=datagram.protocol,
                payload_length=len(payload),
                ident=ident,
                ttl=ttl,
                tos=datagram.tos,
                flags_fragment=wip.FLAG_DF if datagram.dont_fragment else 0,
            )
            self.counters.incr("tx_packets")
            return [(route.next_hop, header + payload)]
        packets = fragment(
            src, datagram.dst, datagram.protocol, payload, ident, ttl, datagram.tos, mtu
        )
        self.counters.incr("tx_fragmented")
        self.counters.incr("tx_fragments", len(packets))
        return [(route.next_hop, packet) for packet in packets]


def fragment(
    src: int,
    dst: int,
    protocol: int,
    payload: bytes,
    ident: int,
    ttl: int,
    tos: int,
    mtu: int,
    options: bytes = b"",
) -> list[bytes]:
    """Split a datagram into fragments that fit ``mtu`` (RFC 791 3.2, "fragmentation").

    Every fragment but the last carries a multiple of 8 data bytes and MF; offsets
    count 8-byte units. The first fragment carries all options, later ones only those
    whose copied flag is set.
    """
    later_options = _copied_options(options)
    packets = []
    offset = 0
    size = len(payload)
    first = True
    while offset < size:
        opts = options if first else later_options
        room = (mtu - wip.MIN_HEADER_LEN - len(opts)) & ~7
        if room <= 0:
            raise OSError(errno.EMSGSIZE, f"MTU {mtu} too small to fragment")
        chunk = payload[offset : offset + room]
        more = offset + len(chunk) < size
        header = wip.build_header(
            src=src,
            dst=dst,
            protocol=protocol,
            payload_length=len(chunk),
            ident=ident,
            ttl=ttl,
            tos=tos,
            options=opts,
            flags_fragment=(wip.FLAG_MF if more else 0) | (offset >> 3),
        )
        packets.append(header + chunk)
        offset += len(chunk)
        first = False
    return packets


def _copied_options(options: bytes) -> bytes:
    """The options with the copied flag (RFC 791 3.1), padded to 4 bytes."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == wip.OPT_END:
            break
        if kind == wip.OPT_NOP:
            i += 1
            continue
        length = options[i + 1]
        if kind & 0x80:
            out += options[i : i + length]
        i += length
    while len(out) % 4:
        out.append(wip.OPT_END)
    return bytes(out)


__all__ = ["Delivery", "Ipv4Config", "Ipv4Machine", "NoRouteError", "OutDatagram"]
