"""The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sum.

The one's-complement sum of 16-bit words equals the big integer formed by the
bytes taken modulo 0xFFFF (because 2**16 == 1 mod 0xFFFF), except that the
one's-complement sum of non-zero data is never 0 but 0xFFFF. ``int.from_bytes``
does the whole sum in C, which is several times faster in CPython than summing
words in Python.
"""

from __future__ import annotations

Buffer = bytes | bytearray | memoryview


def ones_sum(data: Buffer, initial: int = 0) -> int:
    """One's-complement 16-bit sum of ``data`` (padded with a zero byte if odd) plus ``initial``.

    Returns a value in 0..0xFFFF, where 0 means "all zero" only.
    """
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # RFC 1071: pad an odd byte count with a zero octet
    value += initial
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded if folded else 0xFFFF


def finish(total: int) -> int:
    """Complement a one's-complement sum into the value stored in a header."""
    return ~total & 0xFFFF


def internet_checksum(data: Buffer, initial: int = 0) -> int:
    """Checksum to place in a header whose checksum field in ``data`` is zero.

    Verifying: the checksum of data that includes a correct checksum is 0.
    """
    return finish(ones_sum(data, initial))


def pseudo_header_sum(src: int, dst: int, protocol: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header (RFC 9293 3.1, RFC 768) as an unfolded integer.

    Feed it as ``initial`` to :func:`ones_sum`/:func:`internet_checksum`.
    """
    return (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + protocol + length


def update16(checksum: int, old: int, new: int) -> int:
    """A stored checksum after one 16-bit word of its data changed from ``old`` to ``new``.

    RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): unlike RFC 1141's form it never yields
    0x0000 from a non-zero sum, the mistake that RFC corrects.
    """
    total = (~checksum & 0xFFFF) + (~old & 0xFFFF) + new
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def update32(checksum: int, old: int, new: int) -> int:
    """:func:`update16` for a 32-bit field (an IPv4 address): both of its words."""
    checksum = update16(checksum, old >> 16, new >> 16)
    return update16(checksum, old & 0xFFFF, new & 0xFFFF)
