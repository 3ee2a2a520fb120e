"""Sequence numbers modulo 2**32 (RFC 9293 3.4, RFC 1982 serial arithmetic).

``Seq`` is a distinct type for values that live on the sequence circle; compare
and offset them only through these functions, never with ``<`` or ``+`` on the
raw ints, so wrap-around is always right.
"""

from __future__ import annotations

from typing import NewType

Seq = NewType("Seq", int)

MOD = 1 << 32
MASK = MOD - 1
HALF = 1 << 31


def seq(value: int) -> Seq:
    return Seq(value & MASK)


def add(a: Seq, n: int) -> Seq:
    return Seq((a + n) & MASK)


def diff(a: Seq, b: Seq) -> int:
    """Signed distance a - b on the circle, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - MOD if d >= HALF else d


def lt(a: Seq, b: Seq) -> bool:
    return 0 < ((b - a) & MASK) < HALF


def le(a: Seq, b: Seq) -> bool:
    return ((b - a) & MASK) < HALF


def gt(a: Seq, b: Seq) -> bool:
    return lt(b, a)


def ge(a: Seq, b: Seq) -> bool:
    return le(b, a)


def in_window(x: Seq, left: Seq, size: int) -> bool:
    """left <= x < left + size (RFC 9293 3.4's window test)."""
    return ((x - left) & MASK) < size


def max_seq(a: Seq, b: Seq) -> Seq:
    return a if ge(a, b) else b


def min_seq(a: Seq, b: Seq) -> Seq:
    return a if le(a, b) else b
