"""UDP (RFC 768)."""

from __future__ import annotations

import struct

from .checksum import finish, ones_sum, pseudo_header_sum
from .errors import ParseError

HEADER = struct.Struct("!HHHH")
HEADER_LEN = 8
PROTO_UDP = 17


def parse_untrusted(
    data: bytes | memoryview, src: int, dst: int, *, verify_checksum: bool = True
) -> tuple[int, int, memoryview]:
    """Return ``(source port, destination port, payload)``.

    The payload is bounded by the UDP length field (RFC 768), which must fit the
    IP payload; a zero checksum means the sender computed none and is accepted.
    """
    size = len(data)
    if size < HEADER_LEN:
        raise ParseError("udp_short", f"{size} bytes")
    sport, dport, length, csum = HEADER.unpack_from(data)
    if length < HEADER_LEN or length > size:
        raise ParseError("udp_bad_length", f"length {length} in {size} bytes")
    view = memoryview(data)[:length]
    if (
        verify_checksum
        and csum != 0
        and finish(ones_sum(view, pseudo_header_sum(src, dst, PROTO_UDP, length))) != 0
    ):
        raise ParseError("udp_bad_checksum")
    if dport == 0:
        raise ParseError("udp_port_zero")
    return sport, dport, view[HEADER_LEN:]


def build(
    src: int, dst: int, sport: int, dport: int, payload: bytes | bytearray | memoryview
) -> bytes:
    length = HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    csum = finish(
        ones_sum(payload, pseudo_header_sum(src, dst, PROTO_UDP, length) + sport + dport + length)
    )
    # RFC 768: a computed checksum of zero is sent as all ones (zero means "none").
    return HEADER.pack(sport, dport, length, csum or 0xFFFF) + payload
