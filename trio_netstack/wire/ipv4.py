"""IPv4 header codec (RFC 791), with the host checks of RFC 1122 3.2.1."""

from __future__ import annotations

import struct

import attrs

from . import options as _options
from .checksum import internet_checksum
from .errors import ParseError
from .options import walk_untrusted

HEADER = struct.Struct("!BBHHHBBHII")
MIN_HEADER_LEN = 20
MAX_PACKET = 65535

FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

# RFC 791 3.1 option types: END and NOP are TCP's too (options.py walks both lists).
OPT_END = _options.OPT_END
OPT_NOP = _options.OPT_NOP


@attrs.define(slots=True)
class Ipv4Header:
    tos: int
    total_length: int
    ident: int
    flags_fragment: int  # the raw 16-bit flags + fragment offset field
    ttl: int
    protocol: int
    checksum: int
    src: int
    dst: int
    options: bytes = b""

    @property
    def header_length(self) -> int:
        return MIN_HEADER_LEN + len(self.options)

    @property
    def dont_fragment(self) -> bool:
        return bool(self.flags_fragment & FLAG_DF)

    @property
    def more_fragments(self) -> bool:
        return bool(self.flags_fragment & FLAG_MF)

    @property
    def fragment_offset(self) -> int:
        """Offset of this fragment's data in bytes (the field counts 8-byte units)."""
        return (self.flags_fragment & OFFSET_MASK) << 3

    @property
    def is_fragment(self) -> bool:
        return bool(self.flags_fragment & (FLAG_MF | OFFSET_MASK))


def parse_untrusted(
    packet: bytes | memoryview, *, verify_checksum: bool = True
) -> tuple[Ipv4Header, memoryview]:
    """Validate a datagram and return its header and payload.

    ``packet`` may be longer than the datagram (Ethernet padding); the payload is
    cut at the total length.
    """
    size = len(packet)
    if size < MIN_HEADER_LEN:
        raise ParseError("ip_short", f"{size} bytes")
    (vihl, tos, total, ident, flags_frag, ttl, proto, csum, src, dst) = HEADER.unpack_from(packet)
    if vihl >> 4 != 4:
        raise ParseError("ip_bad_version", str(vihl >> 4))
    hlen = (vihl & 0xF) * 4
    if hlen < MIN_HEADER_LEN:
        raise ParseError("ip_bad_header_length", str(hlen))
    if total < hlen:
        raise ParseError("ip_bad_total_length", f"total {total} < header {hlen}")
    if total > size:
        raise ParseError("ip_truncated", f"total {total} > {size} bytes received")
    view = memoryview(packet)
    if verify_checksum and internet_checksum(view[:hlen]) != 0:
        raise ParseError("ip_bad_checksum")
    if flags_frag & 0x8000:
        # RFC 791 3.1: the reserved flag must be zero (RFC 3514 aside).
        raise ParseError("ip_reserved_flag")
    options = b""
    if hlen > MIN_HEADER_LEN:
        options = bytes(view[MIN_HEADER_LEN:hlen])
        # Only the layout is checked: a malformed length cannot hide anything.
        walk_untrusted(options, "ip_bad_option")
    header = Ipv4Header(tos, total, ident, flags_frag, ttl, proto, csum, src, dst, options)
    return header, view[hlen:total]


def build_header(
    *,
    src: int,
    dst: int,
    protocol: int,
    payload_length: int,
    ident: int,
    ttl: int = 64,
    tos: int = 0,
    flags_fragment: int = 0,
    options: bytes = b"",
) -> bytes:
    """A header with a correct checksum. ``options`` must be padded to 4-byte multiples."""
    if len(options) % 4 or len(options) > 40:
        raise ValueError("IPv4 options must be padded to a multiple of 4 bytes, at most 40")
    hlen = MIN_HEADER_LEN + len(options)
    total = hlen + payload_length
    if total > MAX_PACKET:
        raise ValueError(f"IPv4 datagram of {total} bytes exceeds {MAX_PACKET}")
    head = (
        HEADER.pack(
            0x40 | (hlen >> 2), tos, total, ident, flags_fragment, ttl, protocol, 0, src, dst
        )
        + options
    )
    csum = internet_checksum(head)
    return head[:10] + csum.to_bytes(2, "big") + head[12:]
