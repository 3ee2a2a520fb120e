"""ARP for IPv4 over Ethernet (RFC 826)."""

from __future__ import annotations

import struct

import attrs

from .errors import ParseError

PACKET = struct.Struct("!HHBBH6sI6sI")
PACKET_LEN = 28
HTYPE_ETHERNET = 1
PTYPE_IPV4 = 0x0800
OP_REQUEST = 1
OP_REPLY = 2


@attrs.define(slots=True)
class ArpPacket:
    op: int
    sha: bytes  # sender hardware address
    spa: int  # sender protocol (IPv4) address
    tha: bytes
    tpa: int


def parse_untrusted(data: bytes | memoryview) -> ArpPacket:
    """Parse an Ethernet/IPv4 ARP packet; trailing padding is ignored."""
    if len(data) < PACKET_LEN:
        raise ParseError("arp_short", f"{len(data)} bytes")
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = PACKET.unpack_from(data)
    if htype != HTYPE_ETHERNET or ptype != PTYPE_IPV4 or hlen != 6 or plen != 4:
        raise ParseError(
            "arp_unsupported", f"htype={htype} ptype={ptype:#x} hlen={hlen} plen={plen}"
        )
    if op not in (OP_REQUEST, OP_REPLY):
        raise ParseError("arp_bad_op", str(op))
    return ArpPacket(op, sha, spa, tha, tpa)


def build(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> bytes:
    return PACKET.pack(HTYPE_ETHERNET, PTYPE_IPV4, 6, 4, op, sha, spa, tha, tpa)
