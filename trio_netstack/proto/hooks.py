"""Hook points in the IPv4 path, where a packet filter or NAT sees packets and decides.

Five points, as netfilter's (and RFC 2663's NAT model needs): PREROUTING (every
datagram received, before the local-or-forward decision; fragments are seen one
by one), INPUT (a whole datagram for a local protocol, after reassembly),
FORWARD (a datagram routed through the stack), OUTPUT (a datagram a local
protocol sends, after routing) and POSTROUTING (every datagram leaving, before
fragmentation). A hook gets a :class:`HookPacket` with the parsed IP header and
the first bytes of the transport header, and returns a :class:`Verdict`.

With nothing attached a point costs one truth test of an empty list per
packet; the packet is copied into a mutable buffer only for hooks. Hooks may
rewrite addresses and ports in place; checksums are then updated incrementally
(RFC 1624), so NAT never re-sums a payload.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs

from ..wire import ipv4 as wip
from ..wire.checksum import update16, update32
from .route import Family

PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMP = 1


class HookPoint(enum.Enum):
    PREROUTING = "prerouting"
    INPUT = "input"
    FORWARD = "forward"
    OUTPUT = "output"
    POSTROUTING = "postrouting"


class Verdict(enum.Enum):
    ACCEPT = "accept"  # go on to the next hook, then on the normal path
    DROP = "drop"  # discard (counted as hook_drop_<point>)


@attrs.define(slots=True, eq=False)
class HookPacket:
    """A datagram at a hook point. ``data`` is the whole datagram and may be rewritten."""

    point: HookPoint
    header: wip.Ipv4Header
    data: bytearray
    iif: int | None  # the interface it came in on (None when locally generated)
    oif: int | None  # the interface it leaves by (None before routing)
    family: Family = Family.IPV4
    modified: bool = False

    # --- the transport header (first fragment only) --------------------------------

    @property
    def protocol(self) -> int:
        return self.header.protocol

    @property
    def transport_offset(self) -> int | None:
        """Where the transport header starts, or None for a non-first fragment."""
        if self.header.flags_fragment & wip.OFFSET_MASK:
            return None
        return self.header.header_length

    def _field(self, at: int, size: int = 2) -> int | None:
        start = self.transport_offset
        if start is None or start + at + size > len(self.data):
            return None
        return int.from_bytes(self.data[start + at : start + at + size], "big")

    @property
    def sport(self) -> int | None:
        """TCP or UDP source port (None for other protocols or if not present)."""
        return self._field(0) if self.protocol in (PROTO_TCP, PROTO_UDP) else None

    @property
    def dport(self) -> int | None:
        return self._field(2) if self.protocol in (PROTO_TCP, PROTO_UDP) else None

    @property
    def tcp_flags(self) -> int | None:
        return self._field(13, 1) if self.protocol == PROTO_TCP else None

    @property
    def icmp_type(self) -> int | None:
        return self._field(0, 1) if self.protocol == PROTO_ICMP else None

    @property
    def icmp_code(self) -> int | None:
        return self._field(1, 1) if self.protocol == PROTO_ICMP else None

    # --- in-place rewrite (NAT) ----------------------------------------------------

    def _transport_checksum_at(self) -> int | None:
        """Offset of the TCP or UDP checksum in ``data`` (None when there is none)."""
        start = self.transport_offset
        if start is None:
            return None
        if self.protocol == PROTO_TCP and start + 18 <= len(self.data):
            return start + 16
        if self.protocol == PROTO_UDP and start + 8 <= len(self.data):
            at = start + 6
            # RFC 768: zero means "no checksum" and stays zero.
            return at if self.data[at] or self.data[at + 1] else None
        return None

    def _patch(self, at: int, old: int, new: int, *, wide: bool, transport: bool) -> None:
        value = int.from_bytes(self.data[at : at + 2], "big")
        value = update32(value, old, new) if wide else update16(value, old, new)
        if transport and self.protocol == PROTO_UDP and value == 0:
            value = 0xFFFF  # RFC 768: a computed zero is sent as all ones
        self.data[at : at + 2] = value.to_bytes(2, "big")

    def _set_address(self, offset: int, new: int) -> None:
        old = int.from_bytes(self.data[offset : offset + 4], "big")
        if old == new:
            return
        self.data[offset : offset + 4] = new.to_bytes(4, "big")
        self._patch(10, old, new, wide=True, transport=False)  # the IPv4 header checksum
        csum = self._transport_checksum_at()
        if csum is not None:  # the pseudo-header holds both addresses (RFC 9293 3.1)
            self._patch(csum, old, new, wide=True, transport=True)
        self.header = _reparse(self.data)
        self.modified = True

    def set_src(self, address: int) -> None:
        self._set_address(12, address)

    def set_dst(self, address: int) -> None:
        self._set_address(16, address)

    def _set_port(self, at: int, port: int) -> None:
        start = self.transport_offset
        if start is None or self.protocol not in (PROTO_TCP, PROTO_UDP):
            raise ValueError("only the first fragment of TCP or UDP carries ports")
        old = int.from_bytes(self.data[start + at : start + at + 2], "big")
        if old == port:
            return
        self.data[start + at : start + at + 2] = port.to_bytes(2, "big")
        csum = self._transport_checksum_at()
        if csum is not None:
            self._patch(csum, old, port, wide=False, transport=True)
        self.modified = True

    def set_sport(self, port: int) -> None:
        self._set_port(0, port)

    def set_dport(self, port: int) -> None:
        self._set_port(2, port)


def _reparse(data: bytearray) -> wip.Ipv4Header:
    (_vihl, tos, total, ident, ff, ttl, proto, csum, src, dst) = wip.HEADER.unpack_from(data)
    hlen = (_vihl & 0xF) * 4
    return wip.Ipv4Header(tos, total, ident, ff, ttl, proto, csum, src, dst, bytes(data[20:hlen]))


Hook = Callable[[HookPacket], Verdict]


@attrs.define(slots=True, eq=False)
class _Attached:
    priority: int
    hook: Hook


class HookTable:
    """The hooks attached at each point, lowest priority first (nftables' order)."""

    def __init__(self) -> None:
        self._by_point: dict[HookPoint, list[_Attached]] = {p: [] for p in HookPoint}
        # Per-packet checks read these lists: empty means "nothing attached".
        self.prerouting: list[Hook] = []
        self.input: list[Hook] = []
        self.forward: list[Hook] = []
        self.output: list[Hook] = []
        self.postrouting: list[Hook] = []

    def attach(self, point: HookPoint, hook: Hook, priority: int = 0) -> Callable[[], None]:
        """Attach ``hook`` at ``point``; returns a function that detaches it."""
        entry = _Attached(priority, hook)
        chain = self._by_point[point]
        chain.append(entry)
        chain.sort(key=lambda e: e.priority)  # stable: equal priorities keep their order
        self._publish(point)

        def detach() -> None:
            if entry in chain:
                chain.remove(entry)
                self._publish(point)

        return detach

    def _publish(self, point: HookPoint) -> None:
        setattr(self, point.value, [e.hook for e in self._by_point[point]])

    def run(self, hooks: list[Hook], packet: HookPacket) -> Verdict:
        for hook in hooks:
            if hook(packet) is Verdict.DROP:
                return Verdict.DROP
        return Verdict.ACCEPT


__all__ = ["Hook", "HookPacket", "HookPoint", "HookTable", "Verdict"]
