"""Turning the host names users write into addresses.

Today an IPv4 literal; the DNS resolver (its own issue) plugs in here, so every
API that takes a host (streams, sockets, ping, the tools) resolves in one place.
"""

from __future__ import annotations

import errno

from ..wire.addr import ip_from_str


def resolve_ipv4_literal(host: str) -> int:
    """Parse an IPv4 literal; an ``OSError(EINVAL)`` that says what to give otherwise."""
    try:
        return ip_from_str(host)
    except ValueError:
        raise OSError(
            errno.EINVAL, f"cannot resolve {host!r}: give an IPv4 address like 192.0.2.1"
        ) from None
