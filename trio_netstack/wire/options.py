"""The kind/length option lists of IPv4 (RFC 791 3.1) and TCP (RFC 9293 3.1).

Both use the same layout: a one-byte END ends the list, a one-byte NOP pads, and
every other option is a kind byte, a length byte that counts both, then the body.
The walk is bounded by construction: each step moves forward by at least one byte
(NOP) or by a checked length of at least two, so no length a peer writes can make
it loop or read past the list.
"""

from __future__ import annotations

from .errors import ParseError

__all__ = ["OPT_END", "OPT_NOP", "walk_untrusted"]

OPT_END = 0
OPT_NOP = 1


def walk_untrusted(raw: bytes | memoryview, reason: str) -> list[tuple[int, int, int]]:
    """(kind, offset, length) of every option before END, NOPs left out.

    ``length`` counts the kind and length bytes, so an option's body is
    ``raw[offset + 2 : offset + length]``. A missing length byte, a length below 2
    or one that runs past the list raises ParseError(``reason``): the whole list is
    then malformed and nothing after the bad option can be trusted. What a kind's
    body must look like is the caller's business.
    """
    found: list[tuple[int, int, int]] = []
    i = 0
    n = len(raw)
    while i < n:
        kind = raw[i]
        if kind == OPT_END:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            raise ParseError(reason, f"option {kind} has no length")
        length = raw[i + 1]
        if length < 2 or i + length > n:
            raise ParseError(reason, f"option {kind} length {length}")
        found.append((kind, i, length))
        i += length
    return found
