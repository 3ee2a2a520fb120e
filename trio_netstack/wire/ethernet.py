"""Ethernet II framing (RFC 894).

Frames here carry no preamble and no FCS (devices strip and add those). A
received frame may be longer than its payload: short frames are padded to the
60-byte minimum on the wire, so upper layers bound their data by their own
length fields (IPv4 total length), never by the frame length.
"""

from __future__ import annotations

import struct

import attrs

from .errors import ParseError

HEADER = struct.Struct("!6s6sH")
HEADER_LEN = 14
MIN_FRAME = 60  # 64 on the wire less the 4-byte FCS

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_IPV6 = 0x86DD

_PAD = bytes(MIN_FRAME)


@attrs.define(slots=True)
class EthernetHeader:
    dst: bytes
    src: bytes
    ethertype: int


def parse_untrusted(frame: bytes | memoryview) -> tuple[EthernetHeader, memoryview]:
    """Split a frame into its header and the (possibly padded) payload."""
    if len(frame) < HEADER_LEN:
        raise ParseError("eth_short", f"{len(frame)} bytes")
    dst, src, ethertype = HEADER.unpack_from(frame)
    if ethertype < 0x0600:
        # An 802.3 length field (LLC/SNAP frames): not Ethernet II.
        raise ParseError("eth_not_ethernet2", f"length field {ethertype}")
    return EthernetHeader(dst, src, ethertype), memoryview(frame)[HEADER_LEN:]


def build(dst: bytes, src: bytes, ethertype: int, payload: bytes | bytearray | memoryview) -> bytes:
    """A frame, padded with zeros to the 60-byte minimum (RFC 894)."""
    frame = HEADER.pack(dst, src, ethertype) + payload
    if len(frame) < MIN_FRAME:
        frame += _PAD[: MIN_FRAME - len(frame)]
    return frame
