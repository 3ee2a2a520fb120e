"""TCP header and options (RFC 9293 3.1, RFC 7323, RFC 2018)."""

from __future__ import annotations

import struct

import attrs

from . import options as _options
from .checksum import finish, ones_sum, pseudo_header_sum
from .errors import ParseError
from .options import walk_untrusted

HEADER = struct.Struct("!HHIIBBHHH")
HEADER_LEN = 20
PROTO_TCP = 6

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80

OPT_END = _options.OPT_END  # END and NOP are IPv4's too (options.py walks both lists)
OPT_NOP = _options.OPT_NOP
OPT_MSS = 2
OPT_WSCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8

MAX_WSCALE = 14  # RFC 7323 2.3

_TS = struct.Struct("!BBBBII")  # NOP NOP kind len TSval TSecr
_U32 = struct.Struct("!I")
_U32X2 = struct.Struct("!II")
# The edges of k SACK blocks, indexed by the option's length // 8 (a length of 8k + 2
# holds k blocks; 4 fit in a header, but any length byte must index safely).
_SACK_EDGES = [struct.Struct(f"!{2 * k}I") for k in range(256 // 8)]


@attrs.define(slots=True)
class TcpOptions:
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left, right) sequence numbers
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)


_NO_OPTIONS = TcpOptions()


@attrs.define(slots=True)
class TcpSegment:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int
    options: TcpOptions
    payload: memoryview

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies: data plus one for each of SYN and FIN."""
        n = len(self.payload)
        if self.flags & SYN:
            n += 1
        if self.flags & FIN:
            n += 1
        return n


def _parse_options_untrusted(raw: memoryview) -> TcpOptions:
    """RFC 9293 3.2: unknown options are skipped by their length; a malformed list
    (length below 2 or past the header) makes the whole segment invalid."""
    opts = TcpOptions()
    # Dispatch in order of frequency: timestamps ride on nearly every segment, SACK on
    # ACKs during recovery, the rest only on SYNs.
    for kind, at, length in walk_untrusted(raw, "tcp_bad_option"):
        if kind == OPT_TIMESTAMP:
            if length != 10:
                raise ParseError("tcp_bad_option", f"timestamp length {length}")
            tsval, tsecr = _U32X2.unpack_from(raw, at + 2)
            opts.timestamp = (tsval, tsecr)
        elif kind == OPT_SACK:
            if (length - 2) % 8 or length == 2:
                raise ParseError("tcp_bad_option", f"SACK length {length}")
            edges = _SACK_EDGES[length >> 3].unpack_from(raw, at + 2)
            opts.sack_blocks = tuple(zip(edges[::2], edges[1::2], strict=True))
        elif kind == OPT_MSS:
            if length != 4:
                raise ParseError("tcp_bad_option", f"MSS length {length}")
            opts.mss = (raw[at + 2] << 8) | raw[at + 3]
        elif kind == OPT_WSCALE:
            if length != 3:
                raise ParseError("tcp_bad_option", f"window scale length {length}")
            # RFC 7323 2.3: a shift above 14 is used as 14.
            opts.wscale = min(raw[at + 2], MAX_WSCALE)
        elif kind == OPT_SACK_PERMITTED:
            if length != 2:
                raise ParseError("tcp_bad_option", f"SACK-permitted length {length}")
            opts.sack_permitted = True
    return opts


def parse_untrusted(
    data: bytes | memoryview, src: int, dst: int, *, verify_checksum: bool = True
) -> TcpSegment:
    size = len(data)
    if size < HEADER_LEN:
        raise ParseError("tcp_short", f"{size} bytes")
    sport, dport, seq, ack, off, flags, window, _csum, urgent = HEADER.unpack_from(data)
    hlen = (off >> 4) * 4
    if hlen < HEADER_LEN or hlen > size:
        raise ParseError("tcp_bad_offset", f"data offset {hlen} in {size} bytes")
    view = memoryview(data)
    if verify_checksum and finish(ones_sum(view, pseudo_header_sum(src, dst, PROTO_TCP, size))):
        raise ParseError("tcp_bad_checksum")
    if sport == 0 or dport == 0:
        raise ParseError("tcp_port_zero")
    options = _parse_options_untrusted(view[HEADER_LEN:hlen]) if hlen > HEADER_LEN else _NO_OPTIONS
    return TcpSegment(sport, dport, seq, ack, flags, window, urgent, options, view[hlen:])


def build(
    src: int,
    dst: int,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    payload: bytes | bytearray | memoryview = b"",
    *,
    mss: int | None = None,
    wscale: int | None = None,
    sack_permitted: bool = False,
    sack_blocks: tuple[tuple[int, int], ...] = (),
    timestamp: tuple[int, int] | None = None,
    partial_checksum: bool = False,
) -> bytes:
    """A segment with a correct checksum. Options use Linux's layout (so captures match).

    ``partial_checksum`` leaves only the pseudo-header sum in the checksum field, for a
    device that completes it (checksum offload, Linux's CHECKSUM_PARTIAL): summing a
    64 KiB super-segment in Python costs ~120 us, the kernel does it for free.
    """
    opts = bytearray()
    if mss is not None:
        opts += bytes((OPT_MSS, 4)) + mss.to_bytes(2, "big")
    if sack_permitted and timestamp is not None:
        opts += bytes((OPT_SACK_PERMITTED, 2, OPT_TIMESTAMP, 10))
        opts += _U32.pack(timestamp[0]) + _U32.pack(timestamp[1])
    elif timestamp is not None:
        opts += _TS.pack(OPT_NOP, OPT_NOP, OPT_TIMESTAMP, 10, timestamp[0], timestamp[1])
    elif sack_permitted:
        opts += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if wscale is not None:
        opts += bytes((OPT_NOP, OPT_WSCALE, 3, wscale))
    if sack_blocks:
        opts += bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(sack_blocks)))
        for left, right in sack_blocks:
            opts += _U32.pack(left) + _U32.pack(right)
    while len(opts) % 4:
        opts.append(OPT_NOP)
    hlen = HEADER_LEN + len(opts)
    if hlen > 60:
        raise ValueError(f"TCP options of {len(opts)} bytes exceed 40")
    head = HEADER.pack(sport, dport, seq, ack, (hlen >> 2) << 4, flags, window, 0, 0) + opts
    total = hlen + len(payload)
    if partial_checksum:
        csum = ones_sum(b"", pseudo_header_sum(src, dst, PROTO_TCP, total))
    else:
        csum = finish(
            ones_sum(payload, ones_sum(head, pseudo_header_sum(src, dst, PROTO_TCP, total)))
        )
    return head[:16] + csum.to_bytes(2, "big") + head[18:] + payload
