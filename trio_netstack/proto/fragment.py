"""IPv4 fragmentation (RFC 791 3.2, "fragmentation"; RFC 1812 5.2.6 when forwarding)."""

from __future__ import annotations

import errno

from ..wire import ipv4 as wip


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
    *,
    base_offset: int = 0,
    more: bool = False,
) -> list[bytes]:
    """Split a datagram into fragments that fit ``mtu``.

    Every fragment but the last carries a multiple of 8 data bytes and MF; offsets
    count 8-byte units. The first fragment carries all options, later ones only those
    whose copied flag is set. A router cutting a fragment again passes its offset
    (``base_offset``, in bytes) and MF flag (``more``): the last piece keeps it.
    """
    later_options = _copied_options(options)
    packets = []
    offset = 0
    size = len(payload)
    first = True
    while offset < size:
        opts = options if first and base_offset == 0 else later_options
        room = (mtu - wip.MIN_HEADER_LEN - len(opts)) & ~7
        if room <= 0:
            raise OSError(errno.EMSGSIZE, f"MTU {mtu} too small to fragment")
        chunk = payload[offset : offset + room]
        last = offset + len(chunk) >= size
        header = wip.build_header(
            src=src,
            dst=dst,
            protocol=protocol,
            payload_length=len(chunk),
            ident=ident,
            ttl=ttl,
            tos=tos,
            options=opts,
            flags_fragment=(wip.FLAG_MF if more or not last else 0) | ((base_offset + offset) >> 3),
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
