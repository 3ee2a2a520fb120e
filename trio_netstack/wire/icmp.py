"""ICMP messages (RFC 792, RFC 1122 3.2.2)."""

from __future__ import annotations

import struct

import attrs

from .checksum import internet_checksum
from .errors import ParseError

HEADER = struct.Struct("!BBHI")
HEADER_LEN = 8

ECHO_REPLY = 0
DEST_UNREACHABLE = 3
SOURCE_QUENCH = 4
REDIRECT = 5
ECHO_REQUEST = 8
TIME_EXCEEDED = 11
PARAMETER_PROBLEM = 12
TIMESTAMP = 13
TIMESTAMP_REPLY = 14
MAX_KNOWN_TYPE = 18  # types above are unknown to RFC 792/950 hosts (Linux's NR_ICMP_TYPES)

# Destination unreachable codes (RFC 792, RFC 1122 3.2.2.1)
UNREACH_NET = 0
UNREACH_HOST = 1
UNREACH_PROTOCOL = 2
UNREACH_PORT = 3
UNREACH_FRAG_NEEDED = 4
# Time exceeded codes
EXCEEDED_TTL = 0
EXCEEDED_REASSEMBLY = 1

#: Types that report an error about another datagram (RFC 1122 3.2.2).
ERROR_TYPES = frozenset(
    {DEST_UNREACHABLE, SOURCE_QUENCH, REDIRECT, TIME_EXCEEDED, PARAMETER_PROBLEM}
)


@attrs.define(slots=True)
class IcmpMessage:
    type: int
    code: int
    rest: int  # the 32-bit "rest of header" (echo: identifier << 16 | sequence)
    payload: memoryview

    @property
    def echo_id(self) -> int:
        return self.rest >> 16

    @property
    def echo_seq(self) -> int:
        return self.rest & 0xFFFF


def parse_untrusted(data: bytes | memoryview, *, verify_checksum: bool = True) -> IcmpMessage:
    if len(data) < HEADER_LEN:
        raise ParseError("icmp_short", f"{len(data)} bytes")
    if verify_checksum and internet_checksum(data) != 0:
        raise ParseError("icmp_bad_checksum")
    mtype, code, _csum, rest = HEADER.unpack_from(data)
    return IcmpMessage(mtype, code, rest, memoryview(data)[HEADER_LEN:])


def build(mtype: int, code: int, rest: int, payload: bytes | bytearray | memoryview) -> bytes:
    body = HEADER.pack(mtype, code, 0, rest) + payload
    csum = internet_checksum(body)
    return body[:2] + csum.to_bytes(2, "big") + body[4:]


def build_echo(
    request: bool, ident: int, seq: int, payload: bytes | bytearray | memoryview
) -> bytes:
    return build(ECHO_REQUEST if request else ECHO_REPLY, 0, (ident << 16) | seq, payload)
